//! Static files: a location with `root` or `alias` answers from disk instead of an upstream.
//!
//! # Interface
//! At configuration load, [`Sites::open`] (or [`Site::from_config`] for one location) opens
//! each `root`/`alias` location's directory once: a descriptor every file of the site is
//! opened beneath. A directory that cannot be opened is a configuration error, so a reload
//! keeps the old configuration. The downstream connection then, per request routed to the
//! location:
//!
//! 1. builds a [`Request`] from the parsed head ([`Request::from_head`]) and calls
//!    [`respond`] with the normalised path (the one locations are matched on) and a
//!    [`Reply`] (whether the connection closes after this response). `respond` writes the
//!    whole response head into `out` (and the short body of an error answer) and returns a
//!    [`FileAnswer`]: the status for the access log and, for a 200/206 to a GET, the
//!    [`FileBody`] to send after the head;
//! 2. sends `out` and the body with [`send_file`] (the head with `MSG_MORE`, the body with
//!    sendfile, on both drivers) or, on a stream the kernel cannot send a file into (TLS in
//!    user space), sends `out` as any head and the body with [`copy_body`]. A send error means the response is cut short: close the
//!    connection. The request's own body, if it had one, is the caller's to discard.
//!
//! # What is answered
//! nginx's static module with `root`/`alias`, `index`, `expires`: GET and HEAD only (405
//! with `Allow: GET, HEAD`); `ETag` (`"mtime-size"` in hex) and `Last-Modified`; 304 and 412
//! from the validators, one `Range` (206, 416; see [`conditional`]); `Content-Type` from the
//! extension; a directory path without its slash gets a 301 to the slash form (a relative
//! `Location`, query kept), a directory path tries the `index` files in order, then 403 if
//! the directory exists and 404 if not. No path leaves the directory (see [`resolve`] and
//! [`open`]: dot segments, `%2e%2e` and encoded slashes are resolved before matching,
//! `..` left over is refused, and the kernel refuses symlinks that climb out): 404.
//!
//! The directory is the one opened at load: a deployment that swaps it for another (a
//! `current` symlink moved to a new release) is picked up by a reload (SIGHUP), like nginx
//! with `open_file_cache`.

pub mod conditional;
mod head;
mod open;
pub mod resolve;
mod send;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use monoio::fs::File;

use crate::config::{Config, FilesDir, FilesLoc, Handler};
use crate::http::request::{Method, RequestHead};
use conditional::{Conditions, Decision, Validators};
pub use head::Reply;
use head::{text_answer, Entity};
use open::{Kind, Opened};
pub use resolve::Mapping;
use resolve::Target;
pub use send::{copy_body, send_file, FileBody, SendError};

/// Bodies up to this size are read into `out` behind the head, so the whole response goes
/// out in one send. Measured (`benches/file_send.rs`, CPU per file): at 16 KiB read + write
/// cost 4-6.5 us against 6-10 us for splice or sendfile in every run; at 64 KiB the two were
/// within the noise of each other. The head's own send is saved too.
pub const INLINE_MAX: u64 = 16 * 1024;

/// A location that serves files: its directory (open), how paths map into it, its index
/// files and its `expires`.
#[derive(Debug)]
pub struct Site {
    dir: Arc<OwnedFd>,
    /// The directory as configured (for messages).
    pub path: PathBuf,
    pub mapping: Mapping,
    /// `index` names, tried in order for a path ending in `/`.
    pub index: Vec<String>,
    /// `expires`: `Cache-Control: max-age` and `Expires` on 200, 206, 301 and 304.
    pub expires: Option<Duration>,
}

/// Why a site cannot be set up (a configuration error: the message names the directory).
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{path}: cannot open the directory: {source} (it must exist and be a directory ringlb may read)")]
    Dir { path: PathBuf, source: io::Error },
    #[error("index {0:?}: an index is a file name (no '/', not \".\" or \"..\")")]
    Index(String),
}

impl Site {
    /// The site of a `root`/`alias` location (`location_path` is the location's `path`,
    /// the prefix an `alias` replaces), its directory opened now.
    pub fn from_config(location_path: &str, f: &FilesLoc) -> Result<Site, SiteError> {
        let (dir, mapping) = match &f.dir {
            FilesDir::Root(dir) => (dir.as_path(), Mapping::Root),
            // Neither ends with "/" (validation makes them agree) and the alias is not a
            // directory: one file, served from its directory.
            FilesDir::Alias(file) if !location_path.ends_with('/') && !file.is_dir() => {
                let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
                    return Err(SiteError::Dir {
                        path: file.clone(),
                        source: io::Error::from(io::ErrorKind::InvalidInput),
                    });
                };
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                (
                    parent,
                    Mapping::AliasFile {
                        prefix: location_path.to_string(),
                        name: name.to_string_lossy().into_owned(),
                    },
                )
            }
            FilesDir::Alias(dir) => (
                dir.as_path(),
                Mapping::Alias {
                    prefix: location_path.to_string(),
                },
            ),
        };
        Site::open(dir, mapping, f.index.clone(), f.expires)
    }

    /// Opens `path` (the `root` or `alias` directory) for the site.
    pub fn open(
        path: &Path,
        mapping: Mapping,
        index: Vec<String>,
        expires: Option<Duration>,
    ) -> Result<Site, SiteError> {
        if let Some(bad) = index
            .iter()
            .find(|i| i.is_empty() || i.contains(['/', '\0']) || *i == "." || *i == "..")
        {
            return Err(SiteError::Index(bad.clone()));
        }
        let dir = open::open_dir(path).map_err(|source| SiteError::Dir {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Site {
            dir: Arc::new(dir),
            path: path.to_path_buf(),
            mapping,
            index,
            expires,
        })
    }
}

impl PartialEq for Site {
    /// Two sites are the same configuration when they say the same things (the open
    /// descriptors differ by nature).
    fn eq(&self, other: &Site) -> bool {
        self.path == other.path
            && self.mapping == other.mapping
            && self.index == other.index
            && self.expires == other.expires
    }
}

/// Every site of a configuration, opened together when it is loaded, so that a directory
/// that cannot be opened fails the load (a reload then keeps the running configuration).
#[derive(Debug, Default)]
pub struct Sites {
    /// Per server block, per location (in the configuration's order): the site of a
    /// `root`/`alias` location.
    by_location: Vec<Vec<Option<Arc<Site>>>>,
}

impl Sites {
    pub fn open(config: &Config) -> Result<Sites, SiteError> {
        let mut by_location = Vec::with_capacity(config.servers.len());
        for vs in &config.servers {
            let mut sites = Vec::with_capacity(vs.locations.len());
            for loc in &vs.locations {
                sites.push(match &loc.handler {
                    Handler::Files(f) => Some(Arc::new(Site::from_config(&loc.path, f)?)),
                    _ => None,
                });
            }
            by_location.push(sites);
        }
        Ok(Sites { by_location })
    }

    /// The site of location `location` of server block `server` (indexes into
    /// `Config::servers` and its `locations`).
    pub fn get(&self, server: usize, location: usize) -> Option<&Arc<Site>> {
        self.by_location.get(server)?.get(location)?.as_ref()
    }
}

/// What [`respond`] needs from the request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: Method,
    /// The query string (after `?`), kept by a redirect.
    pub query: Option<&'a [u8]>,
    pub conditions: Conditions<'a>,
}

impl<'a> Request<'a> {
    /// From a parsed request head and the buffer it was parsed from.
    pub fn from_head(head: &RequestHead, buf: &'a [u8]) -> Request<'a> {
        let target = &buf[head.target.0 as usize..head.target.1 as usize];
        let query = target
            .iter()
            .position(|&b| b == b'?')
            .map(|i| &target[i + 1..]);
        let mut conditions = Conditions::default();
        for h in &head.headers {
            conditions.note(h.name(buf), h.value(buf));
        }
        Request {
            method: head.method,
            query,
            conditions,
        }
    }
}

/// The answer [`respond`] wrote into `out`: the head, and the whole body when it is short
/// (an error's text, or a file of at most [`INLINE_MAX`] bytes).
#[derive(Debug)]
pub struct FileAnswer {
    pub status: u16,
    /// The file bytes to send after the head; `None` when `out` is the whole response
    /// (HEAD, 304, errors, redirects, a file of at most [`INLINE_MAX`] bytes).
    pub body: Option<FileBody>,
}

/// Answers a GET or HEAD for the normalised `path` from `site` (what locations are matched
/// on; a query still attached is ignored): the response head (and any short body) is
/// appended to `out`.
pub async fn respond(
    site: &Site,
    path: &[u8],
    req: &Request<'_>,
    reply: Reply,
    out: &mut Vec<u8>,
) -> FileAnswer {
    let now = SystemTime::now();
    let head_only = req.method == Method::Head;
    let text = |out: &mut Vec<u8>, status: u16, extra: &[&[u8]]| {
        text_answer(out, status, extra, head_only, reply, now);
        FileAnswer { status, body: None }
    };
    if !matches!(req.method, Method::Get | Method::Head) {
        return text(out, 405, &[b"Allow: GET, HEAD\r\n"]);
    }
    // The target as the client sent it, when it needed no normalising, still has its query.
    let path = match path.iter().position(|&b| b == b'?') {
        Some(q) => &path[..q],
        None => path,
    };
    let Some(target) = resolve::map(&site.mapping, path) else {
        return text(out, 404, &[]);
    };
    match target {
        Target::File(rel) => match open::open(&site.dir, rel).await {
            Ok(f) if f.kind == Kind::Regular => serve(site, f, rel, req, reply, out, now).await,
            Ok(f) if f.kind == Kind::Directory => {
                let location = redirect_location(path, req.query);
                text(out, 301, &[&location])
            }
            Ok(_) => text(out, 404, &[]),
            Err(e) => text(out, error_status(&e, path), &[]),
        },
        Target::Directory(rel) => {
            let mut name = Vec::with_capacity(rel.len() + 16);
            for index in &site.index {
                name.clear();
                name.extend_from_slice(rel);
                name.extend_from_slice(index.as_bytes());
                match open::open(&site.dir, &name).await {
                    Ok(f) if f.kind == Kind::Regular => {
                        return serve(site, f, &name, req, reply, out, now).await;
                    }
                    Ok(_) => {}
                    Err(e) if error_status(&e, path) == 404 => {}
                    Err(e) => return text(out, error_status(&e, path), &[]),
                }
            }
            // No index: the directory exists (403, nginx's "directory index of ... is
            // forbidden") or not (404).
            let dir = if rel.is_empty() { &b"."[..] } else { rel };
            match open::open(&site.dir, dir).await {
                Ok(f) if f.kind == Kind::Directory => text(out, 403, &[]),
                Ok(_) => text(out, 404, &[]),
                Err(e) => text(out, error_status(&e, path), &[]),
            }
        }
    }
}

/// The answer for an open regular file.
async fn serve(
    site: &Site,
    f: Opened,
    name: &[u8],
    req: &Request<'_>,
    reply: Reply,
    out: &mut Vec<u8>,
    now: SystemTime,
) -> FileAnswer {
    use std::os::unix::ffi::OsStrExt;
    let head_only = req.method == Method::Head;
    let validators = Validators {
        size: f.size,
        mtime: f.mtime,
    };
    let entity = Entity {
        validators,
        name: Path::new(std::ffi::OsStr::from_bytes(name)),
        expires: site.expires,
    };
    let mark = out.len();
    let (status, start, len) = match conditional::decide(&req.conditions, &validators) {
        Decision::Full => (200, 0, f.size),
        Decision::Partial { start, len } => (206, start, len),
        Decision::NotModified => {
            head::start(out, 304, now);
            head::validators(out, &entity, now);
            head::end(out, reply);
            return FileAnswer {
                status: 304,
                body: None,
            };
        }
        Decision::PreconditionFailed => {
            text_answer(out, 412, &[], head_only, reply, now);
            return FileAnswer {
                status: 412,
                body: None,
            };
        }
        Decision::Unsatisfiable => {
            let mut range = b"Content-Range: bytes */".to_vec();
            crate::http::push_decimal(&mut range, f.size);
            range.extend_from_slice(b"\r\n");
            text_answer(out, 416, &[&range], head_only, reply, now);
            return FileAnswer {
                status: 416,
                body: None,
            };
        }
    };
    head::start(out, status, now);
    head::content_type(out, entity.name);
    head::content_length(out, len);
    head::validators(out, &entity, now);
    out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    if status == 206 {
        out.extend_from_slice(b"Content-Range: bytes ");
        crate::http::push_decimal(out, start);
        out.push(b'-');
        crate::http::push_decimal(out, start + len - 1);
        out.push(b'/');
        crate::http::push_decimal(out, f.size);
        out.extend_from_slice(b"\r\n");
    }
    head::end(out, reply);
    if head_only || len == 0 {
        return FileAnswer { status, body: None };
    }
    if len <= INLINE_MAX {
        return match read_into(&f.file, start, len as usize, out).await {
            Ok(()) => FileAnswer { status, body: None },
            Err(e) => {
                // The file shrank or failed under us: nothing has been sent yet.
                out.truncate(mark);
                let status = error_status(&e, name);
                text_answer(out, status, &[], head_only, reply, now);
                FileAnswer { status, body: None }
            }
        };
    }
    let body = FileBody {
        file: f.file,
        offset: start,
        len,
    };
    FileAnswer {
        status,
        body: Some(body),
    }
}

/// Appends `len` bytes of `file` from `offset` to `out`.
async fn read_into(file: &File, offset: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
    use monoio::buf::IoBufMut;
    let mut buf = std::mem::take(out);
    let at = buf.len();
    buf.reserve(len);
    let (r, slice) = file
        .read_exact_at(buf.slice_mut(at..at + len), offset)
        .await;
    *out = slice.into_inner();
    if r.is_err() {
        out.truncate(at);
    }
    r
}

/// The status for a failed open: a name that does not exist or leads out of the directory
/// (EXDEV, ELOOP from `RESOLVE_*`) is 404, a permission problem 403, anything else 500.
fn error_status(e: &io::Error, path: &[u8]) -> u16 {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::EXDEV | libc::ELOOP) => 404,
        Some(libc::EACCES | libc::EPERM) => 403,
        _ => {
            tracing::warn!(path = %String::from_utf8_lossy(path), "static file: {e}");
            500
        }
    }
}

/// `Location: <path>/[?query]` for a directory named without its slash, the path escaped
/// again (it was decoded for matching).
fn redirect_location(path: &[u8], query: Option<&[u8]>) -> Vec<u8> {
    let mut v = b"Location: ".to_vec();
    for &b in path {
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if plain {
            v.push(b);
        } else {
            v.push(b'%');
            v.push(b"0123456789ABCDEF"[(b >> 4) as usize]);
            v.push(b"0123456789ABCDEF"[(b & 15) as usize]);
        }
    }
    v.push(b'/');
    if let Some(q) = query {
        v.push(b'?');
        v.extend_from_slice(q);
    }
    v.extend_from_slice(b"\r\n");
    v
}

#[cfg(test)]
mod tests;

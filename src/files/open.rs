//! Opening a file beneath the site's directory without blocking the worker, and reading what
//! kind of file it is.
//!
//! The open is `openat2(dir, rel, O_RDONLY | O_NONBLOCK, RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` relative to the directory descriptor opened at configuration
//! load: the kernel refuses, atomically with the open, any path that leaves the directory,
//! through `..` or through a symlink (absolute, or relative and climbing out), and
//! `/proc`-style magic links; symlinks that stay inside are followed. `O_NONBLOCK` keeps a
//! FIFO planted under the root from blocking the open (nginx opens with it for the same
//! reason); it changes nothing for regular files. The kind and size come from `statx` on the
//! open descriptor, so what is checked is what is sent.
//!
//! On io_uring both are ring operations (IORING_OP_OPENAT2, IORING_OP_STATX; the first is a
//! ringlb patch to the vendored monoio); a path whose dentries are cached completes inline
//! in the kernel without a worker thread. On epoll they are plain system calls on the worker
//! thread: for a cached path an open costs about as much as a `send` (measured in
//! `benches/file_send.rs`: see the module docs of `files`), and a path whose directories are
//! not cached waits for the disk, as nginx without `aio threads` does.
//!
//! Where `openat2` is missing (Linux before 5.6, or a seccomp profile that refuses it with
//! ENOSYS), the file is opened by walking the path one component at a time with
//! `O_NOFOLLOW`: stricter (no symlink is followed at all), blocking, and only then.

use std::ffi::CString;
use std::fs::File as StdFile;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use monoio::fs::File;

const OPEN_FLAGS: i32 = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// Set once `openat2` has answered ENOSYS: every later open walks the path instead.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// What kind of file a path named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Regular,
    Directory,
    /// A FIFO, socket or device: never served (404, as nginx).
    Other,
}

/// An open file and what `statx` said about it.
pub(super) struct Opened {
    pub file: File,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
}

/// Opens the site's directory (at configuration load): a path-only descriptor that every
/// open of the site is relative to.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path; the descriptor returned is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `rel` beneath `dir` and reads its kind, size and modification time.
pub(super) async fn open(dir: &Arc<OwnedFd>, rel: &[u8]) -> io::Result<Opened> {
    let rel = Path::new(std::ffi::OsStr::from_bytes(rel));
    let file = if NO_OPENAT2.load(Ordering::Relaxed) {
        walk(dir.as_raw_fd(), rel)?
    } else {
        match File::open_at2(dir.clone(), rel, OPEN_FLAGS, RESOLVE).await {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                tracing::warn!("openat2 is not available ({e}); static files are opened component by component, without following symlinks");
                NO_OPENAT2.store(true, Ordering::Relaxed);
                walk(dir.as_raw_fd(), rel)?
            }
            r => r?,
        }
    };
    let meta = file.metadata().await?;
    let kind = if meta.is_file() {
        Kind::Regular
    } else if meta.is_dir() {
        Kind::Directory
    } else {
        Kind::Other
    };
    Ok(Opened {
        file,
        kind,
        size: meta.len(),
        mtime: meta.modified()?,
    })
}

/// The fallback open: one `openat` per component, each refusing a symlink.
pub(super) fn walk(dir: RawFd, rel: &Path) -> io::Result<File> {
    let parts: Vec<&[u8]> = rel
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.iter().any(|p| *p == b"..") {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let mut at: Option<OwnedFd> = None;
    let base = |at: &Option<OwnedFd>| at.as_ref().map_or(dir, |f| f.as_raw_fd());
    let Some((last, dirs)) = parts.split_last() else {
        // The directory itself.
        return openat(dir, b".", OPEN_FLAGS);
    };
    for part in dirs {
        let next = openat_owned(
            base(&at),
            part,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )?;
        at = Some(next);
    }
    openat(base(&at), last, OPEN_FLAGS | libc::O_NOFOLLOW)
}

fn openat(dir: RawFd, name: &[u8], flags: i32) -> io::Result<File> {
    let fd = openat_owned(dir, name, flags)?;
    File::from_std(StdFile::from(fd))
}

fn openat_owned(dir: RawFd, name: &[u8], flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(name)?;
    // SAFETY: a NUL-terminated name relative to an open directory descriptor.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

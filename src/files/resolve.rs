//! From a request path to the file it names, relative to the site's directory: nginx's
//! `root` (the whole path under the directory) and `alias` (the location's prefix replaced
//! by the directory).
//!
//! The path given is the normalised one locations are matched on (`http::uri`): escapes
//! decoded, `.`/`..` resolved, slashes merged, `%00` refused. Anything that could still
//! climb out (a `..` segment, which a normalised path never has, but an `alias` location
//! written without its trailing slash produces from `/static../x`: nginx's "off-by-slash")
//! or cannot name a file (a NUL byte) is refused here, before the kernel's own check
//! (`openat2` with `RESOLVE_BENEATH`, which also catches symlinks) gets its turn.

/// How a location's paths map to files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// `root`: `/static/a.css` -> `<dir>/static/a.css`.
    Root,
    /// `alias`: the location's prefix is replaced: with prefix `/static/`,
    /// `/static/a.css` -> `<dir>/a.css`.
    Alias { prefix: String },
}

/// What a request path names under the site's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'p> {
    /// A path without a trailing slash: a file, or a directory (then a 301 to the slash
    /// form). `"."` is the site's directory itself.
    File(&'p [u8]),
    /// A path with a trailing slash: a directory whose index files are tried (then 403).
    /// The relative directory ends in `/`, or is empty for the site's directory itself.
    Directory(&'p [u8]),
}

/// Maps the normalised `path` (no query) to a target; `None` is a 404 (a path outside the
/// location, or one with a way out).
pub fn map<'p>(mapping: &Mapping, path: &'p [u8]) -> Option<Target<'p>> {
    if path.first() != Some(&b'/') || path.contains(&0) {
        return None;
    }
    let rest = match mapping {
        Mapping::Root => &path[1..],
        Mapping::Alias { prefix } => path.strip_prefix(prefix.as_bytes())?,
    };
    let mut rel = rest;
    while let [b'/', tail @ ..] = rel {
        rel = tail;
    }
    if rel.split(|&b| b == b'/').any(|seg| seg == b"..") {
        return None;
    }
    if path.ends_with(b"/") {
        return Some(Target::Directory(rel));
    }
    Some(Target::File(if rel.is_empty() { b"." } else { rel }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(prefix: &str) -> Mapping {
        Mapping::Alias {
            prefix: prefix.into(),
        }
    }

    fn file(p: &str) -> Option<Target<'_>> {
        Some(Target::File(p.as_bytes()))
    }

    fn dir(p: &str) -> Option<Target<'_>> {
        Some(Target::Directory(p.as_bytes()))
    }

    #[test]
    fn root_appends_the_whole_path() {
        assert_eq!(map(&Mapping::Root, b"/static/a.css"), file("static/a.css"));
        assert_eq!(map(&Mapping::Root, b"/static/"), dir("static/"));
        assert_eq!(map(&Mapping::Root, b"/"), dir(""));
        assert_eq!(map(&Mapping::Root, b"/static"), file("static"));
    }

    #[test]
    fn alias_replaces_the_prefix() {
        let m = alias("/static/");
        assert_eq!(map(&m, b"/static/a.css"), file("a.css"));
        assert_eq!(map(&m, b"/static/css/a.css"), file("css/a.css"));
        assert_eq!(map(&m, b"/static/"), dir(""));
        assert_eq!(map(&m, b"/static/img/"), dir("img/"));
        // A location without its trailing slash.
        let m = alias("/static");
        assert_eq!(map(&m, b"/static"), file("."));
        assert_eq!(map(&m, b"/static/a.css"), file("a.css"));
        assert_eq!(map(&m, b"/staticfoo"), file("foo"));
        assert_eq!(map(&m, b"/other"), None);
    }

    #[test]
    fn ways_out_are_refused() {
        // nginx's off-by-slash: `location /static { alias /srv/app/; }` and /static../x.
        assert_eq!(map(&alias("/static"), b"/static../etc/passwd"), None);
        assert_eq!(map(&alias("/static"), b"/static.."), None);
        assert_eq!(map(&Mapping::Root, b"/a/../b"), None);
        assert_eq!(map(&Mapping::Root, b"/.."), None);
        assert_eq!(map(&Mapping::Root, b"/a/.."), None);
        assert_eq!(map(&Mapping::Root, b"/a\0b"), None);
        assert_eq!(map(&Mapping::Root, b"a.css"), None);
        assert_eq!(map(&Mapping::Root, b""), None);
        // Names that only look like dots are ordinary files.
        assert_eq!(map(&Mapping::Root, b"/..a"), file("..a"));
        assert_eq!(map(&Mapping::Root, b"/a..b/"), dir("a..b/"));
    }
}

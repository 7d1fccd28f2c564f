//! The path a location is chosen by: the request path with `%XX` decoded, repeated slashes
//! merged and `.` / `..` segments resolved, as nginx matches locations. The request is still
//! forwarded as the client wrote it; normalising only the match keeps `/public/../admin` from
//! being routed by its `/public` prefix to a backend that will then serve `/admin`.

use super::hex_value;

/// Why a path cannot be normalised (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath;

/// The path part of `target` (before `?`), normalised into `out` when it needs it.
/// `Ok(false)`: already normal, match on it as it is (the common case, checked without
/// copying). `Ok(true)`: the normal form is in `out`. `Err`: a `..` above the root or a
/// malformed escape.
pub fn normalize(target: &[u8], out: &mut Vec<u8>) -> Result<bool, BadPath> {
    let path = match target.iter().position(|&b| b == b'?') {
        Some(i) => &target[..i],
        None => target,
    };
    if !needs_work(path) {
        return Ok(false);
    }
    out.clear();
    let mut i = 0;
    while i < path.len() {
        let mut b = path[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or(BadPath)?;
            b = (hex_value(hex[0]).ok_or(BadPath)? << 4) | hex_value(hex[1]).ok_or(BadPath)?;
            if b == 0 {
                return Err(BadPath);
            }
            i += 3;
        } else {
            i += 1;
        }
        out.push(b);
        // Resolve segments as they complete (a decoded %2F counts as a slash, as in nginx).
        if b == b'/' {
            resolve_tail(out)?;
        }
    }
    // A trailing "/." or "/.." ends a segment too.
    if out.ends_with(b"/.") || out.ends_with(b"/..") {
        out.push(b'/');
        resolve_tail(out)?;
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(true)
}

/// `out` just got a '/': merge "//", drop "/./", pop the segment before "/../".
fn resolve_tail(out: &mut Vec<u8>) -> Result<(), BadPath> {
    if out.ends_with(b"//") {
        out.pop();
    } else if out.ends_with(b"/./") {
        out.truncate(out.len() - 2);
    } else if out.ends_with(b"/../") {
        out.truncate(out.len() - 3); // keep the slash before ".."
        if out.len() <= 1 {
            return Err(BadPath);
        }
        out.pop();
        let cut = out.iter().rposition(|&c| c == b'/').ok_or(BadPath)?;
        out.truncate(cut + 1);
    }
    Ok(())
}

fn needs_work(path: &[u8]) -> bool {
    path.windows(2)
        .any(|w| w == b"//" || w == b"/." || w[0] == b'%')
        || path.last() == Some(&b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, BadPath> {
        let mut out = Vec::new();
        Ok(match normalize(p.as_bytes(), &mut out)? {
            false => p.split('?').next().unwrap().to_string(),
            true => String::from_utf8_lossy(&out).into_owned(),
        })
    }

    #[test]
    fn normal_paths_are_left_alone() {
        let mut out = Vec::new();
        assert_eq!(normalize(b"/api/v1/users?x=/../", &mut out), Ok(false));
        assert_eq!(normalize(b"/a.b/c.d", &mut out), Ok(false));
    }

    #[test]
    fn dot_segments_slashes_and_escapes() {
        assert_eq!(n("/public/../admin").unwrap(), "/admin");
        assert_eq!(n("/a/./b//c").unwrap(), "/a/b/c");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public%2F..%2Fadmin").unwrap(), "/admin");
        assert_eq!(n("/a/..?q").unwrap(), "/");
        assert_eq!(n("/a%20b").unwrap(), "/a b");
    }

    #[test]
    fn escaping_the_root_or_bad_escapes_are_errors() {
        for bad in ["/..", "/../a", "/a/../../b", "/%zz", "/%2", "/%00"] {
            assert_eq!(n(bad), Err(BadPath), "{bad}");
        }
    }
}

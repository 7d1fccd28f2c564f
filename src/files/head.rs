//! Writing the response heads (and the short bodies of error answers) for static files.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::conditional::Validators;
use crate::http::push_decimal;
use crate::http::rewrite::reason;

/// How the client connection continues after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// ringlb closes the connection after this response (`Connection: close`).
    pub close: bool,
    /// The request's HTTP minor version: an HTTP/1.0 client that keeps the connection is
    /// told so (`Connection: keep-alive`).
    pub minor: u8,
}

/// The file part of a 200 or 206 head.
pub(super) struct Entity<'a> {
    pub validators: Validators,
    /// The name the type is guessed from (the index file's for a directory).
    pub name: &'a Path,
    pub expires: Option<Duration>,
}

/// `HTTP/1.1 <status>`, `Server` and `Date`.
pub(super) fn start(out: &mut Vec<u8>, status: u16, now: SystemTime) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, status as u64);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: ringlb\r\nDate: ");
    push_date_cached(out, now);
    out.extend_from_slice(b"\r\n");
}

/// Connection handling and the blank line.
pub(super) fn end(out: &mut Vec<u8>, reply: Reply) {
    if reply.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if reply.minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Last-Modified, ETag and the `expires` headers: what a 200, 206 and 304 share.
pub(super) fn validators(out: &mut Vec<u8>, e: &Entity, now: SystemTime) {
    out.extend_from_slice(b"Last-Modified: ");
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(e.validators.mtime.max(0) as u64);
    push_date(out, mtime);
    out.extend_from_slice(b"\r\nETag: ");
    out.extend_from_slice(e.validators.etag().as_bytes());
    out.extend_from_slice(b"\r\n");
    expires(out, e.expires, now);
}

/// nginx's `expires`: `Cache-Control: max-age=N` and `Expires` N seconds from now.
pub(super) fn expires(out: &mut Vec<u8>, expires: Option<Duration>, now: SystemTime) {
    let Some(after) = expires else { return };
    out.extend_from_slice(b"Cache-Control: max-age=");
    push_decimal(out, after.as_secs());
    out.extend_from_slice(b"\r\nExpires: ");
    push_date(out, now + after);
    out.extend_from_slice(b"\r\n");
}

/// Content-Type from the file name's extension; text types in UTF-8 (what nginx sends with
/// `charset utf-8`), anything unknown as `application/octet-stream` (nginx's
/// `default_type`).
pub(super) fn content_type(out: &mut Vec<u8>, name: &Path) {
    let mime = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(mime.as_bytes());
    if mime.starts_with("text/") || mime == "application/javascript" {
        out.extend_from_slice(b"; charset=utf-8");
    }
    out.extend_from_slice(b"\r\n");
}

/// `Content-Length: n`.
pub(super) fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// A whole answer without a file: status, `extra` header lines (each ending in CRLF) and a
/// short text body ("404 Not Found"), or no body for a HEAD request.
pub(super) fn text_answer(
    out: &mut Vec<u8>,
    status: u16,
    extra: &[&[u8]],
    head_only: bool,
    reply: Reply,
    now: SystemTime,
) {
    start(out, status, now);
    for line in extra {
        out.extend_from_slice(line);
    }
    let text = reason(status);
    out.extend_from_slice(b"Content-Type: text/plain\r\n");
    content_length(out, (text.len() + 5) as u64);
    end(out, reply);
    if !head_only {
        push_decimal(out, status as u64);
        out.push(b' ');
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
}

/// An HTTP date (IMF-fixdate, always 29 bytes) without allocating.
pub(super) fn push_date(out: &mut Vec<u8>, t: SystemTime) {
    use std::io::Write;
    let _ = write!(out, "{}", httpdate::HttpDate::from(t));
}

thread_local! {
    /// The `Date` of the current second: formatted once per second per worker, not per
    /// response.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

fn push_date_cached(out: &mut Vec<u8>, now: SystemTime) {
    let secs = super::conditional::epoch_seconds(now).max(0) as u64;
    let (at, text) = DATE.get();
    if at == secs {
        out.extend_from_slice(&text);
        return;
    }
    let from = out.len();
    push_date(out, now);
    if let Ok(text) = <[u8; 29]>::try_from(&out[from..]) {
        DATE.set((secs, text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn content_types_from_extensions() {
        let ct = |name: &str| {
            let mut out = Vec::new();
            content_type(&mut out, Path::new(name));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(ct("a.css"), "Content-Type: text/css; charset=utf-8\r\n");
        assert_eq!(
            ct("index.html"),
            "Content-Type: text/html; charset=utf-8\r\n"
        );
        assert_eq!(
            ct("app.js"),
            "Content-Type: text/javascript; charset=utf-8\r\n"
        );
        assert_eq!(ct("logo.png"), "Content-Type: image/png\r\n");
        assert_eq!(ct("LOGO.PNG"), "Content-Type: image/png\r\n");
        assert_eq!(ct("x.woff2"), "Content-Type: font/woff2\r\n");
        assert_eq!(ct("README"), "Content-Type: application/octet-stream\r\n");
        assert_eq!(
            ct("a.unknownext"),
            "Content-Type: application/octet-stream\r\n"
        );
    }

    #[test]
    fn dates_expires_and_answers() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut out = Vec::new();
        push_date(&mut out, now);
        assert_eq!(s(&out), "Tue, 14 Nov 2023 22:13:20 GMT");
        out.clear();
        expires(&mut out, Some(Duration::from_secs(7 * 86400)), now);
        assert_eq!(
            s(&out),
            "Cache-Control: max-age=604800\r\nExpires: Tue, 21 Nov 2023 22:13:20 GMT\r\n"
        );
        out.clear();
        let reply = Reply {
            close: false,
            minor: 1,
        };
        text_answer(&mut out, 405, &[b"Allow: GET, HEAD\r\n"], false, reply, now);
        assert_eq!(
            s(&out),
            "HTTP/1.1 405 Method Not Allowed\r\nServer: ringlb\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
             Allow: GET, HEAD\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\n\
             405 Method Not Allowed\n"
        );
        // The cached Date of the same second, and a HEAD without the body.
        out.clear();
        let close10 = Reply {
            close: true,
            minor: 0,
        };
        text_answer(&mut out, 404, &[], true, close10, now);
        assert!(s(&out).contains("Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"));
        assert!(s(&out).ends_with("Content-Length: 14\r\nConnection: close\r\n\r\n"));
    }
}

//! The one request the generator sends, serialized once before the run.

use crate::target::Target;

/// What goes into the request, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    pub method: String,
    /// `Name: value` lines from `-H`.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
    /// Ask the server to close after each response (`--no-keepalive`).
    pub close: bool,
}

/// Serializes the request. A Host header comes from the URL unless `-H` gives one; a
/// Content-Length is added when there is a body (or the method usually carries one) and
/// `-H` gives none.
pub fn build_request(target: &Target, spec: &RequestSpec) -> Result<Vec<u8>, String> {
    let method = spec.method.trim();
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("{method:?} is not an HTTP method"));
    }
    let mut has_host = false;
    let mut has_length = false;
    let mut has_connection = false;
    let mut lines = String::new();
    for header in &spec.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("-H {header:?}: expected \"Name: value\""))?;
        let name = name.trim();
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("-H {header:?}: bad header name"));
        }
        if value.contains(['\r', '\n']) {
            return Err(format!(
                "-H {header:?}: a value can not contain a line break"
            ));
        }
        has_host |= name.eq_ignore_ascii_case("host");
        has_length |= name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding");
        has_connection |= name.eq_ignore_ascii_case("connection");
        lines.push_str(name);
        lines.push_str(": ");
        lines.push_str(value.trim());
        lines.push_str("\r\n");
    }
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        method.to_ascii_uppercase(),
        target.path
    );
    if !has_host {
        head.push_str(&format!("Host: {}\r\n", target.authority));
    }
    head.push_str(&lines);
    let wants_length = !spec.body.is_empty()
        || matches!(
            method.to_ascii_uppercase().as_str(),
            "POST" | "PUT" | "PATCH"
        );
    if wants_length && !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", spec.body.len()));
    }
    if spec.close && !has_connection {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&spec.body);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::parse("http://example.com:8080/x?y=1").unwrap()
    }

    #[test]
    fn get_has_host_and_no_length() {
        let spec = RequestSpec {
            method: "get".into(),
            ..Default::default()
        };
        let req = build_request(&target(), &spec).unwrap();
        assert_eq!(
            req,
            b"GET /x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"
        );
    }

    #[test]
    fn body_headers_and_close_are_added() {
        let spec = RequestSpec {
            method: "POST".into(),
            headers: vec!["X-A: 1".into(), "host: other".into()],
            body: b"abc".to_vec(),
            close: true,
        };
        let req = build_request(&target(), &spec).unwrap();
        assert_eq!(
            req,
            b"POST /x?y=1 HTTP/1.1\r\nX-A: 1\r\nhost: other\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let spec = RequestSpec {
            method: "GET".into(),
            headers: vec!["NoColon".into()],
            ..Default::default()
        };
        assert!(build_request(&target(), &spec).is_err());
        let spec = RequestSpec {
            method: "G ET".into(),
            ..Default::default()
        };
        assert!(build_request(&target(), &spec).is_err());
    }
}

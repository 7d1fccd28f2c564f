//! The backend's responses, serialized once per listener so that answering a request is
//! one `extend_from_slice` into the connection's write buffer.

use std::io::Write;
use std::net::SocketAddr;

/// The response header naming the listener that answered; `ringload` counts its values.
pub const BACKEND_HEADER: &str = "X-Backend";

/// What the Connection header of an answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// HTTP/1.1 default: nothing.
    Absent,
    Close,
    /// For an HTTP/1.0 client that asked for keep-alive.
    KeepAlive,
}

impl ConnectionHeader {
    fn line(self) -> &'static str {
        match self {
            ConnectionHeader::Absent => "",
            ConnectionHeader::Close => "Connection: close\r\n",
            ConnectionHeader::KeepAlive => "Connection: keep-alive\r\n",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One serialized response and where its head ends (HEAD requests get only the head).
#[derive(Debug, Clone)]
struct Answer {
    bytes: Vec<u8>,
    head_len: usize,
}

impl Answer {
    fn new(status: &str, addr: &str, connection: ConnectionHeader, body: &[u8]) -> Answer {
        let head = format!(
            "HTTP/1.1 {status}\r\n{BACKEND_HEADER}: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            connection.line()
        );
        let head_len = head.len();
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Answer { bytes, head_len }
    }
}

/// Every fixed answer of one listener: the normal one and the health check's, for each
/// Connection header variant.
#[derive(Debug, Clone)]
pub struct Answers {
    addr: String,
    normal: [Answer; 3],
    health: [Answer; 3],
}

const VARIANTS: [ConnectionHeader; 3] = [
    ConnectionHeader::Absent,
    ConnectionHeader::Close,
    ConnectionHeader::KeepAlive,
];

impl Answers {
    /// `body_bytes`: body size; `None` puts the listener address and a newline in the body.
    pub fn new(addr: SocketAddr, body_bytes: Option<usize>) -> Answers {
        let addr = addr.to_string();
        let body = match body_bytes {
            Some(n) => vec![b'x'; n],
            None => format!("{addr}\n").into_bytes(),
        };
        Answers {
            normal: VARIANTS.map(|c| Answer::new("200 OK", &addr, c, &body)),
            health: VARIANTS.map(|c| Answer::new("200 OK", &addr, c, b"ok\n")),
            addr,
        }
    }

    /// Appends the answer to a request.
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        health: bool,
        status: Option<u16>,
        connection: ConnectionHeader,
        head_only: bool,
    ) {
        if let Some(code) = status.filter(|_| !health) {
            self.write_status(out, code, connection, head_only);
            return;
        }
        let answer = if health {
            &self.health[connection.index()]
        } else {
            &self.normal[connection.index()]
        };
        let end = if head_only {
            answer.head_len
        } else {
            answer.bytes.len()
        };
        out.extend_from_slice(&answer.bytes[..end]);
    }

    /// `/status/NNN`: a test aid, built on demand (not the hot path).
    fn write_status(
        &self,
        out: &mut Vec<u8>,
        code: u16,
        connection: ConnectionHeader,
        head_only: bool,
    ) {
        let no_body = code == 204 || code == 304;
        let body = format!("status {code}\n");
        let length = if no_body {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {code} Status\r\n{BACKEND_HEADER}: {}\r\nContent-Type: text/plain\r\n{length}{}\r\n",
            self.addr,
            connection.line()
        );
        if !head_only && !no_body {
            out.extend_from_slice(body.as_bytes());
        }
    }
}

/// The answer to a request the backend could not parse; the connection closes after it.
pub fn write_error(out: &mut Vec<u8>, code: u16) {
    let reason = if code == 431 {
        "431 Request Header Fields Too Large"
    } else {
        "400 Bad Request"
    };
    let _ = write!(
        out,
        "HTTP/1.1 {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_body_names_the_listener() {
        let answers = Answers::new("127.0.0.1:8001".parse().unwrap(), None);
        let mut out = Vec::new();
        answers.write(&mut out, false, None, ConnectionHeader::Absent, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("X-Backend: 127.0.0.1:8001\r\n"));
        assert!(text.ends_with("Content-Length: 15\r\n\r\n127.0.0.1:8001\n"));
    }

    #[test]
    fn head_gets_no_body_and_close_is_announced() {
        let answers = Answers::new("127.0.0.1:8001".parse().unwrap(), Some(100));
        let mut out = Vec::new();
        answers.write(&mut out, false, None, ConnectionHeader::Close, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 100\r\nConnection: close\r\n\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn status_path_answers_that_code() {
        let answers = Answers::new("127.0.0.1:1".parse().unwrap(), None);
        let mut out = Vec::new();
        answers.write(&mut out, false, Some(503), ConnectionHeader::Absent, false);
        assert!(out.starts_with(b"HTTP/1.1 503 Status\r\n"));
        assert!(out.ends_with(b"status 503\n"));
    }
}

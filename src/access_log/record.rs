//! What one request leaves for the access log: the parts of its head a format names
//! (`Captured`, copied out before the head's buffer is reused) and the facts known at its end
//! (`Record`). The proxy fills them; `format.rs` writes them.

use std::net::SocketAddr;
use std::time::Duration;

/// Request headers one format may log by `$http_<name>` besides Referer and User-Agent: a
/// fixed array per connection holds where they are, so a bound keeps it small.
pub const MAX_HEADERS: usize = 16;

/// Where a request header's value is kept for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSlot {
    Referer,
    UserAgent,
    /// One of the format's other `$http_<name>` headers.
    Other(usize),
}

/// A span of `Captured::bytes`.
type Span = (u32, u32);

/// What the log needs from a request head, copied out before the head's buffer is reused
/// (streamed bodies reuse it). Cleared, not freed, between requests.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    bytes: Vec<u8>,
    request_line: Span,
    /// `$host`, already resolved (lower case, no port, or the server name).
    host: Span,
    referer: Option<Span>,
    user_agent: Option<Span>,
    /// The format's other `$http_<name>` headers, by `HeaderSlot::Other` index.
    headers: [Option<Span>; MAX_HEADERS],
}

impl Captured {
    /// Forgets the previous request, keeping the memory.
    pub fn clear(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        *self = Captured {
            bytes,
            ..Captured::default()
        };
    }

    fn push(&mut self, s: &[u8]) -> Span {
        let a = self.bytes.len();
        self.bytes.extend_from_slice(s);
        (a as u32, self.bytes.len() as u32)
    }

    fn get(&self, s: Span) -> &[u8] {
        &self.bytes[s.0 as usize..s.1 as usize]
    }

    pub fn set_request_line(&mut self, line: &[u8]) {
        self.request_line = self.push(line);
    }

    /// The request line `start` followed by `protocol` (a line whose protocol is not the
    /// one its bytes say).
    pub fn set_request_line_with(&mut self, start: &[u8], protocol: &[u8]) {
        let (a, _) = self.push(start);
        let (_, b) = self.push(protocol);
        self.request_line = (a, b);
    }

    /// `write` appends `$host` to the buffer it is given.
    pub fn set_host(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let a = self.bytes.len();
        write(&mut self.bytes);
        self.host = (a as u32, self.bytes.len() as u32);
    }

    /// Keeps a header's value; the first of repeated headers wins.
    pub fn set_header(&mut self, slot: HeaderSlot, value: &[u8]) {
        let taken = match slot {
            HeaderSlot::Referer => self.referer.is_some(),
            HeaderSlot::UserAgent => self.user_agent.is_some(),
            HeaderSlot::Other(i) => self.headers[i].is_some(),
        };
        if taken {
            return;
        }
        let span = Some(self.push(value));
        match slot {
            HeaderSlot::Referer => self.referer = span,
            HeaderSlot::UserAgent => self.user_agent = span,
            HeaderSlot::Other(i) => self.headers[i] = span,
        }
    }

    pub(super) fn request_line(&self) -> &[u8] {
        self.get(self.request_line)
    }

    pub(super) fn host(&self) -> &[u8] {
        self.get(self.host)
    }

    pub(super) fn referer(&self) -> Option<&[u8]> {
        self.referer.map(|s| self.get(s))
    }

    pub(super) fn user_agent(&self) -> Option<&[u8]> {
        self.user_agent.map(|s| self.get(s))
    }

    pub(super) fn header(&self, i: usize) -> Option<&[u8]> {
        self.headers[i].map(|s| self.get(s))
    }
}

/// One request's facts, as the proxy hands them over at the end of the request.
pub struct Record<'a> {
    pub remote: SocketAddr,
    pub head: &'a Captured,
    /// `$scheme`.
    pub scheme: &'a str,
    /// 0 = the client went away before a response (logged as 499).
    pub status: u16,
    /// Response bytes that reached the client, head included (`$bytes_sent`) ...
    pub bytes_sent: u64,
    /// ... and after the head (`$body_bytes_sent`).
    pub body_bytes: u64,
    /// The last server tried (`$upstream_addr`): `10.0.0.7:8001`, `unix:/run/app.sock`.
    pub upstream: Option<&'a dyn std::fmt::Display>,
    /// 0 = no response from the upstream.
    pub upstream_status: u16,
    pub request_time: Duration,
    pub upstream_time: Duration,
}

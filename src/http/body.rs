//! How a response body is framed toward the client, given how the backend framed it.

use super::response::ResponseBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    None,
    Length(u64),
    /// Re-encoded as chunks (a chunked or close-delimited body to an HTTP/1.1 client).
    Chunked,
    /// Raw bytes until ringlb closes the connection (HTTP/1.0 clients).
    Close,
}

/// HTTP/1.1 clients get chunked framing for bodies of unknown length so their connection
/// stays reusable (nginx does the same); HTTP/1.0 clients can only be told by a close.
pub fn client_framing(body: ResponseBody, client_minor: u8) -> ClientFraming {
    match body {
        ResponseBody::None => ClientFraming::None,
        ResponseBody::Length(n) => ClientFraming::Length(n),
        ResponseBody::Chunked | ResponseBody::Close if client_minor >= 1 => ClientFraming::Chunked,
        ResponseBody::Chunked | ResponseBody::Close => ClientFraming::Close,
    }
}

//! One HTTP/2 stream as one exchange: the request head, a body reader and a response
//! writer, with HTTP/2 flow control as the backpressure in both directions. This is the
//! interface the proxy consumes (see `docs/http2.md`).

use std::future::poll_fn;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Request, Response};

/// One request stream.
pub struct Exchange {
    /// Method, URI (scheme, authority, path and query from the pseudo-headers) and headers.
    /// `h2` has already refused malformed requests (missing or repeated pseudo-headers,
    /// connection-specific headers, upper-case names, `te` other than `trailers`).
    pub head: http::request::Parts,
    pub body: RequestBody,
    pub response: Responder,
    /// The stream identifier (for logs).
    pub stream_id: u32,
}

/// How a request body is framed in its HTTP/1.1 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H1Framing {
    /// No body (the HEADERS frame ended the stream).
    None,
    /// `content-length` was given.
    Length(u64),
    /// A body of unknown length: `Transfer-Encoding: chunked`; the body must then be sent
    /// chunk-encoded.
    Chunked,
}

impl Exchange {
    pub(super) fn new(req: Request<RecvStream>, response: SendResponse<Bytes>) -> Exchange {
        let stream_id = response.stream_id().as_u32();
        let (head, stream) = req.into_parts();
        Exchange {
            head,
            body: RequestBody { stream },
            response: Responder { inner: response },
            stream_id,
        }
    }

    /// The request's `content-length`, if it gave a valid one.
    pub fn content_length(&self) -> Option<u64> {
        self.head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// How the body would be framed in HTTP/1.1.
    pub fn h1_framing(&self) -> H1Framing {
        if self.body.stream.is_end_stream() {
            H1Framing::None
        } else {
            self.content_length()
                .map_or(H1Framing::Chunked, H1Framing::Length)
        }
    }

    /// Appends the request as an HTTP/1.1 head (RFC 9113 8.3.1 and 8.2.3): `:authority`
    /// becomes `Host` (unless a `host` field is present), split `cookie` fields are joined
    /// with "; ", and the body framing is `framing` (a `content-length` field is written
    /// only through it). The result parses as any HTTP/1.1 request does.
    pub fn write_h1_head(&self, out: &mut Vec<u8>, framing: H1Framing) {
        out.extend_from_slice(self.head.method.as_str().as_bytes());
        out.push(b' ');
        let target = self.head.uri.path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(if target.is_empty() {
            b"/"
        } else {
            target.as_bytes()
        });
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let headers = &self.head.headers;
        if !headers.contains_key(http::header::HOST) {
            if let Some(a) = self.head.uri.authority() {
                out.extend_from_slice(b"host: ");
                out.extend_from_slice(a.as_str().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        let mut cookies = headers.get_all(http::header::COOKIE).iter().peekable();
        if cookies.peek().is_some() {
            out.extend_from_slice(b"cookie: ");
            for (i, c) in cookies.enumerate() {
                if i > 0 {
                    out.extend_from_slice(b"; ");
                }
                out.extend_from_slice(c.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in headers {
            if name == http::header::COOKIE
                || name == http::header::CONTENT_LENGTH
                || name == http::header::TE
            {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        match framing {
            H1Framing::None => {}
            H1Framing::Length(n) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            H1Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The request body as it arrives. Taking a chunk gives its bytes back to the client's flow
/// control window, so a consumer that stops reading stops the client (backpressure).
pub struct RequestBody {
    stream: RecvStream,
}

impl RequestBody {
    /// The next piece of the body; `None` at its end. An error means the client reset the
    /// stream or the connection failed.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, h2::Error>> {
        let r = self.stream.data().await;
        if let Some(Ok(data)) = &r {
            let _ = self.stream.flow_control().release_capacity(data.len());
        }
        r
    }

    /// Trailers, after the last chunk.
    pub async fn trailers(&mut self) -> Result<Option<HeaderMap>, h2::Error> {
        self.stream.trailers().await
    }

    /// Whether the body is complete (nothing more will arrive).
    pub fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}

/// Sends the response head (or resets the stream).
pub struct Responder {
    inner: SendResponse<Bytes>,
}

impl Responder {
    /// Sends the response head; `end_stream` when there is no body. Connection-specific
    /// fields (`connection`, `keep-alive`, `transfer-encoding`, `upgrade`,
    /// `proxy-connection`) must not be in `head` (RFC 9113 8.2.2); [`strip_h1_fields`]
    /// removes them.
    pub fn send_head(
        &mut self,
        head: Response<()>,
        end_stream: bool,
    ) -> Result<ResponseBody, h2::Error> {
        let stream = self.inner.send_response(head, end_stream)?;
        Ok(ResponseBody { stream })
    }

    /// Ends the stream with RST_STREAM (e.g. `Reason::INTERNAL_ERROR` when the server
    /// failed after the head was sent, `Reason::CANCEL`).
    pub fn reset(&mut self, reason: Reason) {
        self.inner.send_reset(reason);
    }

    /// Completes when the client resets the stream (it no longer wants the response).
    pub async fn reset_by_client(&mut self) -> Result<Reason, h2::Error> {
        poll_fn(|cx| self.inner.poll_reset(cx)).await
    }
}

/// Removes HTTP/1.1 connection-specific fields from a response head before it is sent
/// over HTTP/2 (RFC 9113 8.2.2), including those the `connection` field names.
pub fn strip_h1_fields(headers: &mut HeaderMap) {
    let named: Vec<http::HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(n);
    }
}

/// The response body: data waits for the client's flow control window, so a client that
/// does not read holds the sender (backpressure). A client that never opens its window
/// holds it for ever: callers put their send timeout around [`ResponseBody::write`].
pub struct ResponseBody {
    stream: SendStream<Bytes>,
}

impl ResponseBody {
    /// Sends `data` (in as many DATA frames as the windows allow); `end` ends the stream
    /// with the last of it.
    pub async fn write(&mut self, mut data: Bytes, end: bool) -> Result<(), h2::Error> {
        if data.is_empty() {
            if end {
                self.stream.send_data(Bytes::new(), true)?;
            }
            return Ok(());
        }
        while !data.is_empty() {
            self.stream.reserve_capacity(data.len());
            let granted = match poll_fn(|cx| self.stream.poll_capacity(cx)).await {
                Some(r) => r?,
                None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
            };
            if granted == 0 {
                continue;
            }
            let piece = data.split_to(granted.min(data.len()));
            self.stream.send_data(piece, end && data.is_empty())?;
        }
        Ok(())
    }

    /// Ends the stream (an empty DATA frame with END_STREAM; needs no window).
    pub fn finish(mut self) {
        let _ = self.stream.send_data(Bytes::new(), true);
    }

    /// Ends the stream with trailers.
    pub fn trailers(mut self, trailers: HeaderMap) -> Result<(), h2::Error> {
        self.stream.send_trailers(trailers)
    }

    /// Ends the stream with RST_STREAM.
    pub fn reset(mut self, reason: Reason) {
        self.stream.send_reset(reason);
    }
}

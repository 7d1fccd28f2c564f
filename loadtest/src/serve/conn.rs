//! One backend connection: read whatever arrived, answer every complete request in it
//! (pipelining) with one write, discard request bodies, honour keep-alive rules.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::answer::{write_error, Answers, ConnectionHeader};
use super::delay::Rng;
use super::request::{parse_head, HeadError, RequestBody, RequestHead, MAX_HEAD_BYTES};
use super::Backend;
use crate::http::chunked::ChunkedDecoder;
use crate::timer;

/// Initial read buffer; grows (up to the head limit) only for unusually large heads.
const READ_BUFFER: usize = 16 * 1024;
/// Initial write buffer: a batch of pipelined answers usually fits.
const WRITE_BUFFER: usize = 16 * 1024;

/// A request whose head is answered once its body has been read and discarded.
enum PendingBody {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// Per-thread state shared by the thread's connections.
pub struct ThreadState {
    pub backend: Arc<Backend>,
    pub rng: RefCell<Rng>,
}

/// Serves one connection (plain TCP or TLS over it) until the peer closes, an error, or a
/// close-after answer.
pub async fn serve_connection<S: AsyncReadRent + AsyncWriteRent>(
    mut stream: S,
    answers: Rc<Answers>,
    thread: Rc<ThreadState>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
    let mut pos = 0;
    let mut pending: Option<(RequestHead, PendingBody)> = None;
    loop {
        let mut close = false;
        let mut answered = 0usize;
        let mut delay = Duration::ZERO;
        loop {
            if let Some((head, body)) = &mut pending {
                let rest = &buf[pos..];
                let done = match body {
                    PendingBody::Length(left) => {
                        let take = (*left).min(rest.len() as u64);
                        *left -= take;
                        pos += take as usize;
                        *left == 0
                    }
                    PendingBody::Chunked(decoder) => match decoder.feed(rest) {
                        Ok((n, done)) => {
                            pos += n;
                            done
                        }
                        Err(_) => {
                            write_error(&mut out, 400);
                            close = true;
                            break;
                        }
                    },
                };
                if !done {
                    break;
                }
                let head = *head;
                pending = None;
                answer(&head, &answers, &thread, &mut out, &mut delay);
                answered += 1;
                if head.close {
                    close = true;
                    break;
                }
                continue;
            }
            match parse_head(&buf[pos..]) {
                Ok(None) => break,
                Ok(Some((n, head))) => {
                    pos += n;
                    match head.body {
                        RequestBody::None => {
                            answer(&head, &answers, &thread, &mut out, &mut delay);
                            answered += 1;
                            if head.close {
                                close = true;
                                break;
                            }
                        }
                        RequestBody::Length(len) => {
                            pending = Some((head, PendingBody::Length(len)))
                        }
                        RequestBody::Chunked => {
                            pending = Some((head, PendingBody::Chunked(ChunkedDecoder::new())))
                        }
                    }
                    if head.expect_continue {
                        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                }
                Err(err) => {
                    write_error(&mut out, if err == HeadError::TooLarge { 431 } else { 400 });
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            if answered > 0 {
                thread.backend.wait_out_stall().await;
                if !delay.is_zero() {
                    // Kernel timer precision: the runtime's 1 ms wheel turned a 1 ms delay
                    // into about 2.4 ms.
                    timer::sleep_until(std::time::Instant::now() + delay).await;
                }
            }
            let (result, written) = stream.write_all(out).await;
            out = written;
            if result.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }
        // Keep only the unparsed tail, at the front of the buffer.
        if pos > 0 {
            buf.copy_within(pos.., 0);
            buf.truncate(buf.len() - pos);
            pos = 0;
        }
        if buf.len() == buf.capacity() {
            if buf.capacity() >= MAX_HEAD_BYTES * 2 {
                return;
            }
            buf.reserve(buf.capacity());
        }
        let len = buf.len();
        let cap = buf.capacity();
        let (result, slice) = stream.read(buf.slice_mut(len..cap)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn answer(
    head: &RequestHead,
    answers: &Answers,
    thread: &ThreadState,
    out: &mut Vec<u8>,
    delay: &mut Duration,
) {
    let connection = if head.close {
        ConnectionHeader::Close
    } else if head.keep_alive_10 {
        ConnectionHeader::KeepAlive
    } else {
        ConnectionHeader::Absent
    };
    answers.write(out, head.health, head.status, connection, head.head_method);
    if head.health {
        return;
    }
    let backend = &thread.backend;
    backend.note_request();
    if let Some(spec) = &backend.delay {
        let unit = thread.rng.borrow_mut().next_unit();
        *delay = (*delay).max(spec.sample(unit));
    }
}

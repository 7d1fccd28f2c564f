//! One generator connection: take a ticket, (re)connect if needed, write the request,
//! read the response to its exact end, record, repeat. One read buffer per connection,
//! reused for every response; the request bytes are shared and never copied.

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;

use super::plan::{Plan, Worker};
use super::stats::ErrorKind;
use crate::http::response::{Progress, ResponseReader, MAX_HEAD_BYTES};
use crate::timer;
use crate::tls;

/// Read buffer per connection; bodies stream through it, only heads must fit.
const READ_BUFFER: usize = 16 * 1024;
/// Pause after a failed connect so that a refused port does not become a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Which step a request was in when its timer ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Handshake,
    Exchange,
}

/// A generator connection: plain TCP, or TLS over it (`https://`).
enum Conn {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

impl AsyncReadRent for Conn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Conn::Plain(s) => s.readv(buf).await,
            Conn::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Conn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Conn::Plain(s) => s.write(buf).await,
            Conn::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Conn::Plain(s) => s.writev(buf).await,
            Conn::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush().await,
            Conn::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        }
    }
}

impl Conn {
    /// What a failed read means: a TLS failure by kind, or a plain read error.
    fn read_error(&self, err: &std::io::Error) -> ErrorKind {
        match self {
            Conn::Plain(_) => ErrorKind::Read,
            Conn::Tls(_) => match tls::failure(err) {
                tls::Failure::Other if err.get_ref().is_none() => ErrorKind::Read,
                failure => failure.into(),
            },
        }
    }
}

/// Runs one connection until the worker hands out no more tickets.
pub async fn run_connection(worker: Rc<Worker>) {
    let plan = worker.plan.clone();
    let mut stream: Option<Conn> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    let mut reader = ResponseReader::new();
    while let Some(ticket) = worker.next_ticket() {
        if let Some(due) = ticket.due {
            if due > Instant::now() {
                timer::sleep_until(plan.wake_at(due)).await;
            }
        }
        let sent = Instant::now();
        if let (Some(due), true) = (ticket.due, ticket.counted) {
            let late = sent.saturating_duration_since(due);
            worker
                .stats
                .borrow_mut()
                .record_late(late.as_micros() as u64);
        }
        let mut limit = plan.timeout;
        let mut run_ends_first = false;
        if let Some(end) = plan.end {
            let left = end.saturating_duration_since(sent);
            if left < limit {
                limit = left;
                run_ends_first = true;
            }
        }
        let mut phase = Phase::Exchange;
        let mut bytes = 0u64;
        let result = monoio::time::timeout(
            limit,
            exchange(
                &plan,
                &mut stream,
                &mut buf,
                &mut reader,
                &mut phase,
                &mut bytes,
            ),
        )
        .await;
        let done = Instant::now();
        let error = match result {
            Ok(Ok(())) => {
                if reader.must_close() || !plan.keepalive {
                    stream = None;
                }
                if ticket.counted {
                    let latency = done.saturating_duration_since(ticket.due.unwrap_or(sent));
                    worker.stats.borrow_mut().record_response(
                        reader.status(),
                        latency.as_micros() as u64,
                        bytes,
                        reader.served_by(),
                    );
                }
                None
            }
            Ok(Err(kind)) => Some(kind),
            Err(_) if run_ends_first => break,
            Err(_) if phase == Phase::Connect => Some(ErrorKind::Connect),
            Err(_) if phase == Phase::Handshake => Some(ErrorKind::Tls),
            Err(_) => Some(ErrorKind::Timeout),
        };
        if let Some(kind) = error {
            // The connection's state is unknown (a cancelled read may still be in flight):
            // never reuse it.
            stream = None;
            if ticket.counted {
                worker.stats.borrow_mut().record_error(kind, bytes);
            }
            if kind == ErrorKind::Connect {
                let pause = match plan.end {
                    Some(end) => CONNECT_BACKOFF.min(end.saturating_duration_since(Instant::now())),
                    None => CONNECT_BACKOFF,
                };
                monoio::time::sleep(pause).await;
            }
        }
        if ticket.counted {
            worker.publish();
        }
    }
}

/// Opens a connection; with TLS the handshake is part of it (and of the request's latency).
async fn connect(plan: &Plan, phase: &mut Phase) -> Result<Conn, ErrorKind> {
    let stream = TcpStream::connect_addr(plan.addr)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = &plan.tls else {
        return Ok(Conn::Plain(stream));
    };
    *phase = Phase::Handshake;
    match tls.connector.connect(tls.name.clone(), stream).await {
        Ok(stream) => Ok(Conn::Tls(Box::new(stream))),
        Err(err) => Err(tls::failure(&err.into()).into()),
    }
}

/// One request/response on `stream` (connecting first when there is none).
async fn exchange(
    plan: &Plan,
    stream: &mut Option<Conn>,
    buf: &mut Vec<u8>,
    reader: &mut ResponseReader,
    phase: &mut Phase,
    bytes: &mut u64,
) -> Result<(), ErrorKind> {
    let conn = match stream {
        Some(conn) => conn,
        None => {
            *phase = Phase::Connect;
            buf.clear();
            let conn = stream.insert(connect(plan, phase).await?);
            *phase = Phase::Exchange;
            conn
        }
    };
    let (written, _) = conn.write_all(plan.request).await;
    written.map_err(|_| ErrorKind::Write)?;
    reader.start(plan.head_request);
    let mut pos = 0;
    loop {
        if pos < buf.len() {
            match reader.feed(&buf[pos..]).map_err(|_| ErrorKind::Invalid)? {
                Progress::More(n) => pos += n,
                Progress::Done(n) => {
                    pos += n;
                    // Anything after the response stays for the next one.
                    buf.copy_within(pos.., 0);
                    buf.truncate(buf.len() - pos);
                    return Ok(());
                }
            }
        }
        if pos > 0 {
            buf.copy_within(pos.., 0);
            buf.truncate(buf.len() - pos);
            pos = 0;
        }
        if buf.capacity() == 0 {
            // A timed-out read took the previous buffer with it.
            buf.reserve(READ_BUFFER);
        } else if buf.len() == buf.capacity() {
            if buf.capacity() > MAX_HEAD_BYTES {
                return Err(ErrorKind::Invalid);
            }
            buf.reserve(buf.capacity());
        }
        let owned = std::mem::take(buf);
        let (len, cap) = (owned.len(), owned.capacity());
        let (result, slice) = conn.read(owned.slice_mut(len..cap)).await;
        *buf = slice.into_inner();
        // A TLS peer that closes without close_notify reads as UnexpectedEof: an end of
        // stream like any other (a response it cuts short still fails in `eof`).
        let result = match result {
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        };
        match result {
            Ok(0) => {
                reader.eof().map_err(|_| ErrorKind::Read)?;
                buf.clear();
                return Ok(());
            }
            Ok(n) => *bytes += n as u64,
            Err(err) => return Err(conn.read_error(&err)),
        }
    }
}

//! The HTTP/2 connection loop: the `h2` crate's server over a guarded socket, per-connection
//! settings, each accepted stream handed to the caller as an [`Exchange`] on its own task,
//! and the ways a connection ends: the client leaves, idles out, reaches its request limit,
//! is asked to stop (graceful stop, reload: GOAWAY then the streams in flight finish), or
//! breaks the frame budget (GOAWAY ENHANCE_YOUR_CALM at once).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use monoio::io::poll_io::{AsyncRead, AsyncWrite};

use super::budget::{Abuse, AbuseSignal, Cut, Guarded};
use super::exchange::Exchange;
use crate::metrics::bump;

/// Per-connection limits, from the server block (see [`H2Settings::for_server`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: the decoded size of a request's fields (RFC 9113
    /// counts each as name + value + 32); larger requests get 431.
    pub max_header_list_size: u32,
    /// Receive windows: how much request body a client may send before we read it.
    pub initial_stream_window: u32,
    pub initial_connection_window: u32,
    /// Streams per connection, then GOAWAY (nginx's keepalive_requests applies to HTTP/2
    /// streams too).
    pub max_requests: u64,
    /// A connection without streams for this long gets GOAWAY.
    pub idle_timeout: Duration,
    /// From the TLS handshake's end to the client's preface and SETTINGS.
    pub preface_timeout: Duration,
    /// After GOAWAY, how long streams in flight may take before the connection is closed.
    pub drain_timeout: Duration,
}

impl H2Settings {
    /// Settings for a server block's limits. 128 streams (nginx's
    /// http2_max_concurrent_streams); windows of 256 KiB per stream and 1 MiB per connection
    /// let an upload run at a few hundred MB/s over a 1 ms round trip without letting a
    /// client park more than that in memory.
    pub fn for_server(
        max_header_bytes: usize,
        keepalive_requests: u64,
        keepalive_timeout: Duration,
        client_header_timeout: Duration,
        shutdown_timeout: Duration,
    ) -> H2Settings {
        H2Settings {
            max_concurrent_streams: 128,
            max_header_list_size: max_header_bytes.min(u32::MAX as usize) as u32,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_requests: keepalive_requests.max(1),
            idle_timeout: keepalive_timeout,
            preface_timeout: client_header_timeout,
            drain_timeout: shutdown_timeout,
        }
    }
}

/// Per-worker HTTP/2 counters.
pub type H2Stats = crate::metrics::H2Counters;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEnd {
    /// The client closed it or sent GOAWAY, or it finished after our GOAWAY.
    Closed,
    /// Idle for `idle_timeout`: GOAWAY sent.
    Idle,
    /// Asked to stop (graceful stop, reload): GOAWAY sent, streams drained.
    Shutdown,
    /// `max_requests` streams served: GOAWAY sent, streams drained.
    RequestLimit,
    /// Cut off for abuse with GOAWAY ENHANCE_YOUR_CALM.
    Abuse(Abuse),
    /// No valid preface in time, a protocol error (h2 sent GOAWAY with its reason), or I/O
    /// failure.
    Error(String),
}

/// A per-worker signal that asks every HTTP/2 connection of the worker to finish: GOAWAY,
/// then the streams in flight complete. Cheap to clone (one per connection).
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Rc<ShutdownInner>);

#[derive(Debug, Default)]
struct ShutdownInner {
    /// Incremented by each trigger; a connection remembers the count it started with.
    epoch: Cell<u64>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Shutdown {
    /// Asks every connection alive now to finish.
    pub fn trigger(&self) {
        self.0.epoch.set(self.0.epoch.get() + 1);
        for w in self.0.wakers.borrow_mut().iter_mut() {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    fn epoch(&self) -> u64 {
        self.0.epoch.get()
    }

    /// Completes at the first trigger after `since`.
    async fn wait(&self, since: u64) {
        let slot = {
            let mut free = self.0.free.borrow_mut();
            let mut wakers = self.0.wakers.borrow_mut();
            free.pop().unwrap_or_else(|| {
                wakers.push(None);
                wakers.len() - 1
            })
        };
        struct Release<'a>(&'a ShutdownInner, usize);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.wakers.borrow_mut()[self.1] = None;
                self.0.free.borrow_mut().push(self.1);
            }
        }
        let _release = Release(&self.0, slot);
        poll_fn(|cx| {
            if self.0.epoch.get() != since {
                return Poll::Ready(());
            }
            self.0.wakers.borrow_mut()[slot] = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// A stream `h2` accepted (or why it could not).
type Accepted = Option<
    Result<
        (
            http::Request<h2::RecvStream>,
            h2::server::SendResponse<Bytes>,
        ),
        h2::Error,
    >,
>;

// Lives on the stack for one loop turn: boxing it would cost an allocation per stream.
#[allow(clippy::large_enum_variant)]
enum Event {
    Stream(Accepted),
    Shutdown,
    Idle,
    Cut(Cut),
}

/// Serves one HTTP/2 connection (after ALPN chose `h2`) until it ends. Each request stream
/// is passed to `handler` as an [`Exchange`], and the future it returns runs on its own
/// task, so streams proceed concurrently; the connection's frames keep flowing meanwhile.
pub async fn serve<IO, H, F>(
    io: IO,
    settings: &H2Settings,
    shutdown: &Shutdown,
    stats: &H2Stats,
    mut handler: H,
) -> ConnEnd
where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
    H: FnMut(Exchange) -> F,
    F: Future<Output = ()> + 'static,
{
    bump(&stats.connections);
    let signal = Rc::new(AbuseSignal::default());
    let io = Rc::new(RefCell::new(io));
    let end = drive(
        Guarded::new(io.clone(), signal.clone()),
        settings,
        shutdown,
        stats,
        &signal,
        &mut handler,
    )
    .await;
    if matches!(end, ConnEnd::Abuse(_) | ConnEnd::Error(_)) {
        linger(&io).await;
    }
    end
}

/// The connection's life from the preface to its end.
async fn drive<IO, H, F>(
    io: Guarded<IO>,
    settings: &H2Settings,
    shutdown: &Shutdown,
    stats: &H2Stats,
    signal: &AbuseSignal,
    handler: &mut H,
) -> ConnEnd
where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
    H: FnMut(Exchange) -> F,
    F: Future<Output = ()> + 'static,
{
    let since = shutdown.epoch();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size)
        .initial_window_size(settings.initial_stream_window)
        .initial_connection_window_size(settings.initial_connection_window);
    let handshake = builder.handshake::<_, Bytes>(io);
    // The preface reaches h2 even when a later frame is cut (the cut keeps what came
    // before it), so the GOAWAY for that frame goes out from the loop below.
    let mut conn = match monoio::time::timeout(settings.preface_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return ConnEnd::Error(e.to_string()),
        Err(_) => return ConnEnd::Error("no HTTP/2 preface in time".into()),
    };
    let mut accepted = 0u64;
    let end = loop {
        let idle = !conn.has_streams();
        let event = monoio::select! {
            s = conn.accept() => Event::Stream(s),
            _ = shutdown.wait(since) => Event::Shutdown,
            c = signal.wait() => Event::Cut(c),
            _ = idle_timer(idle, settings.idle_timeout) => Event::Idle,
        };
        match event {
            Event::Stream(Some(Ok((req, respond)))) => {
                accepted += 1;
                bump(&stats.streams);
                monoio::spawn(handler(Exchange::new(req, respond)));
                if accepted >= settings.max_requests {
                    conn.graceful_shutdown();
                    break ConnEnd::RequestLimit;
                }
            }
            Event::Stream(Some(Err(e))) => {
                return match signal.get() {
                    Some(a) => cut_off(conn, a, stats).await,
                    None if e.is_io() => ConnEnd::Closed,
                    None => ConnEnd::Error(e.to_string()),
                };
            }
            Event::Stream(None) => return ConnEnd::Closed,
            Event::Cut(c) => return cut_off(conn, c, stats).await,
            Event::Shutdown => {
                conn.graceful_shutdown();
                break ConnEnd::Shutdown;
            }
            Event::Idle => {
                conn.graceful_shutdown();
                break ConnEnd::Idle;
            }
        }
    };
    // After GOAWAY: keep driving the connection so the streams in flight finish; streams
    // the client opens meanwhile (below the GOAWAY's last stream id) are still served.
    let drain = async {
        while let Some(Ok((req, respond))) = conn.accept().await {
            monoio::spawn(handler(Exchange::new(req, respond)));
        }
    };
    let _ = monoio::time::timeout(settings.drain_timeout, drain).await;
    end
}

/// Sends GOAWAY with the cut's reason and gives the connection a moment to flush it.
async fn cut_off<T, B>(mut conn: h2::server::Connection<T, B>, cut: Cut, stats: &H2Stats) -> ConnEnd
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: bytes::Buf,
{
    /// Enough to write one frame to a client that reads; one that does not is dropped.
    const FLUSH_GOAWAY: Duration = Duration::from_secs(1);
    conn.abrupt_shutdown(cut.reason());
    let _ = monoio::time::timeout(FLUSH_GOAWAY, poll_fn(|cx| conn.poll_closed(cx))).await;
    match cut {
        Cut::Abuse(abuse) => {
            bump(&stats.abuse[abuse.index()]);
            tracing::info!(
                reason = abuse.as_str(),
                "HTTP/2 connection cut off: GOAWAY ENHANCE_YOUR_CALM"
            );
            ConnEnd::Abuse(abuse)
        }
        other => ConnEnd::Error(format!("GOAWAY {:?}", other.reason())),
    }
}

/// After a GOAWAY for an error: the write side is closed (h2 shut it down after the
/// GOAWAY); read and drop what the client still sends for a moment, so that closing the
/// socket with unread input does not reset the connection (and destroy the GOAWAY) before
/// the client has read it. Bounded in time and bytes: a flood is not drained for long.
async fn linger<IO: AsyncRead + Unpin>(io: &RefCell<IO>) {
    const LINGER: Duration = Duration::from_millis(500);
    const LINGER_MAX_BYTES: usize = 1 << 20;
    let until = std::time::Instant::now() + LINGER;
    let mut scratch = vec![0u8; 16 * 1024];
    let mut drained = 0;
    while drained < LINGER_MAX_BYTES {
        let read = poll_fn(|cx| {
            let mut rb = monoio::io::poll_io::ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io.borrow_mut()).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        match monoio::time::timeout_at(until.into(), read).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// Completes after `after` when the connection is idle; never otherwise.
async fn idle_timer(idle: bool, after: Duration) {
    if idle {
        monoio::time::sleep(after).await;
    } else {
        std::future::pending::<()>().await;
    }
}

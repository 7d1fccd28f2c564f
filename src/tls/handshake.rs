//! The server side of a TLS handshake on the worker that accepted the connection: read the
//! ClientHello, choose the server block's configuration by SNI (which also fixes the ALPN
//! offer), then complete the handshake. All I/O waits on socket readiness, so a handshake
//! costs its worker only the CPU of its cryptography; a deadline bounds the whole of it.

use std::future::poll_fn;
use std::io;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustls::server::Acceptor;

use super::sites::AddrTls;
use super::stream::{poll_flush_tls, poll_read_tls, SyncIo, TlsStream};
use crate::metrics::bump;

/// Why a handshake did not complete: the reasons counted in /metrics and /status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// No protocol version, cipher suite, key exchange group or ALPN protocol in common.
    Incompatible,
    /// The client sent a fatal alert (typically: it does not trust the certificate).
    RejectedByClient,
    /// Not a valid TLS handshake (plain HTTP on a TLS port, a malformed ClientHello or SNI).
    ProtocolError,
    /// The client closed or reset the connection before the handshake finished.
    ClientClosed,
    /// The handshake took longer than its deadline.
    Timeout,
    Other,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 6] = [
        HandshakeFailure::Incompatible,
        HandshakeFailure::RejectedByClient,
        HandshakeFailure::ProtocolError,
        HandshakeFailure::ClientClosed,
        HandshakeFailure::Timeout,
        HandshakeFailure::Other,
    ];

    /// Its slot in `TlsCounters::failures`.
    pub fn index(self) -> usize {
        HandshakeFailure::ALL
            .iter()
            .position(|x| *x == self)
            .unwrap_or(5)
    }

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        crate::metrics::TLS_FAILURES[self.index()]
    }

    fn of_tls(e: &rustls::Error) -> HandshakeFailure {
        use rustls::Error as E;
        match e {
            E::PeerIncompatible(_) | E::NoApplicationProtocol => HandshakeFailure::Incompatible,
            E::AlertReceived(_) => HandshakeFailure::RejectedByClient,
            E::InvalidMessage(_)
            | E::PeerMisbehaved(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::DecryptError => HandshakeFailure::ProtocolError,
            _ => HandshakeFailure::Other,
        }
    }

    fn of_io(e: &io::Error) -> HandshakeFailure {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return HandshakeFailure::of_tls(tls);
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => HandshakeFailure::ClientClosed,
            _ => HandshakeFailure::Other,
        }
    }
}

/// Per-worker TLS counters (written only by their worker; summed at scrape time).
pub type TlsStats = crate::metrics::TlsCounters;

/// Runs the server side of a handshake on an accepted connection, within `timeout`.
pub async fn accept(
    stream: TcpStream,
    addr: &AddrTls,
    timeout: Duration,
    stats: &TlsStats,
) -> Result<TlsStream, HandshakeFailure> {
    let deadline = Instant::now() + timeout;
    let r = match monoio::time::timeout_at(deadline.into(), handshake(stream, addr)).await {
        Ok(r) => r,
        Err(_) => Err(HandshakeFailure::Timeout),
    };
    match &r {
        Ok(s) => {
            bump(&stats.handshakes);
            if s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                bump(&stats.resumed);
            }
        }
        Err(f) => {
            let i = HandshakeFailure::ALL
                .iter()
                .position(|x| x == f)
                .unwrap_or(5);
            bump(&stats.failures[i]);
        }
    }
    r
}

async fn handshake(stream: TcpStream, addr: &AddrTls) -> Result<TlsStream, HandshakeFailure> {
    // TCP_NODELAY comes from the listening socket (`runtime::listener::bind`).
    let mut io = stream
        .try_into_poll_io()
        .map_err(|_| HandshakeFailure::Other)?;
    let mut acceptor = Acceptor::default();
    let accepted = poll_fn(|cx| loop {
        match acceptor.read_tls(&mut SyncIo { io: &mut io, cx }) {
            Ok(0) => return Poll::Ready(Err(HandshakeFailure::ClientClosed)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(HandshakeFailure::of_io(&e))),
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Poll::Ready(Ok(accepted)),
            Ok(None) => {}
            Err((e, mut alert)) => {
                let _ = alert.write(&mut SyncIo { io: &mut io, cx });
                return Poll::Ready(Err(HandshakeFailure::of_tls(&e)));
            }
        }
    })
    .await?;
    let config = addr.choose(accepted.client_hello().server_name()).clone();
    let mut conn = match accepted.into_connection(config) {
        Ok(conn) => conn,
        Err((e, mut alert)) => {
            poll_fn(|cx| {
                let _ = alert.write(&mut SyncIo { io: &mut io, cx });
                Poll::Ready(())
            })
            .await;
            return Err(HandshakeFailure::of_tls(&e));
        }
    };
    let mut eof = false;
    poll_fn(|cx| loop {
        match poll_flush_tls(&mut io, &mut conn, cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(HandshakeFailure::of_io(&e))),
            Poll::Pending => return Poll::Pending,
        }
        if !conn.is_handshaking() {
            return Poll::Ready(Ok(()));
        }
        if eof {
            return Poll::Ready(Err(HandshakeFailure::ClientClosed));
        }
        match poll_read_tls(&mut io, &mut conn, &mut eof, cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(HandshakeFailure::of_io(&e))),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await?;
    Ok(TlsStream { io, conn, eof })
}

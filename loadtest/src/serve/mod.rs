//! `ringload serve`: a fast HTTP/1.1 test backend. Every listener answers with its own
//! address in an `X-Backend` header (and, by default, in the body), so a load run through
//! a proxy can count which backend served each request.

pub mod answer;
pub mod conn;
pub mod delay;
pub mod request;

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cli::{ServeArgs, DEFAULT_LISTEN};
use crate::{rt, tls};
use answer::Answers;
use conn::{serve_connection, ThreadState};
use delay::{DelaySpec, Rng};

/// Pending connections the kernel may queue per listener.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// A one-time pause of the whole backend (`--stall-once`), to check that a generator
/// corrects for coordinated omission.
pub struct Stall {
    after: u64,
    length: Duration,
    seen: AtomicU64,
    until: OnceLock<Instant>,
}

/// Settings shared by every thread of the backend.
pub struct Backend {
    pub delay: Option<DelaySpec>,
    stall: Option<Stall>,
}

impl Backend {
    /// Counts a request toward the stall trigger; costs nothing once the stall happened.
    fn note_request(&self) {
        if let Some(stall) = &self.stall {
            if stall.until.get().is_none()
                && stall.seen.fetch_add(1, Ordering::Relaxed) == stall.after
            {
                let _ = stall.until.set(Instant::now() + stall.length);
            }
        }
    }

    /// While the stall lasts no answer leaves the backend.
    async fn wait_out_stall(&self) {
        if let Some(until) = self.stall.as_ref().and_then(|s| s.until.get()) {
            let now = Instant::now();
            if now < *until {
                monoio::time::sleep(*until - now).await;
            }
        }
    }
}

/// Binds every listener, starts the threads and serves until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let addrs: Vec<SocketAddr> = if args.listen.is_empty() {
        vec![DEFAULT_LISTEN.parse().expect("valid default address")]
    } else {
        args.listen.clone()
    };
    // Register before anything can be asked to stop, so that an early signal is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot install signal handlers")?;
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        let listener =
            StdListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        // std listens with a backlog of 128: a proxy opening hundreds of upstream connections
        // at once would see SYNs dropped and retried a second later. Listening again on a
        // listening socket only changes the backlog (capped by net.core.somaxconn).
        // SAFETY: a plain system call on a descriptor this function owns.
        unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        listeners.push((listener, local));
    }
    let delay = args.delay.map(DelaySpec::Fixed).or(args.delay_dist);
    let stall = args.stall_once.map(|length| Stall {
        after: args.stall_after,
        length,
        seen: AtomicU64::new(0),
        until: OnceLock::new(),
    });
    let backend = Arc::new(Backend { delay, stall });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(monoio_rustls::TlsAcceptor::from(
            tls::server_config(cert, key).map_err(anyhow::Error::msg)?,
        )),
        _ => None,
    };
    for index in 0..args.threads as usize {
        let mine: Vec<(StdListener, SocketAddr)> = listeners
            .iter()
            .map(|(l, a)| Ok((l.try_clone()?, *a)))
            .collect::<std::io::Result<_>>()?;
        let backend = backend.clone();
        let body_bytes = args.body_bytes;
        let tls = tls.clone();
        std::thread::Builder::new()
            .name(format!("ringload-serve-{index}"))
            .spawn(move || {
                let seed = 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1);
                let state = Rc::new(ThreadState {
                    backend,
                    rng: RefCell::new(Rng::new(seed)),
                });
                rt::block_on(move || accept_all(mine, body_bytes, tls, state));
            })?;
    }
    for (_, addr) in &listeners {
        eprintln!("listening on {addr}");
    }
    if let Some(signal) = signals.forever().next() {
        eprintln!("ringload serve: stopping on signal {signal}");
    }
    std::process::exit(0)
}

/// Accepts on every listener of this thread until the process exits.
async fn accept_all(
    listeners: Vec<(StdListener, SocketAddr)>,
    body_bytes: Option<usize>,
    tls: Option<monoio_rustls::TlsAcceptor>,
    state: Rc<ThreadState>,
) {
    let mut loops = Vec::with_capacity(listeners.len());
    for (std_listener, addr) in listeners {
        let listener = match monoio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(err) => {
                eprintln!("ringload serve: cannot use listener {addr}: {err}");
                continue;
            }
        };
        let answers = Rc::new(Answers::new(addr, body_bytes));
        let state = state.clone();
        let tls = tls.clone();
        loops.push(monoio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let (answers, state) = (answers.clone(), state.clone());
                        match &tls {
                            None => {
                                monoio::spawn(serve_connection(stream, answers, state));
                            }
                            Some(acceptor) => {
                                let acceptor = acceptor.clone();
                                monoio::spawn(async move {
                                    // A failed handshake just ends the connection.
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        serve_connection(stream, answers, state).await;
                                    }
                                });
                            }
                        }
                    }
                    // Out of descriptors or a transient accept error: back off briefly.
                    Err(_) => monoio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
    }
    for handle in loops {
        handle.await;
    }
}

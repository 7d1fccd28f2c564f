//! Worker threads: one per configured worker, pinned to its core, each running its own
//! monoio event loop (io_uring, or epoll where io_uring is unavailable) with its own
//! listening sockets, idle pool and selection state. `Process` is what the threads share.

mod driver;
mod listener;
pub mod notify;
pub mod pidfile;
mod process;
mod secure;
mod worker;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::config::Config;
use listener::{Holder, Unavailable};
use pidfile::{PidFile, PidFileError};

pub use driver::IoKind;
pub use process::Process;

/// A running set of workers.
pub struct Running {
    pub process: Arc<Process>,
    threads: Vec<JoinHandle<()>>,
    /// Held until the workers have stopped; removed then.
    pid_file: Option<PidFile>,
}

/// Why the workers could not start. Each names what it could not have: the file, the
/// address and its key, the other process where the system tells.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("{}", in_use(*addr, key, holder.as_ref()))]
    AddrInUse {
        addr: SocketAddr,
        /// `listen` or `admin.listen`.
        key: &'static str,
        holder: Option<Holder>,
    },
    #[error("cannot listen on {addr} ({key}): {source}{}", bind_hint(*addr, source))]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("worker {worker}: {message}")]
    Worker { worker: usize, message: String },
    #[error(transparent)]
    Site(#[from] crate::files::SiteError),
}

fn in_use(addr: SocketAddr, key: &str, holder: Option<&Holder>) -> String {
    let who = match holder {
        Some(h) => format!("by {h}"),
        None => format!(
            "by another process (not visible to this user; `ss -ltnp 'sport = :{}'` as root names it)",
            addr.port()
        ),
    };
    format!(
        "cannot listen on {addr} ({key}): already in use {who}; is another ringlb running? \
         (SO_REUSEPORT would otherwise share the port with it silently)"
    )
}

fn bind_hint(addr: SocketAddr, e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES) if addr.port() < 1024 => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE, which the systemd unit grants)"
        }
        Some(libc::EADDRNOTAVAIL) => " (no interface of this machine has that address)",
        _ => "",
    }
}

/// Every address ringlb is about to listen on, with its key, each once.
fn addresses(config: &Config) -> Vec<(SocketAddr, &'static str)> {
    let mut all: Vec<(SocketAddr, &'static str)> = Vec::new();
    for addr in config.servers.iter().flat_map(|s| &s.listen) {
        if !all.iter().any(|(a, _)| a == addr) {
            all.push((*addr, "listen"));
        }
    }
    if let Some(admin) = &config.admin {
        all.push((admin.listen, "admin.listen"));
    }
    all
}

/// What must hold before any worker starts: the pid file is ours, and no other process
/// listens on our addresses (checked before binding the SO_REUSEPORT sockets, which would
/// share them).
fn preflight(config: &Config) -> Result<Option<PidFile>, StartError> {
    let pid_file = match &config.runtime.pid_file {
        Some(path) => Some(PidFile::acquire(path)?),
        None => None,
    };
    for (addr, key) in addresses(config) {
        match listener::probe(addr) {
            Ok(()) => {}
            Err(Unavailable::InUse(holder)) => {
                return Err(StartError::AddrInUse { addr, key, holder })
            }
            Err(Unavailable::Other(source)) => return Err(StartError::Bind { addr, key, source }),
        }
    }
    Ok(pid_file)
}

/// Starts the workers on `config` (already validated) and waits until every one of them
/// has bound its listeners.
pub fn start(config: Config) -> Result<Running, StartError> {
    let pid_file = preflight(&config)?;
    let workers = config.runtime.workers.max(1);
    let io_mode = config.runtime.io;
    let pin = config.runtime.pin_workers;
    let process = Arc::new(Process::new(config, workers)?);
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    if workers > allowed.len() && !allowed.is_empty() {
        // With pin_workers, worker i is pinned to core i mod cpus.
        tracing::warn!(
            workers,
            cpus = allowed.len(),
            pin_workers = pin,
            "runtime.workers is more than the CPUs this process may run on: workers share cores"
        );
    }
    let cores = if pin { allowed } else { Vec::new() };
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(workers);
    for id in 0..workers {
        let core = cores.get(id % cores.len().max(1)).copied();
        let process = process.clone();
        let ready = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("ringlb-worker-{id}"))
            .spawn(move || worker::run(id, core, io_mode, process, ready))
            .map_err(|e| StartError::Worker {
                worker: id,
                message: e.to_string(),
            })?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok((_, kind))) => {
                let _ = process.io.set(kind);
            }
            Ok(Err((worker, message))) => {
                process.stop();
                return Err(StartError::Worker { worker, message });
            }
            Err(_) => {
                process.stop();
                return Err(StartError::Worker {
                    worker: 0,
                    message: "worker exited during start".into(),
                });
            }
        }
    }
    Ok(Running {
        process,
        threads,
        pid_file,
    })
}

impl Running {
    /// Waits for every worker to finish (after `Process::stop`). The pid file stays until
    /// the returned guard is dropped, once everything else is written out.
    pub fn wait(self) -> Option<PidFile> {
        for t in self.threads {
            let _ = t.join();
        }
        self.pid_file
    }
}

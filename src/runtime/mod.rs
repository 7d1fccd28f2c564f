//! Worker threads: one per configured worker, pinned to its core, each running its own
//! monoio event loop (io_uring, or epoll where io_uring is unavailable) with its own
//! listening sockets, idle pool and selection state. `Process` is what the threads share.

mod listener;
pub mod notify;
pub mod pidfile;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;

use crate::config::{self, Config, ConfigError, IoMode};
use crate::metrics::WorkerStats;
use crate::proxy::{Published, Shared};
use crate::upstream::Registry;
use listener::{Holder, Unavailable};
use pidfile::{PidFile, PidFileError};

/// The I/O driver the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    IoUring,
    Epoll,
}

impl IoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IoKind::IoUring => "io_uring",
            IoKind::Epoll => "epoll",
        }
    }
}

/// Everything the workers, the control thread and the admin endpoint share.
pub struct Process {
    pub shared: Arc<Shared>,
    pub registry: Registry,
    /// One per worker, in worker order.
    pub stats: Vec<Arc<WorkerStats>>,
    pub config_path: PathBuf,
    pub workers: usize,
    pub io: OnceLock<IoKind>,
    /// Set once to begin a graceful stop.
    pub stopping: AtomicBool,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Serialises reloads (SIGHUP, tests) so two never interleave their generations.
    reload_lock: std::sync::Mutex<()>,
}

impl Process {
    /// The configuration generation workers are running now.
    pub fn current(&self) -> Arc<Published> {
        self.shared.published.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Re-reads the configuration file and, if it is valid, publishes it to every worker.
    /// On error the running configuration stays and every error is returned.
    pub fn reload(&self) -> Result<u64, Vec<ConfigError>> {
        let _serial = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        match config::load(&self.config_path) {
            Ok(cfg) => {
                if cfg.runtime.workers != self.workers {
                    tracing::warn!(
                        "runtime.workers changed ({} -> {}): takes effect on restart",
                        self.workers,
                        cfg.runtime.workers
                    );
                }
                let old = self.current();
                let old = old.config();
                if cfg.runtime.io != old.runtime.io
                    || cfg.runtime.pin_workers != old.runtime.pin_workers
                {
                    tracing::warn!(
                        "runtime.io / runtime.pin_workers changed: take effect on restart"
                    );
                }
                if cfg.admin != old.admin {
                    tracing::warn!("admin.listen changed: takes effect on restart");
                }
                let generation = self.generation() + 1;
                let next = Published::build(Arc::new(cfg), &self.registry, generation);
                let keep: Vec<(String, crate::config::ServerAddr)> = next
                    .snapshot
                    .upstreams
                    .iter()
                    .flat_map(|u| {
                        u.peers
                            .iter()
                            .map(|p| (u.cfg.name.clone(), p.cfg.addr.clone()))
                    })
                    .collect();
                self.shared.publish(next);
                self.registry
                    .retain(&|u, a| keep.iter().any(|(ku, ka)| ku == u && ka == a));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(generation, "configuration reloaded");
                Ok(generation)
            }
            Err(errors) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                for e in &errors {
                    tracing::error!("reload refused: {e}");
                }
                Err(errors)
            }
        }
    }

    /// Begins a graceful stop of every worker.
    pub fn stop(&self) {
        if !self.stopping.swap(true, Ordering::AcqRel) {
            notify::stopping();
        }
    }
}

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
    let registry = Registry::with_workers(workers);
    let path = config.path.clone();
    let io_mode = config.runtime.io;
    let pin = config.runtime.pin_workers;
    let published = Published::build(Arc::new(config), &registry, 1);
    let process = Arc::new(Process {
        shared: Arc::new(Shared::new(published)),
        registry,
        stats: (0..workers).map(|_| Arc::default()).collect(),
        config_path: path,
        workers,
        io: OnceLock::new(),
        stopping: AtomicBool::new(false),
        reloads_ok: AtomicU64::new(0),
        reloads_failed: AtomicU64::new(0),
        reload_lock: std::sync::Mutex::new(()),
    });
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    if workers > allowed.len() && !allowed.is_empty() {
        tracing::warn!(
            workers,
            cpus = allowed.len(),
            "runtime.workers is more than the CPUs this process may run on: workers share \
             cores{}",
            if pin {
                " (pin_workers places worker i on core i mod cpus)"
            } else {
                ""
            }
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

/// The driver to try first for an `io` setting.
pub(crate) fn wants_uring(mode: IoMode) -> bool {
    !matches!(mode, IoMode::Epoll)
}

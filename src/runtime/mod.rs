//! Worker threads: one per configured worker, pinned to its core, each running its own
//! monoio event loop (io_uring, or epoll where io_uring is unavailable) with its own
//! listening sockets, idle pool and selection state. `Process` is what the threads share.

mod listener;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;

use crate::config::{self, Config, ConfigError, IoMode};
use crate::control::generation::{Generations, Published};
use crate::metrics::WorkerStats;

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
    /// The published configuration generation, and each server's live state.
    pub generations: Arc<Generations>,
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
        self.generations.current()
    }

    pub fn generation(&self) -> u64 {
        self.generations.number()
    }

    /// Re-reads the configuration file and, if it is valid, publishes it to every worker
    /// (logging what changed). On error the running configuration stays and every error is
    /// returned.
    pub fn reload(&self) -> Result<u64, Vec<ConfigError>> {
        let _serial = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        match config::load(&self.config_path) {
            Ok(cfg) => {
                let (generation, _) = self.generations.reload(cfg);
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                Ok(generation)
            }
            Err(errors) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                for e in &errors {
                    tracing::error!(error = %e, "reload refused");
                }
                Err(errors)
            }
        }
    }

    /// Begins a graceful stop of every worker.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// A running set of workers.
pub struct Running {
    pub process: Arc<Process>,
    threads: Vec<JoinHandle<()>>,
}

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("worker {worker}: {message}")]
    Worker { worker: usize, message: String },
}

/// Starts the workers on `config` (already validated) and waits until every one of them
/// has bound its listeners.
pub fn start(config: Config) -> Result<Running, StartError> {
    let workers = config.runtime.workers.max(1);
    let path = config.path.clone();
    let io_mode = config.runtime.io;
    let pin = config.runtime.pin_workers;
    let process = Arc::new(Process {
        generations: Arc::new(Generations::start(config, workers)),
        stats: (0..workers).map(|_| Arc::default()).collect(),
        config_path: path,
        workers,
        io: OnceLock::new(),
        stopping: AtomicBool::new(false),
        reloads_ok: AtomicU64::new(0),
        reloads_failed: AtomicU64::new(0),
        reload_lock: std::sync::Mutex::new(()),
    });
    let cores = if pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
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
    if let Some(kind) = process.io.get() {
        tracing::info!(workers, io = kind.as_str(), "ringlb started");
    }
    Ok(Running { process, threads })
}

impl Running {
    /// Waits for every worker to finish (after `Process::stop`).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The driver to try first for an `io` setting.
pub(crate) fn wants_uring(mode: IoMode) -> bool {
    !matches!(mode, IoMode::Epoll)
}

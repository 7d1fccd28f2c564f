//! Worker threads: one per configured worker, pinned to its core, each running its own
//! monoio event loop (io_uring, or epoll where io_uring is unavailable) with its own
//! listening sockets, idle pool and selection state. `Process` is what the threads share.

mod driver;
mod listener;
mod process;
mod worker;

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::config::Config;

pub use driver::IoKind;
pub use process::Process;

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
    let io_mode = config.runtime.io;
    let pin = config.runtime.pin_workers;
    let process = Arc::new(Process::new(config, workers));
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

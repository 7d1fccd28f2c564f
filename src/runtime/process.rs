//! `Process`: what the workers, the control thread and the admin endpoint share, and the
//! reload entry point (SIGHUP).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::driver::IoKind;
use super::notify;
use crate::config::{self, Config, ConfigError};
use crate::control::generation::{Generations, Published};
use crate::files::SiteError;
use crate::metrics::WorkerStats;

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
    /// The shared state of `workers` workers about to start on `config` (generation 1).
    pub fn new(config: Config, workers: usize) -> Result<Process, SiteError> {
        Ok(Process {
            config_path: config.path.clone(),
            generations: Arc::new(Generations::start(config, workers)?),
            stats: (0..workers).map(|_| Arc::default()).collect(),
            workers,
            io: OnceLock::new(),
            stopping: AtomicBool::new(false),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            reload_lock: std::sync::Mutex::new(()),
        })
    }

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
            Ok(cfg) => match self.generations.reload(cfg) {
                Ok((generation, _)) => {
                    self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                    Ok(generation)
                }
                Err(e) => {
                    self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "reload refused");
                    Err(vec![ConfigError::whole_file(
                        &self.config_path,
                        e.to_string(),
                    )])
                }
            },
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
        if !self.stopping.swap(true, Ordering::AcqRel) {
            notify::stopping();
        }
    }
}

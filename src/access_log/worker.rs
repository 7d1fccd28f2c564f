//! One worker's side of the access log: a reused buffer per log file, filled a line per
//! request and handed to the writer thread when full, once a second and at stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{Clock, LogFormat};
use super::record::Record;
use super::writer::{self, FLUSH_AT};

/// A partly filled buffer is handed over at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One worker's pending lines, one buffer per log file.
pub struct WorkerLog {
    files: Vec<FileBuf>,
    last_flush: Instant,
    clock: Clock,
}

struct FileBuf {
    path: Arc<PathBuf>,
    buf: Vec<u8>,
}

impl Default for WorkerLog {
    fn default() -> Self {
        WorkerLog::new()
    }
}

impl WorkerLog {
    pub fn new() -> WorkerLog {
        WorkerLog {
            files: Vec::new(),
            last_flush: Instant::now(),
            clock: Clock::default(),
        }
    }

    /// Formats one line in `format` for the log at `path`.
    pub fn record(&mut self, path: &Path, format: &LogFormat, r: &Record<'_>) {
        // A handful of log files at most: a scan of byte comparisons beats hashing a path.
        let i = match self
            .files
            .iter()
            .position(|f| f.path.as_os_str() == path.as_os_str())
        {
            Some(i) => i,
            None => {
                self.files.push(FileBuf {
                    path: Arc::new(path.to_path_buf()),
                    buf: writer::spare_buffer(),
                });
                self.files.len() - 1
            }
        };
        let now = self.clock.now();
        let f = &mut self.files[i];
        format.write(&mut f.buf, &now, r);
        if f.buf.len() >= FLUSH_AT {
            writer::hand_over(&f.path, &mut f.buf);
        }
    }

    /// Hands partly filled buffers over once `FLUSH_EVERY` has passed (the worker's tick).
    pub fn flush_if_due(&mut self, now: Instant) {
        if now.duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush();
            self.last_flush = now;
        }
    }

    /// Hands every non-empty buffer over now (at stop).
    pub fn flush(&mut self) {
        for f in &mut self.files {
            if !f.buf.is_empty() {
                writer::hand_over(&f.path, &mut f.buf);
            }
        }
    }
}

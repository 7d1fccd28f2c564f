//! The writer thread: owns the log files, writes the buffers workers hand over, reopens the
//! files on SIGUSR1, and counts what it had to drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use crossbeam::queue::ArrayQueue;

/// A worker hands a buffer to the writer once it holds this much: large enough that the
/// writer makes few system calls, small enough that a busy worker's buffer stays in cache.
pub(super) const FLUSH_AT: usize = 32 * 1024;
/// Buffers in flight to the writer before lines are dropped rather than the worker
/// blocking (1024 x 32 KiB = 32 MiB of log waiting on a stalled disk).
const QUEUE: usize = 1024;
/// Empty buffers kept for reuse.
const SPARES: usize = 64;

enum Msg {
    Write {
        path: Arc<PathBuf>,
        buf: Vec<u8>,
    },
    Reopen,
    /// Write everything queued before this, then acknowledge.
    Finish(Sender<()>),
}

struct Sink {
    tx: Sender<Msg>,
    spare: ArrayQueue<Vec<u8>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Lines dropped because the writer fell `QUEUE` buffers behind.
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SINK: OnceLock<Sink> = OnceLock::new();

/// The writer, started on first use (a process without access logs never starts it).
fn sink() -> &'static Sink {
    SINK.get_or_init(|| {
        let (tx, rx) = channel::bounded(QUEUE);
        let thread = std::thread::Builder::new()
            .name("ringlb-accesslog".into())
            .spawn(move || writer(rx))
            .map_err(|e| tracing::error!(error = %e, "cannot start the access log writer"))
            .ok();
        Sink {
            tx,
            spare: ArrayQueue::new(SPARES),
            thread: Mutex::new(thread),
        }
    })
}

pub(super) fn spare_buffer() -> Vec<u8> {
    sink()
        .spare
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(FLUSH_AT + 4096))
}

/// Sends `buf` to the writer for `path` (never waiting: lines are dropped, and counted,
/// when the writer is `QUEUE` buffers behind) and leaves an empty buffer in its place.
pub(super) fn hand_over(path: &Arc<PathBuf>, buf: &mut Vec<u8>) {
    let buf = std::mem::replace(buf, spare_buffer());
    match sink().tx.try_send(Msg::Write {
        path: path.clone(),
        buf,
    }) {
        Ok(()) => {}
        Err(TrySendError::Full(Msg::Write { buf, .. }))
        | Err(TrySendError::Disconnected(Msg::Write { buf, .. })) => {
            let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
            DROPPED.fetch_add(lines, Ordering::Relaxed);
            let mut buf = buf;
            buf.clear();
            let _ = sink().spare.push(buf);
        }
        Err(_) => {}
    }
}

/// Asks the writer to close and reopen every log file (SIGUSR1). Lines already handed over
/// go to the old file; the rest to the new one.
pub fn reopen() {
    if let Some(s) = SINK.get() {
        let _ = s.tx.send(Msg::Reopen);
    }
    tracing::info!("access logs reopened");
}

/// Writes out everything handed over so far and waits (at most `within`) for it to reach
/// the files: called once the workers have stopped and flushed.
pub fn finish(within: Duration) {
    let Some(s) = SINK.get() else { return };
    let (ack_tx, ack_rx) = channel::bounded(1);
    if s.tx.send_timeout(Msg::Finish(ack_tx), within).is_ok() {
        let _ = ack_rx.recv_timeout(within);
    }
    let _ = s.thread.lock().map(|mut t| t.take());
}

fn writer(rx: Receiver<Msg>) {
    let mut files: Vec<(Arc<PathBuf>, Option<std::fs::File>)> = Vec::new();
    let mut dropped_seen = 0;
    for msg in rx {
        match msg {
            Msg::Write { path, mut buf } => {
                let slot = match files.iter().position(|(p, _)| p == &path) {
                    Some(i) => i,
                    None => {
                        files.push((path.clone(), open(&path)));
                        files.len() - 1
                    }
                };
                if let Some(f) = &mut files[slot].1 {
                    if let Err(e) = f.write_all(&buf) {
                        tracing::error!(path = %path.display(), error = %e, "cannot write the access log");
                    }
                }
                buf.clear();
                let _ = sink().spare.push(buf);
            }
            // Files are opened again on their next write, by name: after logrotate's
            // rename that is a new file.
            Msg::Reopen => files.clear(),
            Msg::Finish(ack) => {
                let _ = ack.send(());
            }
        }
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped != dropped_seen {
            tracing::warn!(
                dropped = dropped - dropped_seen,
                "access log writer fell behind: lines dropped"
            );
            dropped_seen = dropped;
        }
    }
}

/// Opens a log for appending; on failure says so once (until the next reopen) and the
/// lines for it are dropped.
fn open(path: &Path) -> Option<std::fs::File> {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the access log");
            None
        }
    }
}

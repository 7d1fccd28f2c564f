//! The live progress line on stderr, shown only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::plan::Progress;

/// How often the line is redrawn.
const REFRESH: Duration = Duration::from_millis(500);

/// Starts the progress line if stderr is a terminal; stop it with the returned flag.
pub fn start(
    counters: Vec<Arc<Progress>>,
    since: Instant,
) -> Option<(Arc<AtomicBool>, JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let handle = std::thread::Builder::new()
        .name("ringload-progress".into())
        .spawn(move || {
            let mut last = (Instant::now(), 0u64);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(REFRESH);
                let finished: u64 = counters.iter().map(|c| c.finished.load(Ordering::Relaxed)).sum();
                let errors: u64 = counters.iter().map(|c| c.errors.load(Ordering::Relaxed)).sum();
                let now = Instant::now();
                let rate = (finished - last.1.min(finished)) as f64
                    / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, finished);
                let elapsed = now.saturating_duration_since(since).as_secs_f64();
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{elapsed:6.1}s  {rate:10.0} req/s  {finished:10} done  {errors} errors"
                );
                let _ = err.flush();
            }
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        })
        .ok()?;
    Some((done, handle))
}

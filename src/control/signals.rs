//! Signal handling on a dedicated thread: SIGHUP reloads (storms coalesced), the first
//! SIGTERM/SIGINT begins a graceful stop and a second one exits at once, SIGUSR1 reopens
//! log files.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::runtime::Process;

/// SIGHUPs arriving within this window after the first are served by one reload.
const COALESCE: Duration = Duration::from_millis(20);

/// Starts the signal thread. `reopen_logs` runs on SIGUSR1.
pub fn spawn(
    process: Arc<Process>,
    reopen_logs: Box<dyn Fn() + Send>,
) -> std::io::Result<JoinHandle<()>> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])?;
    std::thread::Builder::new()
        .name("ringlb-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => {
                        // A storm of SIGHUPs (a deploy script looping) collapses into one
                        // reload: signal-hook keeps one pending flag per signal.
                        std::thread::sleep(COALESCE);
                        let _ = crate::runtime::notify::reload(|| process.reload());
                    }
                    SIGTERM | SIGINT => {
                        let signal = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                        if process.stopping.load(std::sync::atomic::Ordering::Acquire) {
                            tracing::warn!(signal, "second stop signal: exiting now");
                            std::process::exit(0);
                        }
                        tracing::info!(signal, "stop signal: finishing in-flight requests");
                        process.stop();
                    }
                    SIGUSR1 => reopen_logs(),
                    _ => {}
                }
            }
        })
}

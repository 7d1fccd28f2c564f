//! The control side of the process: configuration generations (publishing, reload and what
//! it changed), signals (reload, graceful stop, log reopen), and, on its own thread,
//! everything that runs beside the workers without ever blocking them (health checks).

pub mod diff;
pub mod generation;
pub mod health;
pub mod signals;

use std::sync::Arc;

use crate::runtime::Process;

/// Starts everything that runs beside the workers: signal handling, and (when configured)
/// the admin endpoint and health checks.
pub fn start(process: Arc<Process>) -> std::io::Result<()> {
    if let Some(admin) = &process.current().config().admin {
        crate::admin::start(admin.listen, process.clone())?;
    }
    signals::spawn(process.clone(), Box::new(crate::access_log::reopen))?;
    health::spawn(process)?;
    Ok(())
}

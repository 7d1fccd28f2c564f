//! The `ringlb` command line: parse arguments, load the configuration, start the workers
//! and the control thread, wait for a stop.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringlb::{config, control, runtime};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "ringlb",
    version,
    about = "Thread-per-core HTTP/1.1 load balancer and reverse proxy on io_uring"
)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, default_value = "config/ringlb.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print a summary (exit 0), or every error (exit 1).
    Check,
    /// Print the ringlb configuration equivalent to an nginx one (and its includes) on
    /// stdout; list every directive not carried over on stderr.
    ImportNginx {
        /// nginx.conf, or a file of server blocks.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::ImportNginx { path }) = &cli.command {
        return import_nginx(path);
    }
    if let Some(Command::Check) = cli.command {
        let (text, ok) = config::check(&cli.config);
        if ok {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        eprintln!("{text}");
        return ExitCode::FAILURE;
    }
    let filter = match log_filter(std::env::var("RINGLB_LOG").ok().as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringlb: {e}; not started");
            return ExitCode::FAILURE;
        }
    };
    init_logging(filter);
    let cfg = match config::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "ringlb: {} has {} error(s); not started",
                cli.config.display(),
                errors.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let running = match runtime::start(cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringlb: {e}; not started");
            return ExitCode::FAILURE;
        }
    };
    let process = running.process.clone();
    if let Err(e) = control::start(process.clone()) {
        eprintln!("ringlb: {e}; not started");
        process.stop();
        running.wait();
        return ExitCode::FAILURE;
    }
    let io = process.io.get().map_or("?", |k| k.as_str());
    tracing::info!(workers = process.workers, io, "ringlb started");
    runtime::notify::ready(&format!(
        "serving: {} workers on {io}, configuration generation {}",
        process.workers,
        process.generation()
    ));
    let pid_file = running.wait();
    // The workers flushed their access log buffers as they stopped; see them written.
    ringlb::access_log::finish(std::time::Duration::from_secs(5));
    tracing::info!("stopped");
    drop(pid_file);
    ExitCode::SUCCESS
}

/// `ringlb import-nginx PATH`: exit 0 when a configuration with at least one server block
/// came out.
fn import_nginx(path: &std::path::Path) -> ExitCode {
    match ringlb::import_nginx::import(path) {
        Ok(imported) => {
            print!("{}", imported.toml);
            for n in &imported.notes {
                eprintln!("{n}");
            }
            if imported.servers == 0 {
                eprintln!(
                    "ringlb: {}: no server block could be carried over",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            eprintln!(
                "ringlb: {} directive(s) not carried over (listed above); check the result with `ringlb check -c FILE`",
                imported.notes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringlb: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Levels `RINGLB_LOG` takes by name (`off` and `trace` beyond the documented four).
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// The log filter `RINGLB_LOG` asks for: a level (default info), or a tracing filter with
/// per-module levels (`ringlb=debug,warn`). Anything else is refused rather than read as
/// the name of a module to log (which is what a bare word means to a filter).
fn log_filter(value: Option<&str>) -> Result<EnvFilter, String> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Ok(EnvFilter::new("info"));
    }
    let lower = value.to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        return Ok(EnvFilter::new(lower));
    }
    let refused = |why: String| {
        format!(
            "RINGLB_LOG={value:?} {why}: use error, warn, info or debug (or trace, off), or a \
             filter with per-module levels such as \"ringlb=debug,warn\""
        )
    };
    if !value.contains('=') {
        return Err(refused("is not a log level".into()));
    }
    EnvFilter::builder()
        .parse(value)
        .map_err(|e| refused(format!("is not a valid filter ({e})")))
}

/// Logs go to stderr, one line per event. A line that cannot be written (the terminal
/// closed, the pipe to a log collector broke) is dropped: tracing-subscriber would
/// otherwise report the failure with `eprintln!`, which panics when stderr fails, taking
/// down the worker or the signal thread that logged (tests/lifecycle.rs).
fn init_logging(filter: EnvFilter) {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn log_levels_and_filters() {
        for ok in [
            None,
            Some(""),
            Some("debug"),
            Some("WARN"),
            Some("off"),
            Some("ringlb=debug,warn"),
        ] {
            assert!(log_filter(ok).is_ok(), "{ok:?} refused");
        }
        for bad in ["verbose", "ringlb=verbose", "2"] {
            let e = log_filter(Some(bad)).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("error, warn, info or debug"), "{e}");
        }
    }
}

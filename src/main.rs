//! The `ringlb` command line: parse arguments, load the configuration, start the workers
//! and the control thread, wait for a stop.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringlb::{config, control, runtime};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check) = cli.command {
        let (text, ok) = config::check(&cli.config);
        if ok {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        eprintln!("{text}");
        return ExitCode::FAILURE;
    }
    init_logging();
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
            eprintln!("ringlb: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = control::start(running.process.clone()) {
        eprintln!("ringlb: {e}");
        running.process.stop();
        running.wait();
        return ExitCode::FAILURE;
    }
    running.wait();
    // The workers flushed their access log buffers as they stopped; see them written.
    ringlb::access_log::finish(std::time::Duration::from_secs(5));
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Logs go to stderr, one line per event; `RINGLB_LOG` sets the level (default info).
fn init_logging() {
    let level = std::env::var("RINGLB_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(format!("ringlb={level},{level}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

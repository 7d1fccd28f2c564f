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

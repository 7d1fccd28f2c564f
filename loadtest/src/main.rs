//! ringload command line: parse, then hand over to the generator or the backend.

use clap::Parser;
use ringload::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => ringload::serve::run(args),
        None => ringload::load::run(cli.load),
    };
    if let Err(err) = result {
        eprintln!("ringload: {err:#}");
        std::process::exit(1);
    }
}

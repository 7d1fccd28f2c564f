//! The command line, as README.md documents it under "ringload".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;
use crate::serve::delay::DelaySpec;

/// Default address of `ringload serve` when no --listen is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8001";

#[derive(Debug, Parser)]
#[command(
    name = "ringload",
    version,
    about = "HTTP/1.1 (and HTTPS) load generator (closed loop like wrk, open loop like wrk2) and fast test backend",
    after_help = "Exit status: 0 when at least one response was a success (2xx or 3xx); 1 when none \
was (every connection refused, every request failed or answered 4xx/5xx: the report is printed \
first, then the reason on stderr) or on a runtime error; 2 for a bad command line.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fast HTTP/1.1 test backend (plain, or TLS with --tls-cert); each response says which
    /// listener answered.
    ///
    /// Every response carries `X-Backend: ADDR` (the listener that answered) and, unless
    /// --body-bytes is given, ADDR and a newline as its body. `GET /health` answers 200 "ok"
    /// without delay; `/status/NNN` answers with status NNN. Keep-alive, pipelining,
    /// Content-Length and chunked request bodies, HTTP/1.0 and `Connection: close` are
    /// handled. One line "listening on ADDR" per listener goes to stderr when ready; SIGTERM
    /// or SIGINT ends the process with status 0. Threads are not pinned: use taskset.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Connections in total, spread over the threads
    #[arg(short = 'c', long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Threads, each pinned to one allowed CPU [default: one per allowed CPU]
    #[arg(short = 't', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Measured duration [default: 10s, or unlimited with -n]
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after N requests have finished (with a response or an error)
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Open loop at N requests/s in total; latency counted from each request's intended send
    /// time (corrected for coordinated omission). Without -R: closed loop, as fast as possible
    #[arg(short = 'R', long)]
    pub rate: Option<f64>,
    /// Request header "Name: value" (repeatable)
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request method
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// Request body
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from a file
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// A new connection per request (sends Connection: close); with https:// a new TLS
    /// connection and a full handshake per request, counted in its latency
    #[arg(long)]
    pub no_keepalive: bool,
    /// https://: do not verify the server's certificate or handshake signature (self-signed
    /// test servers)
    #[arg(short = 'k', long, conflicts_with = "cacert")]
    pub insecure: bool,
    /// https://: trust the CA certificates in this PEM file [default: SSL_CERT_FILE, else
    /// the system's bundle]
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// https://: resume TLS sessions across the run's connections (default: every new
    /// connection makes a full handshake)
    #[arg(long)]
    pub tls_resume: bool,
    /// Per-request timeout, from connect/send to the end of the response
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Run this long before measuring; those requests are not counted
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: send-time resolution. A request leaves at most this long after it is
    /// due (and its latency counts that wait); requests due within one step share a wake-up,
    /// so a finer step costs the generator more CPU
    #[arg(long, default_value = "100us", value_parser = parse_duration)]
    pub pace: Duration,
    /// Print one JSON object on stdout instead of the text report
    #[arg(long)]
    pub json: bool,
    /// Target, http[s]://host[:port]/path
    #[arg(required = true)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (repeatable; port 0 picks a free port, printed on stderr as
    /// "listening on ADDR") [default: 127.0.0.1:8001]
    #[arg(long = "listen")]
    pub listen: Vec<SocketAddr>,
    /// Fixed delay before each response, e.g. 5ms
    #[arg(long, value_parser = parse_duration, conflicts_with = "delay_dist")]
    pub delay: Option<Duration>,
    /// Delay distribution: exp:MEAN (exponential), uniform:MIN,MAX,
    /// bimodal:FAST,SLOW,P (SLOW with probability P), or a fixed duration
    #[arg(long, value_parser = DelaySpec::parse)]
    pub delay_dist: Option<DelaySpec>,
    /// Response body size in bytes [default: the listener address and a newline]
    #[arg(long)]
    pub body_bytes: Option<usize>,
    /// Worker threads; all accept on every listener
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: u32,
    /// Pause the whole backend once for this long (tests coordinated-omission correction);
    /// also spelled --stall
    #[arg(long, alias = "stall", value_parser = parse_duration)]
    pub stall_once: Option<Duration>,
    /// The pause starts when this many requests have arrived (0: at the first request)
    #[arg(long, default_value_t = 0)]
    pub stall_after: u64,
    /// Serve TLS (HTTP/1.1 over TLS 1.2/1.3) with this PEM certificate chain, leaf first
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

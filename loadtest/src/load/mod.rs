//! The load generator: threads pinned one per core, connections spread over them, each
//! thread with its own monoio runtime and statistics, merged once at the end.

pub mod conn;
pub mod plan;
pub mod progress;
pub mod report;
pub mod stats;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cli::LoadArgs;
use crate::http::request::{build_request, RequestSpec};
use crate::rt;
use crate::target::Target;
use crate::tls;
use plan::{Plan, Progress, TlsPlan, Worker};
use report::Report;
use stats::Stats;

/// Default measured duration when neither -d nor -n is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Threads start sending together this long after launch, once their runtimes are built,
/// so that open-loop schedules do not begin behind.
const START_DELAY: Duration = Duration::from_millis(20);

/// What one thread hands back.
struct ThreadResult {
    stats: Stats,
    driver: rt::Driver,
    finished: Instant,
}

/// Runs the load described by `args` and prints the report.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let url = args.url.as_deref().context("a URL is required")?;
    let target = Target::parse(url).map_err(anyhow::Error::msg)?;
    let addr = target.resolve().map_err(anyhow::Error::msg)?;
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone().into_bytes(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    if args.pace.is_zero() {
        bail!("--pace 0: the send-time resolution must be above zero (e.g. 100us)");
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("-R {rate}: the rate must be a positive number of requests per second");
        }
    }
    let spec = RequestSpec {
        method: args.method.clone(),
        headers: args.headers.clone(),
        body,
        close: args.no_keepalive,
    };
    let request = build_request(&target, &spec).map_err(anyhow::Error::msg)?;
    // Shared read-only by every connection for the whole run.
    let request: &'static [u8] = Box::leak(request.into_boxed_slice());

    let cores = rt::allowed_cores();
    let wanted = args.threads.map_or(cores.len().max(1), |t| t as usize);
    let threads = wanted.min(args.connections as usize).max(1);
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handler")?;
    }
    let start = Instant::now() + START_DELAY;
    let measure_start = start + args.warmup;
    let tls = if target.tls {
        let verify = match (&args.cacert, args.insecure) {
            (Some(path), _) => tls::Verify::Roots(path.clone()),
            (None, true) => tls::Verify::Nothing,
            (None, false) => tls::default_roots().map_err(anyhow::Error::msg)?,
        };
        let config = tls::client_config(&verify, args.tls_resume).map_err(anyhow::Error::msg)?;
        Some(TlsPlan {
            connector: monoio_rustls::TlsConnector::from(config),
            name: tls::server_name(&target.host).map_err(anyhow::Error::msg)?,
        })
    } else {
        if args.insecure || args.cacert.is_some() || args.tls_resume {
            bail!("--insecure, --cacert and --tls-resume apply to https:// URLs only");
        }
        None
    };
    let plan = Arc::new(Plan {
        addr,
        tls,
        request,
        head_request: spec.method.trim().eq_ignore_ascii_case("HEAD"),
        keepalive: !args.no_keepalive,
        timeout: args.timeout,
        start,
        measure_start,
        end: duration.map(|d| measure_start + d),
        limit: args.requests,
        claimed: AtomicU64::new(0),
        stop,
        pace: args.pace,
    });

    let counters: Vec<Arc<Progress>> = (0..threads)
        .map(|_| Arc::new(Progress::default()))
        .collect();
    let total = args.connections as usize;
    let mut handles = Vec::with_capacity(threads);
    for (index, progress) in counters.iter().enumerate() {
        let connections = total / threads + usize::from(index < total % threads);
        let rate = args.rate.map(|r| r * connections as f64 / total as f64);
        let plan = plan.clone();
        let cores = cores.clone();
        let progress = progress.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringload-worker-{index}"))
            .spawn(move || {
                rt::pin_to(&cores, index);
                let (driver, (stats, finished)) =
                    rt::block_on(move || run_thread(plan, rate, connections, progress));
                ThreadResult {
                    stats,
                    driver,
                    finished,
                }
            })?;
        handles.push(handle);
    }
    let display = progress::start(counters, measure_start);

    let mut stats = Stats::new();
    let mut finished = measure_start;
    let mut driver = rt::Driver::IoUring;
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        stats.merge(&result.stats);
        finished = finished.max(result.finished);
        if result.driver == rt::Driver::Epoll {
            driver = rt::Driver::Epoll;
        }
    }
    if let Some((done, handle)) = display {
        done.store(true, Ordering::Relaxed);
        let _ = handle.join();
    }
    let mut elapsed = finished.saturating_duration_since(measure_start);
    if let Some(d) = duration {
        elapsed = elapsed.min(d);
    }
    let report = Report {
        stats,
        duration: elapsed,
        connections: args.connections,
        threads,
        rate: args.rate,
        driver: driver.name(),
    };
    if let Some(rate) = args.rate {
        if report.rps() < rate * 0.9 && !plan.stop.load(Ordering::Relaxed) {
            eprintln!(
                "ringload: warning: achieved {:.0} req/s of the {rate} asked; more connections (-c) may be needed (connections >= rate x latency)",
                report.rps()
            );
        }
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    // The report is out either way; the exit status says whether anything succeeded.
    match report.failure() {
        Some(why) => bail!(why),
        None => Ok(()),
    }
}

/// One thread: its share of the connections on this thread's runtime.
async fn run_thread(
    plan: Arc<Plan>,
    rate: Option<f64>,
    connections: usize,
    progress: Arc<Progress>,
) -> (Stats, Instant) {
    let now = Instant::now();
    if plan.start > now {
        monoio::time::sleep(plan.start - now).await;
    }
    let worker = Rc::new(Worker::new(plan, rate, progress));
    let tasks: Vec<_> = (0..connections)
        .map(|_| monoio::spawn(conn::run_connection(worker.clone())))
        .collect();
    for task in tasks {
        task.await;
    }
    let finished = Instant::now();
    let stats = worker.stats.replace(Stats::new());
    (stats, finished)
}

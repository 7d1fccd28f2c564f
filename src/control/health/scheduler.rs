//! The health loop on the `ringlb-control` thread: which probe is due, running it, and what
//! its result does to the server.
//!
//! The loop re-reads the published generation every round, so a reload that adds, removes
//! or reconfigures checks takes effect within one round; servers are keyed by
//! `PeerState::id`, which survives reloads, so a server kept across a reload keeps its check
//! state.
//!
//! - Active checks (`health_check`): one probe every `interval` per server, each server's
//!   first offset by `i * interval / n` so the checks of a group spread over the interval;
//!   the [`Threshold`] decides when the verdict flips, and the server's state takes it
//!   (`check_went_down` / `check_came_up`).
//! - Without `health_check`, a server passively ejected by max_fails/fail_timeout gets a
//!   connect probe every `min(1 s, fail_timeout / 2)`; one that connects ends the ejection
//!   early (`PeerState::end_ejection`: the next request is nginx's single trial request).
//! - "no live upstreams" and panic mode are logged here, once per transition, rather than
//!   per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::probe::{self, CheckError, Target};
use super::threshold::{Threshold, Transition};
use crate::config::{HealthCheckCfg, ServerCfg};
use crate::runtime::Process;
use crate::upstream::clock::now_ms;
use crate::upstream::snapshot::{Peer, Upstream};
use crate::upstream::state::PeerState;

/// How often the loop looks at the published state and collects probe results while there
/// is something to watch (health checks, an ejected server, a probe running).
const HEALTH_ROUND_BUSY: Duration = Duration::from_millis(10);
/// How often it looks when there is nothing to watch: only for new configurations and
/// fresh passive ejections, so an idle proxy does not wake 100 times a second.
const HEALTH_ROUND_IDLE: Duration = Duration::from_millis(100);

/// Upper bound of the interval between connect probes of a passively ejected server.
const RECOVERY_PROBE_MAX: Duration = Duration::from_secs(1);

/// When the next probe of one server is due: a fixed cadence, one probe at a time.
#[derive(Debug, Clone)]
pub struct Schedule {
    next_at: Instant,
    in_flight: bool,
}

impl Schedule {
    /// First probe due at `first_at`.
    pub fn new(first_at: Instant) -> Schedule {
        Schedule {
            next_at: first_at,
            in_flight: false,
        }
    }

    /// Whether a probe should start now (none is running and one is due).
    pub fn due(&self, now: Instant) -> bool {
        !self.in_flight && now >= self.next_at
    }

    /// A probe starts at `now`; the next one is due an `interval` later (a slow probe does
    /// not push the schedule back unless it outlasts the interval).
    pub fn start(&mut self, now: Instant, interval: Duration) {
        self.in_flight = true;
        self.next_at = now + interval;
    }

    /// The running probe is over.
    pub fn done(&mut self) {
        self.in_flight = false;
    }

    /// No probe before `at` (the schedule restarts there).
    pub fn defer_to(&mut self, at: Instant) {
        self.next_at = at;
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }
}

/// What the loop tracks about one server.
struct Watched {
    state: Arc<PeerState>,
    upstream: String,
    /// The server's configuration as last published.
    cfg: ServerCfg,
    /// Round in which the server was last seen in the published snapshot.
    seen: u64,
    /// `Some` while the server's upstream has a `health_check`.
    check: Option<ActiveCheck>,
    /// Passive recovery: the connect probes of an ejected server.
    recovery: Schedule,
}

struct ActiveCheck {
    threshold: Threshold,
    schedule: Schedule,
    fails: u32,
    passes: u32,
    last_error: Option<CheckError>,
}

/// A probe's result, handed from its task to the loop.
enum ProbeResult {
    Check(Result<(), CheckError>),
    ConnectProbe(bool),
}

type Results = Rc<RefCell<Vec<(u32, ProbeResult)>>>;

/// Starts the `ringlb-control` thread; it ends when `process.stopping` is set.
pub fn spawn(process: Arc<Process>) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringlb-control".into())
        .spawn(move || {
            // epoll is plenty for a few probes per interval, and needs no io_uring ring
            // (which can fail to build where locked memory is short).
            match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => rt.block_on(run(process)),
                Err(e) => tracing::error!(error = %e, "health checks not running"),
            }
        })
}

async fn run(process: Arc<Process>) {
    let results: Results = Rc::new(RefCell::new(Vec::new()));
    let mut watched: HashMap<u32, Watched> = HashMap::new();
    // Upstreams (by name) that had no live server at the last round.
    let mut dead: HashMap<String, bool> = HashMap::new();
    // Upstreams (by name) that were in panic mode at the last round.
    let mut panicked: HashMap<String, bool> = HashMap::new();
    let mut round = 0u64;
    while !process.stopping.load(Ordering::Acquire) {
        round += 1;
        let published = process.current();
        let upstreams = &published.snapshot.upstreams;
        let now = Instant::now();
        let now_ms = now_ms();
        collect(&results, &mut watched, now_ms);
        for up in upstreams {
            visit(up, &mut watched, &results, round, now, now_ms);
            no_live_transition(up, &mut dead, now_ms);
            panic_transition(up, &mut panicked, now_ms);
        }
        watched.retain(|_, w| w.seen == round);
        let known = |name: &String| upstreams.iter().any(|u| &u.cfg.name == name);
        dead.retain(|name, _| known(name));
        panicked.retain(|name, _| known(name));
        let busy = watched
            .values()
            .any(|w| w.check.is_some() || w.recovery.in_flight())
            || upstreams
                .iter()
                .any(|up| up.peers.iter().any(|p| ejected(p, up.is_single(), now_ms)));
        monoio::time::sleep(if busy {
            HEALTH_ROUND_BUSY
        } else {
            HEALTH_ROUND_IDLE
        })
        .await;
    }
}

/// Brings the watch of `up`'s servers up to date and starts the probes that are due.
fn visit(
    up: &Upstream,
    watched: &mut HashMap<u32, Watched>,
    results: &Results,
    round: u64,
    now: Instant,
    now_ms: u64,
) {
    let n = up.peers.len().max(1) as u32;
    let single = up.is_single();
    for (i, peer) in up.peers.iter().enumerate() {
        let id = peer.state.id;
        let w = watched.entry(id).or_insert_with(|| Watched {
            state: peer.state.clone(),
            upstream: up.cfg.name.clone(),
            cfg: peer.cfg.clone(),
            seen: round,
            check: None,
            recovery: Schedule::new(now),
        });
        w.seen = round;
        w.cfg.clone_from(&peer.cfg);
        match &up.cfg.health_check {
            Some(hc) => {
                let check = w.check.get_or_insert_with(|| ActiveCheck {
                    threshold: Threshold::new(),
                    // Spread the group's checks over the interval.
                    schedule: Schedule::new(now + hc.interval * i as u32 / n),
                    fails: hc.fails,
                    passes: hc.passes,
                    last_error: None,
                });
                check.fails = hc.fails;
                check.passes = hc.passes;
                if check.schedule.due(now) {
                    check.schedule.start(now, hc.interval);
                    start_check(id, peer, hc, results);
                }
            }
            None => {
                if w.check.take().is_some() && w.state.check_dropped(now_ms) {
                    tracing::info!(
                        upstream = %w.upstream,
                        server = %w.cfg.name,
                        state = "up",
                        "health check removed"
                    );
                }
                let out = ejected(peer, single, now_ms);
                if out && w.recovery.due(now) {
                    w.recovery
                        .start(now, recovery_interval(peer.cfg.fail_timeout));
                    start_connect_probe(id, peer, up.cfg.connect_timeout, results);
                } else if !out {
                    // Probe an ejection only after a while: right after the failure the
                    // server is most likely still down.
                    w.recovery
                        .defer_to(now + recovery_interval(peer.cfg.fail_timeout));
                }
            }
        }
    }
}

fn start_check(id: u32, peer: &Peer, hc: &HealthCheckCfg, results: &Results) {
    let (results, hc) = (results.clone(), hc.clone());
    let (target, host) = (Target::of(&peer.cfg), probe::check_host(&peer.cfg));
    monoio::spawn(async move {
        let r = probe::http_check(&target, &host, &hc).await;
        results.borrow_mut().push((id, ProbeResult::Check(r)));
    });
}

fn start_connect_probe(id: u32, peer: &Peer, timeout: Duration, results: &Results) {
    let (results, target) = (results.clone(), Target::of(&peer.cfg));
    monoio::spawn(async move {
        let ok = probe::connect_probe(&target, timeout).await;
        results
            .borrow_mut()
            .push((id, ProbeResult::ConnectProbe(ok)));
    });
}

/// Applies the probe results gathered since the last round.
fn collect(results: &Results, watched: &mut HashMap<u32, Watched>, now_ms: u64) {
    let done: Vec<(u32, ProbeResult)> = std::mem::take(&mut *results.borrow_mut());
    for (id, result) in done {
        // A server removed by a reload while its probe ran is gone: drop the result.
        let Some(w) = watched.get_mut(&id) else {
            continue;
        };
        match result {
            ProbeResult::Check(r) => {
                let Some(check) = w.check.as_mut() else {
                    continue;
                };
                check.schedule.done();
                if let Err(e) = &r {
                    check.last_error = Some(e.clone());
                }
                let reason = check
                    .last_error
                    .as_ref()
                    .map_or(String::new(), |e| e.to_string());
                let (upstream, server) = (&w.upstream, &w.cfg.name);
                match check
                    .threshold
                    .observe(r.is_ok(), check.fails, check.passes)
                {
                    Some(Transition::Down { checks }) => {
                        w.state.check_went_down();
                        tracing::warn!(
                            %upstream, %server, state = "down", checks, ?reason,
                            "server marked down"
                        );
                    }
                    Some(Transition::Up { checks }) => {
                        w.state.check_came_up(now_ms);
                        tracing::info!(
                            %upstream, %server, state = "up", checks,
                            "server marked up"
                        );
                    }
                    // The first failure of a streak on an up server: when trouble began.
                    None if r.is_err()
                        && check.threshold.healthy()
                        && check.threshold.streak() == 1 =>
                    {
                        tracing::info!(%upstream, %server, ?reason, "health check failed");
                    }
                    None => {}
                }
            }
            ProbeResult::ConnectProbe(ok) => {
                w.recovery.done();
                if ok && w.state.end_ejection(&w.cfg, now_ms) {
                    // The next request is its trial.
                    tracing::info!(
                        upstream = %w.upstream,
                        server = %w.cfg.name,
                        "connect probe ended the ejection"
                    );
                }
            }
        }
    }
}

/// A server that passive failures keep out of rotation right now (a lone server never is).
fn ejected(peer: &Peer, single: bool, now_ms: u64) -> bool {
    !peer.cfg.down && !single && peer.state.passively_failed(&peer.cfg, now_ms)
}

/// Interval between connect probes of an ejected server: well inside its ejection.
fn recovery_interval(fail_timeout: Duration) -> Duration {
    (fail_timeout / 2).clamp(Duration::from_millis(10), RECOVERY_PROBE_MAX)
}

/// Logs, once per transition, that `up` has no server left to take a request (primaries
/// and backups all down, failed or `down`), and when it has one again.
fn no_live_transition(up: &Upstream, dead: &mut HashMap<String, bool>, now_ms: u64) {
    let live = up.has_live(now_ms);
    let was_dead = dead.get(&up.cfg.name).copied().unwrap_or(false);
    if !live && !was_dead {
        tracing::warn!(upstream = %up.cfg.name, "no live upstreams");
    } else if live && was_dead {
        tracing::info!(upstream = %up.cfg.name, "live servers again");
    }
    dead.insert(up.cfg.name.clone(), !live);
}

/// Logs, once per transition, that `up` entered or left panic mode (`panic_threshold`:
/// too few healthy primaries, so health is ignored and every primary gets traffic).
fn panic_transition(up: &Upstream, panicked: &mut HashMap<String, bool>, now_ms: u64) {
    let now = up.in_panic(now_ms);
    let was = panicked.get(&up.cfg.name).copied().unwrap_or(false);
    if now && !was {
        // Fewer than `panic_threshold` percent of primaries healthy: health is ignored.
        tracing::warn!(
            upstream = %up.cfg.name,
            panic_threshold = up.cfg.panic_threshold.unwrap_or(0),
            "panic mode"
        );
    } else if !now && was {
        tracing::info!(upstream = %up.cfg.name, "panic mode over");
    }
    panicked.insert(up.cfg.name.clone(), now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    #[test]
    fn one_probe_at_a_time_on_a_fixed_cadence() {
        let mut s = Schedule::new(at(50));
        assert!(!s.due(at(49)));
        assert!(s.due(at(50)));
        s.start(at(50), Duration::from_millis(200));
        assert!(!s.due(at(300)), "one probe at a time");
        s.done();
        assert!(!s.due(at(249)));
        assert!(s.due(at(250)));
        s.defer_to(at(400));
        assert!(!s.due(at(399)));
    }

    #[test]
    fn recovery_probe_interval() {
        assert_eq!(
            recovery_interval(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            recovery_interval(Duration::from_millis(400)),
            Duration::from_millis(200)
        );
    }
}

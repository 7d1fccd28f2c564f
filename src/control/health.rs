//! Health: the `ringlb-control` thread that owns the active health checks and the recovery
//! probe of passively ejected servers, and logs every state change.
//!
//! Workers never wait on it: the verdict is `PeerState::healthy` (one atomic per server, read
//! on every pick), so a state change needs no snapshot rebuild. The thread re-reads
//! `process.current()` every round, so a reload that adds, removes or reconfigures checks
//! takes effect within one round; servers are keyed by `PeerState::id`, which survives
//! reloads, so a server kept across a reload keeps its check state.
//!
//! - Active checks (`health_check`): `GET path` every `interval`, each server's first probe
//!   offset by `i * interval / n` so the checks of a group spread over the interval;
//!   `fails` consecutive failures mark a server down, `passes` consecutive successes up.
//!   A server that comes back up also has its passive failures cleared (the check is the
//!   better-informed verdict) and starts its slow-start ramp.
//! - Without `health_check`, a server passively ejected by max_fails/fail_timeout gets a TCP
//!   connect probe every `min(1 s, fail_timeout / 2)`. A successful connect does not clear
//!   `fails`: it ends the ejection early, so that the next request is nginx's single trial
//!   request, which clears the failures if it succeeds and re-ejects the server if it fails.
//!   Clearing `fails` outright would send every worker's traffic at a server that accepts
//!   connections but does not answer; the trial costs at most one request. (Within the
//!   first `fail_timeout` of the process's life the clock cannot express "more than
//!   fail_timeout ago"; then `fails` is set one short of `max_fails` instead.)
//! - "no live upstreams" is logged here, once per transition, rather than per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::config::{HealthCheckCfg, ServerAddr};
use crate::runtime::Process;
use crate::upstream::balance::{in_panic, usable};
use crate::upstream::snapshot::Peer;
use crate::upstream::state::PeerState;
use crate::upstream::{now_ms, Upstream};

/// How often the control loop looks at the published state and collects probe results
/// while there is something to watch (health checks, an ejected server, a probe running).
const TICK: Duration = Duration::from_millis(10);
/// How often it looks when there is nothing to watch: only for new configurations and
/// fresh passive ejections, so an idle proxy does not wake 100 times a second.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// Upper bound of the interval between connect probes of a passively ejected server.
const RECOVERY_PROBE_MAX: Duration = Duration::from_secs(1);

/// Largest status line read from a health check response.
const MAX_STATUS_LINE: usize = 1024;

/// A state change decided by [`Probe::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `checks` consecutive failed checks.
    Down { checks: u32 },
    /// `checks` consecutive passed checks.
    Up { checks: u32 },
}

/// The active check state machine of one server: fed with results and the time, no I/O,
/// so it is tested without sockets (in the manner of pingora's `Health::observe_health`).
#[derive(Debug, Clone)]
pub struct Probe {
    healthy: bool,
    /// Consecutive results that disagree with `healthy`.
    streak: u32,
    /// When the next check is due.
    next_at: Instant,
    in_flight: bool,
}

impl Probe {
    /// A server that starts up (as nginx does with a new server), first checked at `first_at`.
    pub fn new(first_at: Instant) -> Probe {
        Probe {
            healthy: true,
            streak: 0,
            next_at: first_at,
            in_flight: false,
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Consecutive results so far that disagree with the verdict.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Whether a check should start now (none is running and one is due).
    pub fn due(&self, now: Instant) -> bool {
        !self.in_flight && now >= self.next_at
    }

    /// A check starts at `now`; the next one is due an `interval` later (a fixed cadence:
    /// a slow check does not push the schedule back unless it outlasts the interval).
    pub fn start(&mut self, now: Instant, interval: Duration) {
        self.in_flight = true;
        self.next_at = now + interval;
    }

    /// Feeds the result of the check that was running.
    pub fn observe(&mut self, ok: bool, fails: u32, passes: u32) -> Option<Transition> {
        self.in_flight = false;
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { passes } else { fails }.max(1);
        if self.streak < needed {
            return None;
        }
        let checks = self.streak;
        self.streak = 0;
        self.healthy = ok;
        Some(if ok {
            Transition::Up { checks }
        } else {
            Transition::Down { checks }
        })
    }
}

/// What the control thread tracks about one server.
struct Entry {
    state: Arc<PeerState>,
    upstream: String,
    server: String,
    /// Round in which the server was last seen in the published snapshot.
    seen: u64,
    /// `Some` while the server's upstream has a `health_check`.
    active: Option<ActiveCheck>,
    /// Passive recovery: a connect probe is running.
    tcp_in_flight: bool,
    /// Passive recovery: no connect probe before this.
    tcp_next_at: Instant,
    max_fails: u32,
    fail_timeout_ms: u64,
}

struct ActiveCheck {
    probe: Probe,
    fails: u32,
    passes: u32,
    last_error: String,
}

/// A probe's result, handed from its task to the control loop.
enum Outcome {
    Active(Result<(), String>),
    Connect(bool),
}

type Results = Rc<RefCell<Vec<(u32, Outcome)>>>;

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
                Err(e) => tracing::error!("health checks not running: control runtime: {e}"),
            }
        })
}

async fn run(process: Arc<Process>) {
    let results: Results = Rc::new(RefCell::new(Vec::new()));
    let mut entries: HashMap<u32, Entry> = HashMap::new();
    // Upstreams (by name) that had no live server at the last round.
    let mut dead: HashMap<String, bool> = HashMap::new();
    // Upstreams (by name) that were in panic mode at the last round.
    let mut panicked: HashMap<String, bool> = HashMap::new();
    let mut round = 0u64;
    while !process.stopping.load(Ordering::Acquire) {
        round += 1;
        let published = process.current();
        let now = Instant::now();
        let now_ms = now_ms();
        collect(&results, &mut entries, now_ms);
        for up in &published.snapshot.upstreams {
            visit(up, &mut entries, &results, round, now, now_ms);
            no_live_transition(up, &mut dead, now_ms);
            panic_transition(up, &mut panicked, now_ms);
        }
        entries.retain(|_, e| e.seen == round);
        let known = |name: &String| {
            published
                .snapshot
                .upstreams
                .iter()
                .any(|u| &u.cfg.name == name)
        };
        dead.retain(|name, _| known(name));
        panicked.retain(|name, _| known(name));
        let watching = entries
            .values()
            .any(|e| e.active.is_some() || e.tcp_in_flight)
            || published.snapshot.upstreams.iter().any(|up| {
                let single = up.peers.len() == 1;
                up.peers
                    .iter()
                    .any(|p| passively_ejected(p, single, now_ms))
            });
        monoio::time::sleep(if watching { TICK } else { IDLE_TICK }).await;
    }
}

/// Brings the entries of `up`'s servers up to date and starts the probes that are due.
fn visit(
    up: &Upstream,
    entries: &mut HashMap<u32, Entry>,
    results: &Results,
    round: u64,
    now: Instant,
    now_ms: u64,
) {
    let n = up.peers.len().max(1) as u32;
    let single = up.peers.len() == 1;
    for (i, peer) in up.peers.iter().enumerate() {
        let id = peer.state.id;
        let e = entries.entry(id).or_insert_with(|| Entry {
            state: peer.state.clone(),
            upstream: up.cfg.name.clone(),
            server: peer.cfg.name.clone(),
            seen: round,
            active: None,
            tcp_in_flight: false,
            tcp_next_at: now,
            max_fails: peer.cfg.max_fails,
            fail_timeout_ms: 0,
        });
        e.seen = round;
        e.server.clone_from(&peer.cfg.name);
        e.max_fails = peer.cfg.max_fails;
        e.fail_timeout_ms = peer.cfg.fail_timeout.as_millis() as u64;
        match &up.cfg.health_check {
            Some(hc) => {
                let check = e.active.get_or_insert_with(|| ActiveCheck {
                    // Spread the group's checks over the interval.
                    probe: Probe::new(now + hc.interval * i as u32 / n),
                    fails: hc.fails,
                    passes: hc.passes,
                    last_error: String::new(),
                });
                check.fails = hc.fails;
                check.passes = hc.passes;
                if check.probe.due(now) {
                    check.probe.start(now, hc.interval);
                    let (results, hc) = (results.clone(), hc.clone());
                    let (addr, host) = (peer.cfg.addr.clone(), peer.cfg.name.clone());
                    monoio::spawn(async move {
                        let r = http_check(addr, &host, &hc).await;
                        results.borrow_mut().push((id, Outcome::Active(r)));
                    });
                }
            }
            None => {
                if e.active.take().is_some() && !e.state.is_healthy() {
                    // The check was removed by a reload: its verdict goes with it.
                    e.state.healthy.store(true, Ordering::Relaxed);
                    e.state.up_since_ms.store(now_ms, Ordering::Relaxed);
                    tracing::info!(
                        "upstream {} server {} up: health check removed",
                        e.upstream,
                        e.server
                    );
                }
                if !e.tcp_in_flight
                    && now >= e.tcp_next_at
                    && passively_ejected(peer, single, now_ms)
                {
                    e.tcp_in_flight = true;
                    e.tcp_next_at = now + recovery_interval(peer.cfg.fail_timeout);
                    let results = results.clone();
                    let (addr, timeout) = (peer.cfg.addr.clone(), up.cfg.connect_timeout);
                    monoio::spawn(async move {
                        let ok = connect(addr, timeout).await.is_ok();
                        results.borrow_mut().push((id, Outcome::Connect(ok)));
                    });
                } else if !passively_ejected(peer, single, now_ms) {
                    // Probe an ejection only after a while: right after the failure the
                    // server is most likely still down.
                    e.tcp_next_at = now + recovery_interval(peer.cfg.fail_timeout);
                }
            }
        }
    }
}

/// Applies the probe results gathered since the last round.
fn collect(results: &Results, entries: &mut HashMap<u32, Entry>, now_ms: u64) {
    let done: Vec<(u32, Outcome)> = std::mem::take(&mut *results.borrow_mut());
    for (id, outcome) in done {
        // A server removed by a reload while its probe ran is gone: drop the result.
        let Some(e) = entries.get_mut(&id) else {
            continue;
        };
        match outcome {
            Outcome::Active(r) => {
                let Some(check) = e.active.as_mut() else {
                    continue;
                };
                if let Err(reason) = &r {
                    check.last_error.clone_from(reason);
                }
                match check.probe.observe(r.is_ok(), check.fails, check.passes) {
                    Some(Transition::Down { checks }) => {
                        e.state.healthy.store(false, Ordering::Relaxed);
                        tracing::warn!(
                            "upstream {} server {} down: {checks} failed checks ({})",
                            e.upstream,
                            e.server,
                            check.last_error
                        );
                    }
                    Some(Transition::Up { checks }) => {
                        let st = &e.state;
                        st.fails.store(0, Ordering::Relaxed);
                        st.up_since_ms.store(now_ms, Ordering::Relaxed);
                        st.healthy.store(true, Ordering::Relaxed);
                        tracing::info!(
                            "upstream {} server {} up: {checks} passed checks",
                            e.upstream,
                            e.server
                        );
                    }
                    // The first failure of a streak on an up server: when trouble began.
                    None if r.is_err() && check.probe.healthy() && check.probe.streak() == 1 => {
                        tracing::info!(
                            "upstream {} server {} check failed ({})",
                            e.upstream,
                            e.server,
                            check.last_error
                        );
                    }
                    None => {}
                }
            }
            Outcome::Connect(ok) => {
                e.tcp_in_flight = false;
                if !ok {
                    continue;
                }
                let st = &e.state;
                let checked = st.checked_ms.load(Ordering::Relaxed);
                // Still ejected (no worker let a trial through meanwhile): move `checked`
                // back past fail_timeout so that the next pick is the trial request.
                if st.fails.load(Ordering::Relaxed) >= e.max_fails.max(1)
                    && now_ms.saturating_sub(checked) <= e.fail_timeout_ms
                {
                    match end_ejection(now_ms, e.fail_timeout_ms, e.max_fails) {
                        EndEjection::Checked(at) => st.checked_ms.store(at, Ordering::Relaxed),
                        EndEjection::Fails(n) => st.fails.store(n, Ordering::Relaxed),
                    }
                    st.up_since_ms.store(now_ms, Ordering::Relaxed);
                    tracing::info!(
                        "upstream {} server {} accepts connections again: next request is its trial",
                        e.upstream,
                        e.server
                    );
                }
            }
        }
    }
}

/// How a successful connect probe ends a passive ejection.
#[derive(Debug, PartialEq, Eq)]
enum EndEjection {
    /// Store this in `checked_ms`: more than fail_timeout ago, so that the next pick is
    /// nginx's single trial request.
    Checked(u64),
    /// Store this in `fails`: the clock (`now_ms`, from process start) cannot reach back
    /// past fail_timeout yet, so let the server in one failure short of `max_fails`
    /// instead; the next failure ejects it again.
    Fails(u32),
}

fn end_ejection(now_ms: u64, fail_timeout_ms: u64, max_fails: u32) -> EndEjection {
    match now_ms.checked_sub(fail_timeout_ms + 1) {
        // 0 is "never" for `checked_ms`.
        Some(at) if at > 0 => EndEjection::Checked(at),
        _ => EndEjection::Fails(max_fails.saturating_sub(1)),
    }
}

/// A server that max_fails/fail_timeout keeps out of rotation right now.
fn passively_ejected(peer: &Peer, single: bool, now_ms: u64) -> bool {
    let st = &peer.state;
    !peer.cfg.down
        && !single
        && peer.cfg.max_fails > 0
        && st.fails.load(Ordering::Relaxed) >= peer.cfg.max_fails
        && now_ms.saturating_sub(st.checked_ms.load(Ordering::Relaxed))
            <= peer.cfg.fail_timeout.as_millis() as u64
}

/// Interval between connect probes of an ejected server: well inside its ejection.
fn recovery_interval(fail_timeout: Duration) -> Duration {
    (fail_timeout / 2).clamp(Duration::from_millis(10), RECOVERY_PROBE_MAX)
}

/// Logs, once per transition, that `up` has no server left to take a request (primaries
/// and backups all down, failed or `down`), and when it has one again.
fn no_live_transition(up: &Upstream, dead: &mut HashMap<String, bool>, now_ms: u64) {
    let single = up.peers.len() == 1;
    let live = up.peers.iter().any(|p| usable(p, now_ms, single));
    let was_dead = dead.get(&up.cfg.name).copied().unwrap_or(false);
    if !live && !was_dead {
        tracing::warn!("upstream {}: no live upstreams", up.cfg.name);
    } else if live && was_dead {
        tracing::info!("upstream {}: live servers again", up.cfg.name);
    }
    dead.insert(up.cfg.name.clone(), !live);
}

/// Logs, once per transition, that `up` entered or left panic mode (`panic_threshold`:
/// too few healthy primaries, so health is ignored and every primary gets traffic).
fn panic_transition(up: &Upstream, panicked: &mut HashMap<String, bool>, now_ms: u64) {
    let now = in_panic(up, now_ms);
    let was = panicked.get(&up.cfg.name).copied().unwrap_or(false);
    if now && !was {
        tracing::warn!(
            "upstream {}: panic mode: fewer than {}% of primaries healthy, ignoring health",
            up.cfg.name,
            up.cfg.panic_threshold.unwrap_or(0)
        );
    } else if !now && was {
        tracing::info!("upstream {}: panic mode over", up.cfg.name);
    }
    panicked.insert(up.cfg.name.clone(), now);
}

/// One active check: `GET path` on a new connection, judged by the status line. `timeout`
/// covers connect, write and reading the status line.
async fn http_check(addr: ServerAddr, host: &str, hc: &HealthCheckCfg) -> Result<(), String> {
    // Unix-socket servers: checked once the probe can connect to them.
    let ServerAddr::Inet(addr) = addr else {
        return Err("unix-socket servers are not checked by this build yet".into());
    };
    let status = match monoio::time::timeout(hc.timeout, status_of(addr, host, &hc.path)).await {
        Err(_) => return Err("timed out".into()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(s)) => s,
    };
    if (hc.status.0..=hc.status.1).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The request a check sends.
fn check_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ringlb-health\r\n\r\n"
    )
    .into_bytes()
}

async fn status_of(addr: SocketAddr, host: &str, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect_addr(addr)
        .await
        .map_err(|e| io_reason(&e))?;
    let _ = stream.set_nodelay(true);
    let (r, _) = stream.write_all(check_request(host, path)).await;
    r.map_err(|e| io_reason(&e))?;
    let mut head: Vec<u8> = Vec::with_capacity(256);
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            return parse_status_line(&head[..end]).ok_or_else(|| "invalid response".into());
        }
        if head.len() > MAX_STATUS_LINE {
            return Err("invalid response".into());
        }
        let buf = Vec::with_capacity(512);
        let (r, buf) = stream.read(buf).await;
        match r {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) => head.extend_from_slice(&buf),
            Err(e) => return Err(io_reason(&e)),
        }
    }
}

/// `HTTP/1.x SSS ...` -> SSS.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

async fn connect(addr: ServerAddr, timeout: Duration) -> Result<(), ()> {
    let ServerAddr::Inet(addr) = addr else {
        return Err(());
    };
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    #[test]
    fn down_after_fails_consecutive_failures() {
        let mut p = Probe::new(at(0));
        assert!(p.due(at(0)));
        p.start(at(0), Duration::from_millis(200));
        assert!(!p.due(at(300)), "one check at a time");
        assert_eq!(p.observe(false, 2, 2), None);
        assert!(p.healthy());
        assert!(!p.due(at(100)));
        assert!(p.due(at(200)));
        p.start(at(200), Duration::from_millis(200));
        assert_eq!(p.observe(false, 2, 2), Some(Transition::Down { checks: 2 }));
        assert!(!p.healthy());
        // Further failures change nothing.
        p.start(at(400), Duration::from_millis(200));
        assert_eq!(p.observe(false, 2, 2), None);
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut p = Probe::new(at(0));
        for ok in [false, true, false, true, false] {
            p.start(at(0), Duration::ZERO);
            assert_eq!(p.observe(ok, 2, 2), None);
        }
        assert!(p.healthy());
    }

    #[test]
    fn up_after_passes_consecutive_successes() {
        let mut p = Probe::new(at(0));
        p.start(at(0), Duration::ZERO);
        assert_eq!(p.observe(false, 1, 3), Some(Transition::Down { checks: 1 }));
        for ok in [true, true, false, true, true] {
            p.start(at(0), Duration::ZERO);
            assert_eq!(p.observe(ok, 1, 3), None);
        }
        p.start(at(0), Duration::ZERO);
        assert_eq!(p.observe(true, 1, 3), Some(Transition::Up { checks: 3 }));
        assert!(p.healthy());
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut p = Probe::new(at(0));
        p.start(at(0), Duration::ZERO);
        assert_eq!(p.observe(false, 0, 0), Some(Transition::Down { checks: 1 }));
        p.start(at(0), Duration::ZERO);
        assert_eq!(p.observe(true, 0, 0), Some(Transition::Up { checks: 1 }));
    }

    #[test]
    fn fixed_cadence() {
        let mut p = Probe::new(at(50));
        assert!(!p.due(at(49)));
        p.start(at(50), Duration::from_millis(200));
        p.observe(true, 2, 2);
        assert!(!p.due(at(249)));
        assert!(p.due(at(250)));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/2 200"), None);
        assert_eq!(parse_status_line(b"garbage"), None);
    }

    #[test]
    fn request_format() {
        assert_eq!(
            check_request("backend1:8001", "/health"),
            b"GET /health HTTP/1.1\r\nHost: backend1:8001\r\nConnection: close\r\nUser-Agent: ringlb-health\r\n\r\n"
        );
    }

    #[test]
    fn a_connect_probe_makes_the_next_pick_the_trial() {
        assert_eq!(end_ejection(20_000, 10_000, 3), EndEjection::Checked(9_999));
        // Too early in the process's life to move `checked` back far enough.
        assert_eq!(end_ejection(5_000, 10_000, 3), EndEjection::Fails(2));
        assert_eq!(end_ejection(10_001, 10_000, 1), EndEjection::Fails(0));
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

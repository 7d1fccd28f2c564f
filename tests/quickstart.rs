//! The README's first command, `./quickstart`, run as a new user runs it: from a fresh
//! `git clone` of this checkout (committed files only), building ringlb and ringload,
//! starting the test backends and ringlb on the bundled configuration. Ctrl-C (SIGINT to the
//! script's process group, as a terminal sends it) must leave no process behind; a taken
//! port must stop it at once with a message that names the port and the process holding it.
//!
//! The bundled configuration uses fixed ports (8080, 9900, 8001-8003), so these tests run
//! one at a time. The clone builds unoptimised (`QUICKSTART_PROFILE=dev`) into its own
//! target directory under `target/tmp` (kept between runs for its dependencies): a release
//! build with fat LTO would take minutes on a 2-core CI machine, and sharing the checkout's
//! own target directory would let the clone's build, of committed files only, replace the
//! binaries the other tests run.

#[allow(unused_imports)]
mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::get;

/// How long the script may take to build and start (a cold dependency build on a loaded
/// 2-core machine included).
const BUILD_AND_START: Duration = Duration::from_secs(900);
/// How long everything may take to stop after SIGINT (ringlb's graceful stop, then the
/// backends).
const STOP: Duration = Duration::from_secs(30);
/// The bundled configuration's addresses.
const PROXY: &str = "127.0.0.1:8080";
const BACKENDS: [&str; 3] = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"];

/// One test at a time: they all use the bundled configuration's ports.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A clone of this checkout's HEAD, made once per test run.
fn clone() -> &'static Path {
    static CLONE: OnceLock<PathBuf> = OnceLock::new();
    CLONE.get_or_init(|| {
        let src = env!("CARGO_MANIFEST_DIR");
        let dir = common::proxy::temp_dir().join("clone");
        let out = Command::new("git")
            .args(["clone", "--quiet", "--no-hardlinks", src])
            .arg(&dir)
            .output()
            .expect("git must be installed to test the quick start");
        assert!(
            out.status.success(),
            "git clone {src} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The script running in its own process group, its output collected.
struct Script {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Script {
    fn start() -> Script {
        let dir = clone();
        let target = target_dir();
        let mut cmd = Command::new(dir.join("quickstart"));
        cmd.current_dir(dir)
            .env("QUICKSTART_PROFILE", "dev")
            .env("CARGO_TARGET_DIR", &target)
            .env("RINGLB_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("run ./quickstart");
        let out = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Script { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits for `needle` in the output, or for the script to end; true if it was seen.
    fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.output().contains(needle) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // Let the readers drain what was written last.
                std::thread::sleep(Duration::from_millis(200));
                return self.output().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // A failed test must not leave the script's processes holding the fixed ports.
        for p in descendants(self.pid()).iter().chain(built_here().iter()) {
            // SAFETY: kill(2) of a process we started (our descendant, or running a binary
            // of the clone's build).
            unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("quickstart-target")
}

/// Live processes running a binary of the clone's build, wherever they were reparented.
fn built_here() -> Vec<Proc> {
    let target = target_dir();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(e.path().join("exe")) else {
            continue;
        };
        if exe.starts_with(&target) {
            if let Some((_, start, state)) = stat(pid) {
                if state != 'Z' {
                    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
                    found.push(Proc { pid, start, name });
                }
            }
        }
    }
    found
}

/// A process as /proc shows it: its start time tells a reused pid apart.
#[derive(Debug, Clone, PartialEq)]
struct Proc {
    pid: u32,
    start: u64,
    name: String,
}

/// (ppid, start time, state) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f[1].parse().ok()?,
        f[19].parse().ok()?,
        f[0].chars().next()?,
    ))
}

/// Every live process descended from `root`.
fn descendants(root: u32) -> Vec<Proc> {
    let mut all = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            if let Some((ppid, start, state)) = stat(pid) {
                if state != 'Z' {
                    all.push((pid, ppid, start));
                }
            }
        }
    }
    let mut found: Vec<Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, start) in &all {
            if ppid == parent && !found.iter().any(|p| p.pid == pid) {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                found.push(Proc { pid, start, name });
                frontier.push(pid);
            }
        }
    }
    found
}

fn alive(p: &Proc) -> bool {
    matches!(stat(p.pid), Some((_, start, state)) if start == p.start && state != 'Z')
}

fn port_free(addr: &str) -> bool {
    // SO_REUSEADDR (std sets it) passes TIME_WAIT; any listener, reuseport or not, fails it.
    TcpListener::bind(addr).is_ok()
}

/// Gets `/` through the proxy until every backend has answered (round robin: three or four
/// requests), or the deadline passes.
fn backends_answering(proxy: SocketAddr, within: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    while start.elapsed() < within && seen.len() < BACKENDS.len() {
        if let Ok(r) = get(proxy, "/") {
            if r.status == 200 {
                let body = r.text().trim().to_string();
                if !seen.contains(&body) {
                    seen.push(body);
                }
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen.sort();
    seen
}

/// Every port of the bundled configuration must be free before a test starts.
fn ports_free_or_explain() {
    for addr in [PROXY, "127.0.0.1:9900"].iter().chain(BACKENDS.iter()) {
        assert!(
            port_free(addr),
            "{addr} is in use on this machine: the quick start test needs the bundled \
             configuration's ports (8080, 9900, 8001-8003) free"
        );
    }
}

#[test]
fn quickstart_from_a_fresh_clone_serves_and_ctrl_c_stops_every_process() {
    let _serial = serial();
    ports_free_or_explain();
    let mut script = Script::start();
    assert!(
        script.wait_for("ringlb started", BUILD_AND_START),
        "the quick start did not start ringlb:\n{}",
        script.output()
    );
    let proxy: SocketAddr = PROXY.parse().unwrap();
    let mut expected: Vec<String> = BACKENDS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        backends_answering(proxy, Duration::from_secs(30)),
        expected,
        "each backend answers through ringlb with its address:\n{}",
        script.output()
    );

    let started = descendants(script.pid());
    for name in ["ringlb", "ringload"] {
        assert!(
            started.iter().any(|p| p.name == name),
            "no {name} process under the script: {started:?}"
        );
    }
    // Ctrl-C in a terminal: SIGINT to the foreground process group.
    // SAFETY: kill(2) of the process group the script leads.
    unsafe { libc::kill(-(script.pid() as i32), libc::SIGINT) };
    let code = script.wait_exit(STOP);
    assert_eq!(code, Some(0), "exit after Ctrl-C:\n{}", script.output());
    let left: Vec<&Proc> = started.iter().filter(|p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "still running after Ctrl-C: {left:?}\n{}",
        script.output()
    );
    let out = script.output();
    assert!(
        out.contains("stop signal"),
        "ringlb did not stop gracefully:\n{out}"
    );
    assert!(out.contains("backends stopped"), "{out}");
    assert_eq!(built_here(), vec![], "processes of the clone left running");
    for addr in [PROXY].iter().chain(BACKENDS.iter()) {
        assert!(port_free(addr), "{addr} still held after Ctrl-C");
    }
}

/// Runs the script while a listener of this test process holds `taken`: the script must
/// fail (exit 1) with `message` (`{me}` standing for this process's pid), leaving no process
/// of its own behind and every other port of the configuration free. Returns the output.
fn refused_while_held(taken: &str, message: &str) -> String {
    let _serial = serial();
    ports_free_or_explain();
    let squatter = TcpListener::bind(taken).unwrap();
    let mut script = Script::start();
    let code = script.wait_exit(BUILD_AND_START);
    let out = script.output();
    assert_eq!(code, Some(1), "{out}");
    let message = message.replace("{me}", &std::process::id().to_string());
    assert!(out.contains(&message), "no {message:?} in:\n{out}");
    assert_eq!(built_here(), vec![], "processes of the clone left running");
    for addr in [PROXY].iter().chain(BACKENDS.iter()) {
        assert!(
            *addr == taken || port_free(addr),
            "{addr} held after the failed start"
        );
    }
    drop(squatter);
    out
}

#[test]
fn a_taken_backend_port_stops_the_quickstart_at_once_naming_port_and_process() {
    let out = refused_while_held(
        BACKENDS[1],
        "backend 127.0.0.1:8002 cannot start: port 8002 is taken by pid {me} (",
    );
    assert!(
        !out.contains("ringlb started"),
        "ringlb started anyway:\n{out}"
    );
}

#[test]
fn a_taken_proxy_port_stops_ringlb_and_the_backends() {
    let out = refused_while_held(
        PROXY,
        "cannot listen on 127.0.0.1:8080 (listen): already in use by pid {me} (",
    );
    assert!(out.contains("backends stopped"), "{out}");
}

//! Helpers for tests that run the real `ringload` binary on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringload");

/// A running `ringload serve`, killed when dropped.
pub struct Backend {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
}

impl Backend {
    /// Starts `ringload serve` with `listeners` ephemeral listeners plus `extra` flags and
    /// waits for its "listening on" lines.
    pub fn start(listeners: usize, extra: &[&str]) -> Backend {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        for _ in 0..listeners {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(extra).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ringload serve");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut addrs = Vec::new();
        while addrs.len() < listeners {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .expect("read serve stderr");
            if let Some(addr) = line.strip_prefix("listening on ") {
                addrs.push(addr.trim().parse().expect("an address"));
            }
        }
        // Keep draining stderr so the backend never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Backend { child, addrs }
    }

    pub fn url(&self, index: usize, path: &str) -> String {
        format!("http://{}{}", self.addrs[index], path)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ringload ARGS --json` with a hard deadline and returns the parsed report.
pub fn load_json(args: &[&str], deadline: Duration) -> serde_json::Value {
    load_json_env(args, &[], deadline)
}

/// `load_json` with extra environment variables (e.g. MONOIO_FORCE_LEGACY_DRIVER=1).
pub fn load_json_env(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> serde_json::Value {
    let (status, stdout, stderr) = run_env(args.iter().copied().chain(["--json"]), env, deadline);
    assert!(status, "ringload failed: {stderr}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout:?}"))
}

/// Runs `ringload ARGS --json` where nothing can succeed: asserts that it exits non-zero and
/// says why on stderr, and returns the report it printed first and its stderr.
pub fn load_json_failing(args: &[&str], deadline: Duration) -> (serde_json::Value, String) {
    load_json_failing_env(args, &[], deadline)
}

/// `load_json_failing` with extra environment variables.
pub fn load_json_failing_env(
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Duration,
) -> (serde_json::Value, String) {
    let (status, stdout, stderr) = run_env(args.iter().copied().chain(["--json"]), env, deadline);
    assert!(
        !status,
        "ringload exited 0 without a successful response: {stdout}"
    );
    assert!(
        stderr.contains("no successful (2xx or 3xx) response"),
        "stderr: {stderr}"
    );
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout:?}"));
    (report, stderr)
}

/// Runs the binary; panics if it is still running after `deadline` (a hang).
pub fn run<'a>(
    args: impl IntoIterator<Item = &'a str>,
    deadline: Duration,
) -> (bool, String, String) {
    run_env(args, &[], deadline)
}

/// `run` with extra environment variables.
pub fn run_env<'a>(
    args: impl IntoIterator<Item = &'a str>,
    env: &[(&str, &str)],
    deadline: Duration,
) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringload");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringload still running after {deadline:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

pub fn count(v: &serde_json::Value, section: &str, key: &str) -> u64 {
    v[section][key].as_u64().unwrap_or(0)
}

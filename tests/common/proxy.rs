//! Runs the real `ringlb` binary on a config written for the test.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    log: Arc<Mutex<String>>,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringlb-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Proxy {
    /// Starts ringlb with `config` (full TOML) whose first listen address is `addr`.
    pub fn start(config: &str, addr: SocketAddr) -> Proxy {
        Self::start_env(config, addr, &[])
    }

    pub fn start_env(config: &str, addr: SocketAddr, env: &[(&str, &str)]) -> Proxy {
        Self::spawn(config, addr, env, false)
    }

    /// Starts a proxy that lives in a `static` (shared by a file's tests, never dropped, so
    /// never killed by `Drop`): it dies with the test process instead of outliving it. It is
    /// spawned with `PR_SET_PDEATHSIG` from a thread that lives as long as the process,
    /// because that signal follows the thread that spawned the child, not the process.
    pub fn start_static(config: &str, addr: SocketAddr) -> Proxy {
        let config = config.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Self::spawn(&config, addr, &[], true));
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .expect("ringlb did not start (see the panic above)")
    }

    fn spawn(config: &str, addr: SocketAddr, env: &[(&str, &str)], die_with_us: bool) -> Proxy {
        let dir = temp_dir();
        let config_path = dir.join("ringlb.toml");
        // RINGLB_TEST_IO=epoll runs a test file on the epoll driver (io_uring is the
        // default wherever the kernel allows it).
        let config = match std::env::var("RINGLB_TEST_IO") {
            Ok(io) if config.contains("[runtime]") => {
                config.replacen("[runtime]", &format!("[runtime]\nio = \"{io}\""), 1)
            }
            _ => config.to_string(),
        };
        std::fs::write(&config_path, &config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringlb"));
        cmd.arg("-c")
            .arg(&config_path)
            .env("RINGLB_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if die_with_us {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe, as code between fork and exec must be.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start ringlb");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut p = Proxy {
            child,
            addr,
            dir,
            config_path,
            log,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&mut self) {
        // Generous: a loaded CI machine may take seconds to start a process.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if self.log().contains("ringlb started") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!("ringlb exited at start ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("ringlb did not start:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Log lines of the event `message` that carry every one of `fields` (see
    /// [`has_fields`]).
    pub fn events(&self, message: &str, fields: &[(&str, &str)]) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(message) && has_fields(l, fields))
            .count()
    }

    /// Waits until the log has an event `message` with every one of `fields`.
    pub fn wait_event(&self, message: &str, fields: &[(&str, &str)], within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.events(message, fields) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Writes a new config and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        std::fs::write(&self.config_path, config).unwrap();
        self.signal(libc::SIGHUP);
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a log line carries every `(key, value)` of `fields` as a field: `key=value`, or
/// `key="value"` (how the log writes strings that are not `Display`ed), as a whole token.
pub fn has_fields(line: &str, fields: &[(&str, &str)]) -> bool {
    fields.iter().all(|(k, v)| {
        [format!(" {k}={v}"), format!(" {k}=\"{v}\"")]
            .iter()
            .any(|f| {
                line.match_indices(f.as_str())
                    .any(|(i, _)| line[i + f.len()..].chars().next().is_none_or(|c| c == ' '))
            })
    })
}

/// A config with one server block on `port` proxying `/` to upstream `app` made of
/// `servers` (TOML inline tables), plus `extra_upstream` lines inside the upstream table.
pub fn simple_config(port: u16, servers: &[String], extra_upstream: &str) -> String {
    format!(
        r#"
[runtime]
workers = 2
shutdown_timeout = "5s"

[[server]]
listen = ["127.0.0.1:{port}"]
keepalive_timeout = "30s"

  [[server.location]]
  path = "/"
  proxy_pass = "app"
  proxy_set_header = {{ "X-Real-IP" = "$remote_addr", "X-Forwarded-For" = "$proxy_add_x_forwarded_for" }}

[upstream.app]
connect_timeout = "1s"
{read_timeout}
{extra_upstream}
servers = [
{}
]
"#,
        servers.join(",\n"),
        read_timeout = if extra_upstream.contains("read_timeout") {
            ""
        } else {
            "read_timeout = \"10s\""
        }
    )
}

/// `{ addr = "..." , extra }` for a backend.
pub fn server(addr: SocketAddr, extra: &str) -> String {
    if extra.is_empty() {
        format!("  {{ addr = \"{addr}\" }}")
    } else {
        format!("  {{ addr = \"{addr}\", {extra} }}")
    }
}

/// Starts ringlb in front of `backends` (each with its `extras` server options, missing
/// ones empty) with `upstream_extra` lines in the upstream table.
pub fn start_with(backends: &[&super::Backend], extras: &[&str], upstream_extra: &str) -> Proxy {
    let port = super::free_port();
    let servers: Vec<String> = backends
        .iter()
        .zip(extras.iter().chain(std::iter::repeat(&"")))
        .map(|(b, e)| server(b.addr, e))
        .collect();
    let cfg = simple_config(port, &servers, upstream_extra);
    Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)))
}

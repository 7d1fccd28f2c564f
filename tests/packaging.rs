//! What `dist/` ships, checked against the real binary and the real tools: the systemd unit
//! (`systemd-analyze verify`), the readiness protocol ringlb speaks to it (a fake
//! `NOTIFY_SOCKET`: READY, RELOADING with MONOTONIC_USEC, READY, STOPPING, in that order), the
//! logrotate snippet (a real rotation, then SIGUSR1 through the pid file), the epoll fallback
//! under a seccomp filter that refuses io_uring (as Docker's default profile does), the
//! seccomp profile script, the .deb metadata and the Dockerfile's paths.
//!
//! Runs under libtest-mimic (`harness = false`): a test whose tool is missing is reported
//! `ignored (why)` in the summary, or fails in CI (`CI` set), where `.ci/run` installs it.

#[allow(unused_imports)]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{server, simple_config, temp_dir};
use common::{free_port, get, Backend, Proxy};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let plain = |name: &str, test: fn()| {
        Trial::test(name, move || {
            test();
            Ok(())
        })
    };
    let needs = |name: &str, tool: &'static str, test: fn()| {
        Trial::ignorable_test(name, move || with_tool(tool, test))
    };
    let trials = vec![
        needs(
            "systemd_unit_passes_systemd_analyze_verify",
            "systemd-analyze",
            systemd_unit_passes_systemd_analyze_verify,
        ),
        plain(
            "systemd_unit_is_notify_with_reload_capability_and_sandbox",
            systemd_unit_is_notify_with_reload_capability_and_sandbox,
        ),
        plain(
            "sd_notify_ready_reloading_ready_stopping_in_order",
            sd_notify_ready_reloading_ready_stopping_in_order,
        ),
        plain(
            "sd_notify_to_an_abstract_socket",
            sd_notify_to_an_abstract_socket,
        ),
        needs(
            "logrotate_rotates_and_ringlb_reopens_through_the_pid_file",
            "logrotate",
            logrotate_rotates_and_ringlb_reopens_through_the_pid_file,
        ),
        plain(
            "io_uring_refused_by_seccomp_falls_back_to_epoll_and_says_so",
            io_uring_refused_by_seccomp_falls_back_to_epoll_and_says_so,
        ),
        needs(
            "seccomp_script_adds_io_uring_to_a_docker_profile",
            "python3",
            seccomp_script_adds_io_uring_to_a_docker_profile,
        ),
        plain(
            "deb_metadata_names_files_that_exist",
            deb_metadata_names_files_that_exist,
        ),
        plain(
            "dockerfile_copies_what_exists_and_runs_the_packaged_config",
            dockerfile_copies_what_exists_and_runs_the_packaged_config,
        ),
        plain("packaged_config_passes_check", packaged_config_passes_check),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// Whether this run is CI's (`CI=true` from CI services, `CI=1` from `.ci/run`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn with_tool(tool: &str, test: fn()) -> Result<Completion, Failed> {
    if on_path(tool) {
        test();
        return Ok(Completion::Completed);
    }
    let why = format!("{tool} is not installed (.ci/run installs it)");
    if in_ci() {
        Err(why.into())
    } else {
        Ok(Completion::ignored_with(why))
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- systemd ------------------------------------------------------------------------

fn systemd_unit_passes_systemd_analyze_verify() {
    let dir = temp_dir();
    // verify insists that the commands exist: point them at the binary under test.
    let unit = read("dist/ringlb.service").replace("/usr/bin/ringlb", env!("CARGO_BIN_EXE_ringlb"));
    let path = dir.join("ringlb.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    // Unknown keys and bad values are warnings with exit 0: any output is a finding.
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns:\n{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn systemd_unit_is_notify_with_reload_capability_and_sandbox() {
    let unit = read("dist/ringlb.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    for (key, want) in [
        ("Type", "notify"),
        ("ExecStart", "/usr/bin/ringlb -c /etc/ringlb/ringlb.toml"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("User", "ringlb"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("RuntimeDirectory", "ringlb"),
        ("LogsDirectory", "ringlb"),
    ] {
        assert_eq!(value(key), vec![want], "{key}");
    }
    assert!(!value("LimitNOFILE").is_empty());
    // The writable places cover where the packaged configuration writes.
    let writable = value("ReadWritePaths").join(" ");
    let config = read("dist/ringlb.toml");
    for path in ["/run/ringlb", "/var/lib/ringlb", "/var/log/ringlb"] {
        assert!(
            writable.split(' ').any(|w| w == path),
            "{path} not writable"
        );
        assert!(config.contains(&format!("\"{path}/")), "{path} unused");
    }
}

/// A unix datagram socket standing in for systemd's notify socket.
struct FakeSystemd {
    socket: UnixDatagram,
}

impl FakeSystemd {
    /// The next message, within `within`.
    fn next(&self, within: Duration) -> String {
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification within {within:?}: {e}"));
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn nothing_more(&self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => panic!(
                "unexpected notification {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn config_for(backend: SocketAddr) -> (String, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (simple_config(port, &[server(backend, "")], ""), addr)
}

const NOTIFY_WAIT: Duration = Duration::from_secs(10);

fn sd_notify_ready_reloading_ready_stopping_in_order() {
    let b = Backend::start("a");
    let dir = temp_dir();
    let path = dir.join("notify.sock");
    let systemd = FakeSystemd {
        socket: UnixDatagram::bind(&path).unwrap(),
    };
    let (cfg, addr) = config_for(b.addr);
    let mut proxy = Proxy::start_env(&cfg, addr, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);

    let ready = systemd.next(NOTIFY_WAIT);
    assert!(ready.starts_with("READY=1\nSTATUS=serving"), "{ready:?}");
    // READY=1 means serving.
    assert_eq!(get(addr, "/").unwrap().text(), "a");

    let before = monotonic_usec();
    proxy.reload(&cfg);
    let reloading = systemd.next(NOTIFY_WAIT);
    let after = monotonic_usec();
    let mut fields = reloading.lines();
    assert_eq!(fields.next(), Some("RELOADING=1"), "{reloading:?}");
    let usec: u64 = fields
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC's reading at the reload ({before}..{after})"
    );
    let done = systemd.next(NOTIFY_WAIT);
    assert!(
        done.starts_with("READY=1\nSTATUS=running configuration generation 2"),
        "{done:?}"
    );

    // A refused reload also ends with READY=1: the old configuration serves on.
    proxy.reload("this is not toml");
    let reloading = systemd.next(NOTIFY_WAIT);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let refused = systemd.next(NOTIFY_WAIT);
    assert!(
        refused.starts_with("READY=1\nSTATUS=reload refused"),
        "{refused:?}"
    );
    assert_eq!(get(addr, "/").unwrap().text(), "a");

    proxy.signal(libc::SIGTERM);
    let stopping = systemd.next(NOTIFY_WAIT);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert_eq!(proxy.wait_exit(NOTIFY_WAIT), Some(0));
    systemd.nothing_more();
    let _ = std::fs::remove_dir_all(&dir);
}

fn sd_notify_to_an_abstract_socket() {
    let b = Backend::start("a");
    let name = format!("ringlb-test-notify-{}", std::process::id());
    let systemd = FakeSystemd {
        socket: UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap(),
    };
    let (cfg, addr) = config_for(b.addr);
    let mut proxy = Proxy::start_env(&cfg, addr, &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    assert!(systemd.next(NOTIFY_WAIT).starts_with("READY=1\n"));
    proxy.signal(libc::SIGTERM);
    assert!(systemd.next(NOTIFY_WAIT).starts_with("STOPPING=1"));
    assert_eq!(proxy.wait_exit(NOTIFY_WAIT), Some(0));
}

// ---- logrotate ----------------------------------------------------------------------

fn lines(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let l: Vec<String> = text.lines().map(String::from).collect();
        if l.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn logrotate_rotates_and_ringlb_reopens_through_the_pid_file() {
    let b = Backend::start("a");
    let dir = temp_dir();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pid_file = dir.join("ringlb.pid");
    let log = logs.join("access.log");
    let (cfg, addr) = config_for(b.addr);
    let cfg = cfg
        .replacen(
            "[runtime]",
            &format!("[runtime]\npid_file = \"{}\"", pid_file.display()),
            1,
        )
        .replacen(
            "keepalive_timeout",
            &format!("access_log = \"{}\"\nkeepalive_timeout", log.display()),
            1,
        );
    let proxy = Proxy::start(&cfg, addr);
    for _ in 0..3 {
        assert_eq!(get(addr, "/before").unwrap().status, 200);
    }
    assert_eq!(lines(&log, 3).len(), 3);

    // The packaged snippet, pointed at this test's files and user.
    let snippet = read("dist/ringlb.logrotate")
        .replace("/var/log/ringlb", logs.to_str().unwrap())
        .replace("/run/ringlb/ringlb.pid", pid_file.to_str().unwrap())
        .replace("ringlb adm", &format!("{} {}", id("-un"), id("-gn")));
    let conf = dir.join("logrotate.conf");
    std::fs::write(&conf, snippet).unwrap();
    let out = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // delaycompress: the first rotation stays plain text.
    let rotated = logs.join("access.log.1");
    assert_eq!(lines(&rotated, 3).len(), 3);
    assert!(
        proxy.wait_log("access logs reopened", Duration::from_secs(10)),
        "postrotate did not reach ringlb through its pid file:\n{}",
        proxy.log()
    );
    for _ in 0..2 {
        assert_eq!(get(addr, "/after").unwrap().status, 200);
    }
    let new = lines(&log, 2);
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new.iter().all(|l| l.contains("GET /after")), "{new:?}");
    assert_eq!(lines(&rotated, 3).len(), 3);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- io_uring, seccomp and containers -----------------------------------------------

/// A seccomp filter, installed between fork and exec, that refuses `io_uring_setup` with
/// EPERM as Docker's default profile does (Docker 25 and later), and allows the rest.
fn refuse_io_uring(cmd: &mut Command) {
    // BPF: load the system call number; if io_uring_setup, return ERRNO(EPERM); else ALLOW.
    let filter = [
        bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        bpf(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            libc::SYS_io_uring_setup as u32,
        ),
        bpf(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        bpf(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: only prctl(2) runs in the child, which is async-signal-safe; the filter
    // array is moved into the closure and outlives the calls.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn io_uring_refused_by_seccomp_falls_back_to_epoll_and_says_so() {
    let b = Backend::start("a");
    let dir = temp_dir();
    let (cfg, addr) = config_for(b.addr);
    let path = dir.join("ringlb.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringlb"));
    cmd.arg("-c")
        .arg(&path)
        .env("RINGLB_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    refuse_io_uring(&mut cmd);
    let mut child = cmd.spawn().expect("start ringlb under the filter");
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
    let start = Instant::now();
    while !log.lock().unwrap().contains("ringlb started") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ringlb did not start:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(addr, "/").unwrap().text(), "a");
    let text = log.lock().unwrap().clone();
    let warning = text
        .lines()
        .find(|l| l.contains("falling back to epoll"))
        .unwrap_or_else(|| panic!("no fallback warning:\n{text}"));
    assert!(
        warning.contains("WARN") && warning.contains("io_uring unavailable"),
        "{warning}"
    );
    assert!(text.contains("io=\"epoll\""), "{text}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn seccomp_script_adds_io_uring_to_a_docker_profile() {
    let dir = temp_dir();
    // The shape of Docker's profile: a default action, and allow rules with and without
    // conditions.
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [
            { "names": ["read", "write", "epoll_wait"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
              "args": [ { "index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ" } ] }
        ]
    });
    let input = dir.join("default.json");
    std::fs::write(&input, profile.to_string()).unwrap();
    let run = |path: &Path| {
        let out = Command::new("python3")
            .arg(repo("dist/seccomp-add-io-uring"))
            .arg(path)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, text) = run(&input);
    assert_eq!(code, Some(0));
    let out: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(out["defaultAction"], "SCMP_ACT_ERRNO");
    let rules = out["syscalls"].as_array().unwrap();
    assert_eq!(rules[..2], profile["syscalls"].as_array().unwrap()[..]);
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[2]["action"], "SCMP_ACT_ALLOW");
    assert_eq!(
        rules[2]["names"],
        serde_json::json!(["io_uring_setup", "io_uring_enter", "io_uring_register"])
    );
    // Idempotent: a profile that allows them already is left as it is.
    let again = dir.join("again.json");
    std::fs::write(&again, &text).unwrap();
    let (_, twice) = run(&again);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&twice).unwrap(),
        out
    );
    // Not a profile: refused.
    std::fs::write(&input, "{}").unwrap();
    assert_eq!(run(&input).0, Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

fn deb_metadata_names_files_that_exist() {
    let manifest: toml_edit::DocumentMut = read("Cargo.toml").parse().unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    let mut targets = Vec::new();
    for asset in assets.iter() {
        let a = asset.as_array().unwrap();
        let field = |i: usize| a.get(i).and_then(|v| v.as_str()).unwrap();
        let (src, dst) = (field(0), field(1));
        targets.push(dst.to_string());
        if src.starts_with("target/") {
            continue; // built by `cargo deb`
        }
        assert!(repo(src).is_file(), "deb asset {src} does not exist");
    }
    for want in [
        "usr/bin/",
        "etc/ringlb/ringlb.toml",
        "etc/logrotate.d/ringlb",
    ] {
        assert!(
            targets.iter().any(|t| t == want),
            "no asset installs {want}"
        );
    }
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    let postinst = repo(scripts).join("postinst");
    let text = std::fs::read_to_string(&postinst).unwrap();
    assert!(text.contains("adduser --system --group") && text.contains("ringlb"));
    assert!(text.contains("#DEBHELPER#"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&postinst.metadata().unwrap().permissions());
    assert_eq!(mode & 0o111, 0o111, "postinst must be executable");
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(&postinst)
        .status()
        .unwrap();
    assert!(syntax.success(), "postinst has a syntax error");
    let units = &deb["systemd-units"];
    let unit_dir = units["unit-scripts"].as_str().unwrap();
    let unit = units["unit-name"].as_str().unwrap();
    assert!(repo(unit_dir).join(format!("{unit}.service")).is_file());
}

fn dockerfile_copies_what_exists_and_runs_the_packaged_config() {
    let text = read("dist/Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(froms[0].contains("rust:") && froms[0].ends_with(" AS build"));
    assert!(froms[1].contains("debian:bookworm-slim"));
    let mut copied = Vec::new();
    for l in lines.iter().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = l.split_whitespace().collect();
        copied.push(*words.last().unwrap());
        if words[1].starts_with("--from") || words[1] == "." {
            continue;
        }
        assert!(repo(words[1]).exists(), "COPY of missing {}", words[1]);
    }
    let entry = lines
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    for path in ["/usr/bin/ringlb", "/etc/ringlb/ringlb.toml"] {
        assert!(entry.contains(path) && copied.contains(&path), "{path}");
    }
    assert!(lines.iter().any(|l| l.starts_with("USER ringlb")));
    let ignore = read("dist/Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l == "target"));
}

fn packaged_config_passes_check() {
    let dir = temp_dir();
    // `check` opens the access log; point the packaged paths at this test's directory.
    let text = read("dist/ringlb.toml")
        .replace("/var/log/ringlb", dir.to_str().unwrap())
        .replace("/var/lib/ringlb", dir.to_str().unwrap())
        .replace("/run/ringlb", dir.to_str().unwrap());
    let path = dir.join("ringlb.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

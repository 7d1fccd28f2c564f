//! The traps a first run can fall into, through the real binary: a second ringlb on the same
//! pid file or listen address (SO_REUSEPORT would share the port silently), an address
//! held by another process (admin included), a bind error without its address, a bad
//! `RINGLB_LOG`, more workers than CPUs. Each is refused or warned about at start, naming
//! the file, the address, the other process.

#[allow(unused_imports)]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{server, simple_config, temp_dir};
use common::{free_port, get, Backend, Proxy};

/// How long a refused start may take to exit.
const REFUSAL: Duration = Duration::from_secs(20);

/// Runs ringlb on `config` expecting it to exit by itself; returns (exit code, stderr).
fn run_to_exit(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = temp_dir();
    let path = dir.join("ringlb.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringlb"));
    cmd.arg("-c")
        .arg(&path)
        .env("RINGLB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > REFUSAL {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (code, err)
}

fn config_on(port: u16, backend: SocketAddr, runtime_extra: &str, admin: Option<u16>) -> String {
    let cfg = simple_config(port, &[server(backend, "")], "");
    let cfg = cfg.replacen("[runtime]", &format!("[runtime]\n{runtime_extra}"), 1);
    match admin {
        Some(a) => cfg.replacen(
            "[[server]]",
            &format!("[admin]\nlisten = \"127.0.0.1:{a}\"\n\n[[server]]"),
            1,
        ),
        None => cfg,
    }
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_second_ringlb_on_the_same_listen_address_is_refused_naming_the_first() {
    let b = Backend::start("a");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config_on(port, b.addr, "", None);
    let first = Proxy::start(&cfg, addr);
    let (code, err) = run_to_exit(&cfg, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on {addr} (listen): already in use by pid {} (ringlb)",
            first.pid()
        )),
        "{err}"
    );
    assert!(!err.contains("ringlb started"), "{err}");
    // The first one keeps all the traffic.
    for _ in 0..4 {
        assert_eq!(get(addr, "/").unwrap().text(), "a");
    }
}

#[test]
fn an_admin_address_held_elsewhere_is_refused_before_started() {
    let b = Backend::start("a");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = held.local_addr().unwrap().port();
    let (code, err) = run_to_exit(&config_on(free_port(), b.addr, "", Some(admin)), &[]);
    assert_eq!(code, Some(1), "{err}");
    let me = std::process::id();
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{admin} (admin.listen): already in use by pid {me} ({})",
            comm(me)
        )),
        "{err}"
    );
    assert!(!err.contains("ringlb started"), "{err}");
}

#[test]
fn a_bind_error_names_its_address() {
    let b = Backend::start("a");
    // TEST-NET-1: no interface of this machine has it.
    let cfg = config_on(free_port(), b.addr, "", None).replacen(
        "listen = [\"127.0.0.1:",
        "listen = [\"192.0.2.1:",
        1,
    );
    let (code, err) = run_to_exit(&cfg, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot listen on 192.0.2.1:"), "{err}");
    assert!(err.contains("(listen): "), "{err}");
    assert!(
        err.contains("(no interface of this machine has that address)"),
        "{err}"
    );
}

#[test]
fn a_bad_ringlb_log_is_refused_with_the_valid_values() {
    let b = Backend::start("a");
    let cfg = config_on(free_port(), b.addr, "", None);
    let (code, err) = run_to_exit(&cfg, &[("RINGLB_LOG", "verbose")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("RINGLB_LOG=\"verbose\" is not a log level: use error, warn, info or debug"),
        "{err}"
    );
    let (code, err) = run_to_exit(&cfg, &[("RINGLB_LOG", "ringlb=loud")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a valid filter"), "{err}");
}

#[test]
fn a_filter_with_module_levels_is_accepted() {
    let b = Backend::start("a");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let p = Proxy::start_env(
        &config_on(port, b.addr, "", None),
        addr,
        &[("RINGLB_LOG", "ringlb=debug,warn")],
    );
    assert_eq!(get(addr, "/").unwrap().text(), "a");
    drop(p);
}

/// CPUs this process may run on (its affinity mask), as ringlb counts them.
fn allowed_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        libc::CPU_COUNT(&set) as usize
    }
}

#[test]
fn more_workers_than_cpus_is_a_warning_with_both_counts() {
    let b = Backend::start("a");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cpus = allowed_cpus();
    let workers = cpus + 2;
    let cfg = config_on(port, b.addr, "", None).replacen(
        "workers = 2",
        &format!("workers = {workers}"),
        1,
    );
    let p = Proxy::start(&cfg, addr);
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("more than the CPUs this process may run on"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("workers={workers}")), "{line}");
    assert!(line.contains(&format!("cpus={cpus}")), "{line}");
    // As many workers as CPUs: no warning.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg =
        config_on(port, b.addr, "", None).replacen("workers = 2", &format!("workers = {cpus}"), 1);
    let p = Proxy::start(&cfg, addr);
    assert!(!p.log().contains("more than the CPUs"), "{}", p.log());
}

#[test]
fn a_second_ringlb_on_the_same_pid_file_is_refused_naming_file_and_pid() {
    let b = Backend::start("a");
    let dir = temp_dir();
    let pid_file = dir.join("ringlb.pid");
    let extra = format!("pid_file = \"{}\"", pid_file.display());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = Proxy::start(&config_on(port, b.addr, &extra, None), addr);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", first.pid())
    );
    // Another listen address: only the pid file stands in the way.
    let (code, err) = run_to_exit(&config_on(free_port(), b.addr, &extra, None), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "pid file {}: held by ringlb pid {}, which is running",
            pid_file.display(),
            first.pid()
        )),
        "{err}"
    );
    assert!(!err.contains("ringlb started"), "{err}");
    // The refused one left the first one's file alone; a clean stop removes it.
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", first.pid())
    );
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!pid_file.exists(), "pid file left after a clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stale_pid_file_is_taken_over() {
    let b = Backend::start("a");
    let dir = temp_dir();
    let pid_file = dir.join("ringlb.pid");
    // The pid of a process that has exited (and that nobody holds the lock for).
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pid_file, format!("{dead}\n")).unwrap();
    let extra = format!("pid_file = \"{}\"", pid_file.display());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let p = Proxy::start(&config_on(port, b.addr, &extra, None), addr);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", p.pid())
    );
    assert_eq!(get(addr, "/").unwrap().text(), "a");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pid_file_in_a_missing_directory_is_refused_naming_it() {
    let b = Backend::start("a");
    let dir = temp_dir();
    let pid_file = dir.join("no/such/dir/ringlb.pid");
    let extra = format!("pid_file = \"{}\"", pid_file.display());
    let (code, err) = run_to_exit(&config_on(free_port(), b.addr, &extra, None), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "pid file {}: No such file or directory",
            pid_file.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

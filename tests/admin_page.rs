//! The admin status page rendered by a real browser (Debian's headless chromium): after its
//! script has polled `/status`, the DOM lists every upstream and server with its state.
//!
//! Where chromium is not installed the test is reported as `ignored (chromium is not
//! installed ...)` in the summary, not as passed: this file runs under libtest-mimic
//! (`harness = false` in Cargo.toml), whose tests may decide at run time to be ignored. In CI
//! (`CI` set, as `.ci/run` and CI services do) a missing browser is a failure instead:
//! `.ci/run` installs it.
//!
//! `RINGLB_SCREENSHOT=PATH` also saves the screenshot there (how docs/admin-page.png is
//! made: `RINGLB_SCREENSHOT=$PWD/docs/admin-page.png cargo test --test admin_page`).

#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, get, Backend, Proxy};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// How long one chromium run may take before the test gives up on it.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    })
}

/// Runs headless chromium on `url` with `extra` arguments; returns stdout.
fn run_browser(bin: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=3000")
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {BROWSER_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![Trial::ignorable_test(
        "status_page_shows_every_server_with_its_state_in_a_browser",
        || with_browser(status_page_shows_every_server_with_its_state),
    )];
    libtest_mimic::run(&args, trials).exit();
}

/// Whether this run is CI's (`CI=true` from CI services, `CI=1` from `.ci/run`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Runs `test` with the browser, or reports why it cannot: a failure in CI, an ignored test
/// (with the reason in the summary) elsewhere.
fn with_browser(test: fn(&Path)) -> Result<Completion, Failed> {
    const MISSING: &str = "chromium is not installed: apt-get install chromium";
    match chromium() {
        Some(bin) => {
            test(&bin);
            Ok(Completion::Completed)
        }
        None if in_ci() => Err(format!("{MISSING} (.ci/run does; CI must run this test)").into()),
        None => Ok(Completion::ignored_with(MISSING)),
    }
}

fn status_page_shows_every_server_with_its_state(bin: &Path) {
    let web1 = Backend::start("web1");
    let web2 = Backend::start("web2");
    let spare = Backend::start("spare");
    let api = Backend::start("api");
    let closed = |_: ()| -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (off, gone) = (closed(()), closed(()));
    let port = free_port();
    let admin_port = free_port();
    let cfg = format!(
        r#"[runtime]
workers = 2

[admin]
listen = "127.0.0.1:{admin_port}"

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "/"
  proxy_pass = "web"

  [[server.location]]
  path = "/api"
  proxy_pass = "api"

[upstream.web]
servers = [
  {{ addr = "{w1}", weight = 3 }},
  {{ addr = "{w2}" }},
  {{ addr = "{off}", down = true }},
  {{ addr = "{spare}", backup = true }},
]

[upstream.api]
balance = "least_conn"
connect_timeout = "1s"
servers = [ {{ addr = "{api}", weight = 2 }}, {{ addr = "{gone}" }} ]
"#,
        w1 = web1.addr,
        w2 = web2.addr,
        spare = spare.addr,
        api = api.addr,
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _proxy = Proxy::start(&cfg, addr);
    // Traffic while the page polls, so rates and counts are not all zero; the dead api
    // server fails once and shows as down.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = get(addr, "/");
                let _ = get(addr, "/api/x");
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    let dir = common::proxy::temp_dir();
    let url = format!("http://127.0.0.1:{admin_port}/");
    let dom = run_browser(bin, &dir.join("profile"), &url, &["--dump-dom"]);
    let shot = dir.join("admin-page.png");
    run_browser(
        bin,
        &dir.join("profile2"),
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,800",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    for (upstream, server, state) in [
        ("web", web1.addr, "up"),
        ("web", web2.addr, "up"),
        ("web", off, "disabled"),
        ("web", spare.addr, "backup"),
        ("api", api.addr, "up"),
        ("api", gone, "down"),
    ] {
        let row = format!(
            "<tr class=\"server\" data-upstream=\"{upstream}\" data-addr=\"{server}\" data-state=\"{state}\">"
        );
        assert!(dom.contains(&row), "no row {row} in the page:\n{dom}");
    }
    assert!(dom.contains("<span class=\"state up\">up</span>"));
    assert!(dom.contains("least_conn") && dom.contains("round_robin"));
    assert!(
        dom.contains("class=\"live\""),
        "the page never reached /status"
    );

    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.len() > 10_000, "screenshot too small to show anything");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    if let Some(keep) = std::env::var_os("RINGLB_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

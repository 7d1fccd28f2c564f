//! Access log formats through the real binary: JSON lines (one valid object per request,
//! hostile bytes escaped), a template of nginx variables (`$http_<name>`, `$host`, the
//! request line's parts, upstream fields), `combined` written out equal to the default, and
//! an unknown variable refused by `ringlb check` with its position and a suggestion.
//! (tests/admin.rs checks the default line field by field and SIGUSR1's reopen.)

#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::client::{request, Conn};
use common::proxy::temp_dir;
use common::{free_port, Backend, Proxy};

/// A running ringlb whose one server block logs to `log` in `format` (`None`: the default),
/// with `/` proxied to a backend named "a" and `/dead` to a port nothing listens on.
struct Logged {
    a: Backend,
    proxy: Proxy,
    addr: SocketAddr,
    log: PathBuf,
    dead: SocketAddr,
}

fn start(format: Option<&str>) -> Logged {
    let a = Backend::start("a");
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = temp_dir().join("access.log");
    let format = format.map_or(String::new(), |f| format!("log_format = '{f}'"));
    let cfg = format!(
        r#"[runtime]
workers = 2
shutdown_timeout = "5s"

[[server]]
listen = ["127.0.0.1:{port}"]
server_name = ["fallback.test"]
access_log = "{log}"
{format}

  [[server.location]]
  path = "/"
  proxy_pass = "app"

  [[server.location]]
  path = "/dead"
  proxy_pass = "dead"

[upstream.app]
servers = [ {{ addr = "{a}" }} ]

[upstream.dead]
connect_timeout = "1s"
servers = [ {{ addr = "{dead}" }} ]
"#,
        log = log.display(),
        a = a.addr,
    );
    let proxy = Proxy::start(&cfg, addr);
    Logged {
        a,
        proxy,
        addr,
        log,
        dead,
    }
}

impl Logged {
    /// Stops ringlb (which writes out every buffered line) and returns the log's lines.
    fn stop_and_read(mut self, expect: usize) -> Vec<String> {
        self.proxy.signal(libc::SIGTERM);
        assert_eq!(self.proxy.wait_exit(Duration::from_secs(10)), Some(0));
        let text = std::fs::read(&self.log).unwrap();
        let text = String::from_utf8(text).expect("every log line is UTF-8");
        let lines: Vec<String> = text.lines().map(String::from).collect();
        assert_eq!(lines.len(), expect, "{text}");
        lines
    }
}

fn send(addr: SocketAddr, raw: &[u8]) -> u16 {
    request(addr, raw).unwrap().status
}

#[test]
fn json_lines_are_one_valid_object_per_request() {
    let s = start(Some("json"));
    let mut c = Conn::open(s.addr).unwrap();
    c.send(
        b"GET /x?q=%221%22 HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: t\"\\\r\n\
          Referer: http://r/\r\n\r\n",
    )
    .unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 200);
    drop(c);
    assert_eq!(
        send(
            s.addr,
            // A byte that is not UTF-8 (the test backend would refuse it; this request never
            // reaches one).
            b"GET /dead HTTP/1.0\r\nUser-Agent: \xff\"\r\nConnection: close\r\n\r\n" as &[u8]
        ),
        502
    );
    let dead = s.dead;
    let a = s.a.addr;
    let lines = s.stop_and_read(2);
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ok = objects
        .iter()
        .find(|o| o["request_uri"] == "/x?q=%221%22")
        .expect("the proxied request");
    assert_eq!(ok["request"], "GET /x?q=%221%22 HTTP/1.1");
    assert_eq!(ok["request_method"], "GET");
    assert_eq!(ok["server_protocol"], "HTTP/1.1");
    assert_eq!(ok["host"], "example.com");
    assert_eq!(ok["scheme"], "http");
    assert_eq!(ok["remote_addr"], "127.0.0.1");
    assert!(ok["remote_port"].as_u64().unwrap() > 0);
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["body_bytes_sent"], 1, "the backend's name: {ok}");
    assert!(ok["bytes_sent"].as_u64().unwrap() > 1);
    assert_eq!(ok["http_referer"], "http://r/");
    assert_eq!(ok["http_user_agent"], "t\"\\");
    assert_eq!(ok["upstream_addr"], a.to_string());
    assert_eq!(ok["upstream_status"], 200);
    assert!(ok["request_time"].is_number() && ok["upstream_response_time"].is_number());
    let time = ok["time"].as_str().unwrap();
    assert_eq!((time.len(), &time[10..11]), (25, "T"), "{time}");

    let failed = objects
        .iter()
        .find(|o| o["request_uri"] == "/dead")
        .expect("the failed request");
    assert_eq!(failed["status"], 502);
    // HTTP/1.0 without Host: nginx's $host is the server name.
    assert_eq!(failed["host"], "fallback.test");
    assert_eq!(failed["http_referer"], serde_json::Value::Null);
    // The byte that is not UTF-8 replaced: the line is still valid JSON.
    assert_eq!(failed["http_user_agent"], "\u{fffd}\"");
    assert_eq!(failed["upstream_addr"], dead.to_string());
    assert_eq!(failed["upstream_status"], serde_json::Value::Null);
    assert_eq!(failed["upstream_response_time"], serde_json::Value::Null);
}

#[test]
fn a_template_logs_the_variables_it_names() {
    let s = start(Some(
        "$request_method|$request_uri|$uri|$args|$server_protocol|$scheme://$host|$status|\
         $body_bytes_sent|${http_x_request_id}|$http_x_missing|$upstream_addr|$upstream_status|$pid",
    ));
    assert_eq!(
        send(
            s.addr,
            b"POST /p/q?x=1 HTTP/1.1\r\nHost: Shop.Test\r\nX-Request-Id: abc \"7\"\r\n\
              Content-Length: 3\r\nConnection: close\r\n\r\nxyz"
        ),
        200
    );
    let a = s.a.addr;
    let pid = s.proxy.pid();
    let lines = s.stop_and_read(1);
    assert_eq!(
        lines[0],
        format!(
            "POST|/p/q?x=1|/p/q|x=1|HTTP/1.1|http://shop.test|200|1|abc \\x227\\x22|-|{a}|200|{pid}"
        )
    );
}

#[test]
fn combined_written_out_is_the_default_line() {
    let lines_for = |format: Option<&str>| -> Vec<String> {
        let s = start(format);
        assert_eq!(
            send(
                s.addr,
                b"GET /c HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nConnection: close\r\n\r\n"
            ),
            200
        );
        let a = s.a.addr.to_string();
        // The parts that differ from run to run: time, backend port, timings.
        s.stop_and_read(1)
            .into_iter()
            .map(|l| {
                let l = l.replace(&a, "BACKEND");
                let open = l.find('[').unwrap();
                let close = l.find(']').unwrap();
                let l = format!("{}[TIME]{}", &l[..open], &l[close + 1..]);
                let cut = l.rfind(" 200 ").unwrap();
                l[..cut + 5].to_string()
            })
            .collect()
    };
    let default = lines_for(None);
    assert_eq!(
        default,
        vec!["127.0.0.1 - - [TIME] \"GET /c HTTP/1.1\" 200 1 \"-\" \"u\" BACKEND 200 ".to_string()]
    );
    assert_eq!(lines_for(Some("combined")), default);
    let nginx_combined = "$remote_addr - $remote_user [$time_local] \"$request\" $status \
                          $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \
                          $upstream_addr $upstream_status $request_time $upstream_response_time";
    assert_eq!(lines_for(Some(nginx_combined)), default);
}

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .arg("check")
        .arg("-c")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn an_unknown_variable_is_a_config_error_with_its_position() {
    let dir = temp_dir();
    let path = dir.join("ringlb.toml");
    let text = "[[server]]\nlisten = [\"127.0.0.1:18080\"]\naccess_log = \"/tmp/x.log\"\n\
                log_format = \"$remote_addr $stauts\"\n  [[server.location]]\n  path = \"/\"\n  \
                proxy_pass = \"app\"\n[upstream.app]\nservers = [ { addr = \"127.0.0.1:18001\" } ]\n";
    std::fs::write(&path, text).unwrap();
    let (ok, out) = check(&path);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "{}:4:14: server[0].log_format: unknown variable `$stauts` in the access log format; did you mean `$status`?",
            path.display()
        )),
        "{out}"
    );
    std::fs::write(&path, text.replace("$remote_addr $stauts", "main")).unwrap();
    let (ok, out) = check(&path);
    assert!(!ok, "{out}");
    assert!(
        out.contains("\"main\" is neither a format name (combined, json)"),
        "{out}"
    );
    std::fs::write(&path, text.replace("$remote_addr $stauts", "json")).unwrap();
    let (ok, out) = check(&path);
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lines_keep_coming_while_requests_are_served() {
    // Buffered: lines reach the file within the flush interval (1 s), without a stop.
    let s = start(None);
    for _ in 0..20 {
        assert_eq!(
            send(
                s.addr,
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            ),
            200
        );
    }
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(10) {
        n = std::fs::read_to_string(&s.log)
            .unwrap_or_default()
            .lines()
            .count();
        if n == 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(n, 20);
}

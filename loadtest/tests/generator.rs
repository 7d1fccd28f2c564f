//! The generator against `ringload serve` and against tiny hand-written servers.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{count, load_json, load_json_failing, Backend};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn counts_by_status_and_listener_are_exact_with_n() {
    let backend = Backend::start(2, &[]);
    let a = backend.addrs[0].to_string();
    let v = load_json(
        &["-n", "1000", "-c", "8", "-t", "2", &backend.url(0, "/")],
        DEADLINE,
    );
    assert_eq!(v["requests"], 1000);
    assert_eq!(count(&v, "status", "200"), 1000);
    assert_eq!(count(&v, "by_server", &a), 1000);
    assert_eq!(v["by_server"].as_object().unwrap().len(), 1);
    for kind in ["connect", "timeout", "read", "write", "invalid"] {
        assert_eq!(count(&v, "errors", kind), 0, "{kind}");
    }
    let b = backend.addrs[1].to_string();
    // Nothing but 503s: the report counts them, and the exit status says the run failed.
    let (v, _) = load_json_failing(
        &["-n", "333", "-c", "5", &backend.url(1, "/status/503")],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "503"), 333);
    assert_eq!(count(&v, "by_server", &b), 333);
    assert!(v["rps"].as_f64().unwrap() > 0.0);
    for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(v["latency_us"][key].as_u64().unwrap() > 0, "{key}");
    }
}

#[test]
fn no_keepalive_methods_headers_and_bodies_work() {
    let backend = Backend::start(1, &[]);
    let url = backend.url(0, "/");
    let v = load_json(&["-n", "200", "-c", "4", "--no-keepalive", &url], DEADLINE);
    assert_eq!(count(&v, "status", "200"), 200);
    let v = load_json(
        &[
            "-n",
            "200",
            "-c",
            "4",
            "-m",
            "POST",
            "--body",
            "hello",
            "-H",
            "X-Test: 1",
            &url,
        ],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "200"), 200);
    let v = load_json(&["-n", "100", "-c", "2", "-m", "HEAD", &url], DEADLINE);
    assert_eq!(count(&v, "status", "200"), 100);
    assert_eq!(
        count(&v, "errors", "invalid") + count(&v, "errors", "timeout"),
        0
    );
}

#[test]
fn open_loop_keeps_the_asked_rate() {
    let backend = Backend::start(1, &[]);
    let v = load_json(
        &["-R", "400", "-d", "1s", "-c", "8", &backend.url(0, "/")],
        DEADLINE,
    );
    let requests = v["requests"].as_u64().unwrap();
    assert!(
        (360..=440).contains(&requests),
        "{requests} requests in 1 s at 400/s"
    );
    assert_eq!(v["mode"], "open");
    // How late requests left after their due time: reported, and ordered.
    let late = &v["send_late_us"];
    let (p50, p99, max) = (
        late["p50"].as_u64().unwrap(),
        late["p99"].as_u64().unwrap(),
        late["max"].as_u64().unwrap(),
    );
    assert!(p50 >= 1 && p50 <= p99 && p99 <= max, "{late}");
    let closed = load_json(&["-n", "10", "-c", "1", &backend.url(0, "/")], DEADLINE);
    assert!(
        closed["send_late_us"].is_null(),
        "closed loop has no due times"
    );
}

#[test]
fn warmup_requests_are_not_counted() {
    let backend = Backend::start(1, &[]);
    let v = load_json(
        &[
            "--warmup",
            "300ms",
            "-n",
            "50",
            "-c",
            "2",
            &backend.url(0, "/"),
        ],
        DEADLINE,
    );
    assert_eq!(v["requests"], 50);
}

/// Serves every connection accepted on `listener` with `respond` on its own thread.
fn tiny_server(respond: fn(TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            std::thread::spawn(move || respond(stream));
        }
    });
    format!("http://{addr}/")
}

/// Reads one request head; false when the client closed.
fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

#[test]
fn chunked_responses_are_counted_right() {
    let url = tiny_server(|mut s| {
        while read_head(&mut s) {
            // Split mid-chunk and mid-size-line to exercise the incremental decoder.
            let parts: [&[u8]; 4] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n1",
                b"0\r\n0123456789abcdef\r\n0\r\n",
                b"X-Trailer: 1\r\n\r\n",
            ];
            for part in parts {
                if s.write_all(part).is_err() {
                    return;
                }
                let _ = s.flush();
            }
        }
    });
    let v = load_json(&["-n", "60", "-c", "3", &url], DEADLINE);
    assert_eq!(count(&v, "status", "200"), 60);
    assert_eq!(
        v["errors"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|e| e.as_u64())
            .sum::<u64>(),
        0
    );
}

#[test]
fn close_delimited_responses_are_counted_right() {
    let url = tiny_server(|mut s| {
        if read_head(&mut s) {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close");
        }
    });
    let v = load_json(&["-n", "40", "-c", "2", &url], DEADLINE);
    assert_eq!(count(&v, "status", "200"), 40);
    assert_eq!(
        count(&v, "errors", "read") + count(&v, "errors", "invalid"),
        0
    );
}

#[test]
fn truncated_and_garbage_responses_are_errors_not_successes() {
    let truncated = tiny_server(|mut s| {
        if read_head(&mut s) {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
        }
    });
    let (v, _) = load_json_failing(&["-n", "20", "-c", "2", &truncated], DEADLINE);
    assert_eq!(v["requests"], 0);
    assert_eq!(count(&v, "errors", "read"), 20);
    let garbage = tiny_server(|mut s| {
        if read_head(&mut s) {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        }
    });
    let (v, _) = load_json_failing(&["-n", "20", "-c", "2", &garbage], DEADLINE);
    assert_eq!(count(&v, "errors", "invalid"), 20);
    assert_eq!(v["status"].as_object().unwrap().len(), 0);
}

#[test]
fn timeouts_are_errors_not_hangs() {
    let url = tiny_server(|mut s| {
        // Read the request, never answer, hold the connection open.
        read_head(&mut s);
        std::thread::sleep(Duration::from_secs(30));
    });
    let (v, _) = load_json_failing(
        &["-n", "4", "-c", "2", "--timeout", "300ms", &url],
        Duration::from_secs(10),
    );
    assert_eq!(count(&v, "errors", "timeout"), 4);
    assert_eq!(v["requests"], 0);
}

#[test]
fn refused_connections_are_errors_not_hangs() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let (v, err) = load_json_failing(&["-n", "5", "-c", "2", &url], Duration::from_secs(10));
    assert_eq!(count(&v, "errors", "connect"), 5);
    assert!(err.contains("5 connect error(s)"), "{err}");
    let (v, _) = load_json_failing(&["-d", "300ms", "-c", "2", &url], Duration::from_secs(10));
    assert!(count(&v, "errors", "connect") > 0);
    assert_eq!(v["requests"], 0);
}

#[test]
fn exit_status_says_whether_anything_succeeded() {
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    // Text report too: printed on stdout first, the reason on stderr, status 1.
    let (ok, out, err) = common::run(["-n", "3", "-c", "1", &refused], DEADLINE);
    assert!(!ok, "exit 0 with every connection refused");
    assert!(out.contains("connect: 3"), "the report still comes: {out}");
    assert!(
        err.contains("no successful (2xx or 3xx) response: 3 connect error(s)"),
        "{err}"
    );
    // Redirects count as successes; 4xx do not.
    let backend = Backend::start(1, &[]);
    let v = load_json(
        &["-n", "20", "-c", "2", &backend.url(0, "/status/302")],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "302"), 20);
    let (v, err) = load_json_failing(
        &["-n", "20", "-c", "2", &backend.url(0, "/status/404")],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "404"), 20);
    assert!(err.contains("20 response(s) 404"), "{err}");
}

#[test]
fn bad_command_lines_fail_fast() {
    let (ok, _, err) = common::run(["ftp://example.com/"], Duration::from_secs(5));
    assert!(!ok && err.contains("http:// and https://"), "{err}");
    let (ok, _, _) = common::run(
        ["-d", "fast", "http://127.0.0.1:1/"],
        Duration::from_secs(5),
    );
    assert!(!ok);
}

//! A backend that pauses once for 1 s: open loop (-R) must show it in p99.9, closed loop
//! must not (only the one request in flight waited).

mod common;

use std::time::Duration;

use common::{load_json, Backend};

const STALL_US: u64 = 1_000_000;

#[test]
fn injected_stall_shows_in_open_loop_p999() {
    let backend = Backend::start(1, &["--stall-once", "1s", "--stall-after", "200"]);
    let v = load_json(
        &[
            "-R",
            "400",
            "-c",
            "16",
            "-d",
            "2500ms",
            &backend.url(0, "/"),
        ],
        Duration::from_secs(15),
    );
    let p999 = v["latency_us"]["p999"].as_u64().unwrap();
    let p99 = v["latency_us"]["p99"].as_u64().unwrap();
    // Every request due during the pause waited for it: hundreds of them, not a handful.
    assert!(p999 >= STALL_US * 8 / 10, "open loop p99.9 {p999} us");
    assert!(p99 >= STALL_US / 2, "open loop p99 {p99} us");
}

#[test]
fn injected_stall_hides_from_closed_loop_p999() {
    let backend = Backend::start(1, &["--stall-once", "1s", "--stall-after", "200"]);
    let v = load_json(
        &["-c", "1", "-t", "1", "-d", "2500ms", &backend.url(0, "/")],
        Duration::from_secs(15),
    );
    let p999 = v["latency_us"]["p999"].as_u64().unwrap();
    let max = v["latency_us"]["max"].as_u64().unwrap();
    assert!(max >= STALL_US * 9 / 10, "the stall happened: max {max} us");
    assert!(p999 < STALL_US / 10, "closed loop p99.9 {p999} us");
    assert!(v["requests"].as_u64().unwrap() > 2000, "{v}");
}

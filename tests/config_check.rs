//! `ringlb check` through the library (the binary's `check` subcommand prints exactly this).
//! Tests through the real binary belong here once `main.rs` wires `check` up.

use std::path::{Path, PathBuf};

use ringlb::config;

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ringlb.toml")
}

#[test]
fn bundled_config_checks_ok() {
    let (text, ok) = config::check(&bundled());
    assert!(ok, "{text}");
    assert!(text.contains("upstream django: round_robin"), "{text}");
    assert!(text.ends_with("is valid"), "{text}");
}

#[test]
fn broken_copy_of_bundled_config_lists_every_error_with_positions() {
    let good = std::fs::read_to_string(bundled()).unwrap();
    let bad = good
        .replace(
            "{ addr = \"127.0.0.1:8002\" }",
            "{ addr = \"127.0.0.1:80x\" }",
        )
        .replace("proxy_pass = \"django\"", "proxy_pass = \"djang\"")
        .replace("pin_workers = true", "pin_wrokers = true");
    let dir = std::env::temp_dir().join(format!("ringlb-config-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringlb.toml");
    std::fs::write(&path, &bad).unwrap();

    let (text, ok) = config::check(&path);
    assert!(!ok);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let at = |needle: &str| {
        let off = bad.find(needle).unwrap();
        let line = bad[..off].matches('\n').count() + 1;
        let col = off - bad[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{col}: ", path.display())
    };
    assert_eq!(
        lines[0],
        format!("{}runtime.pin_wrokers: unknown key `pin_wrokers`; did you mean `pin_workers`? (valid: workers, pin_workers, shutdown_timeout, io, max_connections, temp_path, pid_file)", at("pin_wrokers"))
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}server[0].location[0].proxy_pass: no upstream named \"djang\"",
            at("\"djang\"")
        )),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{}upstream.django.servers[1].addr: \"127.0.0.1:80x\" is not host:port",
            at("\"127.0.0.1:80x\"")
        )),
        "{text}"
    );
    assert!(lines[3].ends_with("has 3 errors"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

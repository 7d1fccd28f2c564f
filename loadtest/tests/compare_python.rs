//! loadtest/compare's Python tests (the summary arithmetic: medians, per-round ratios, CPU per
//! request, per-core figures; h2load's output; layouts; rendering), run under `cargo test` so
//! that a change to them cannot land unnoticed. Skipped, with a message on the terminal, only
//! where python3 is not installed.

use std::io::Write;
use std::process::Command;

#[test]
fn compare_python_unit_tests_pass() {
    let loadtest = env!("CARGO_MANIFEST_DIR");
    if Command::new("python3").arg("--version").output().is_err() {
        // Straight to the terminal: libtest captures only the print macros.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED compare_python_unit_tests_pass: python3 is not installed, so loadtest/compare's \
             unit tests did not run"
        );
        return;
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "comparelib/tests",
            "-t",
            ".",
        ])
        .current_dir(loadtest)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 -m unittest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "python3 -m unittest failed:\n{report}"
    );
    // unittest exits 0 when it finds no tests at all (older Pythons): make sure some ran.
    let ran: u32 = report
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert!(ran >= 20, "only {ran} Python tests ran:\n{report}");
}

//! The config loader (TOML -> validated `Config`) on arbitrary text: never a panic, and a
//! rejected file always says at least one thing about why. `parse_offline`: a fuzzed
//! `access_log` path must not create files.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = ringlb::config::parse_offline(text, Path::new("fuzz.toml")) {
        assert!(!errors.is_empty());
        for e in &errors {
            let _ = e.to_string();
        }
    }
});

//! `ringlb import-nginx` on arbitrary text: never a panic; a refused file always says why
//! (file:line); an imported one is TOML whose every key and value type ringlb's schema
//! accepts (values are not validated here: that would resolve names and open files), and
//! every note formats.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ringlb::import_nginx::import_text(text) {
        Err(e) => assert!(e.starts_with("nginx.conf:"), "{e}"),
        Ok(imported) => {
            let errors =
                ringlb::config::structure_errors(&imported.toml, Path::new("imported.toml"));
            assert!(
                errors.is_empty(),
                "{}\n--- from:\n{text}\n--- errors: {errors:?}",
                imported.toml
            );
            for n in &imported.notes {
                assert!(n.at.starts_with("nginx.conf:"), "{n}");
                let _ = n.to_string();
            }
        }
    }
});

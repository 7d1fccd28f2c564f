//! File -> [`Config`]: read the file, parse the TOML, walk its spanned tree into the raw
//! structs of `schema.rs` (reporting every unknown key and every value of the wrong type,
//! each with its line and column), then let `validate.rs` turn them into the model, again
//! collecting every problem.

use std::path::Path;

use toml_edit::ImDocument;

use super::error::{ConfigError, Problems};
use super::hints;
use super::model::Config;
use super::schema::RawConfig;
use super::validate::{self, Files};
use super::walk::Walker;

/// Reads and validates the file at `path`. Every error found is returned, in file order.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(vec![ConfigError::whole_file(
            path,
            format!("cannot read the configuration file: {e}"),
        )]),
    }
}

/// Parses and validates `text` as [`load`] does, files named in it included (access logs
/// opened, created if missing; TLS files read); `path` names the file in errors and is
/// kept in [`Config::path`] for reloads.
pub fn parse(text: &str, path: &Path) -> Result<Config, Vec<ConfigError>> {
    parse_with(text, path, Files::Check)
}

/// As [`parse`], but leaves the files the configuration names alone: no access log is
/// opened or created, no certificate read (for fuzzing and for tools that only read).
pub fn parse_offline(text: &str, path: &Path) -> Result<Config, Vec<ConfigError>> {
    parse_with(text, path, Files::Leave)
}

fn parse_with(text: &str, path: &Path, files: Files) -> Result<Config, Vec<ConfigError>> {
    let mut problems = Problems::default();
    let raw = read_raw(text, &mut problems);
    if raw.is_none() {
        if let Some(at) = hints::looks_like_nginx(text) {
            problems.push(
                at..at,
                "",
                format!(
                    "this looks like an nginx configuration: try `ringlb import-nginx {}`",
                    path.display()
                ),
            );
        }
    }
    let config = raw.and_then(|raw| validate::build(&raw, path, files, &mut problems));
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems.into_errors(text, path)),
    }
}

/// What the structure of `text` gets wrong: TOML syntax, unknown keys, values of the wrong
/// type; values are not validated, so no name is resolved and no file opened (for checking
/// generated files, e.g. in `ringlb import-nginx`'s fuzz target).
pub fn structure_errors(text: &str, path: &Path) -> Vec<ConfigError> {
    let mut problems = Problems::default();
    read_raw(text, &mut problems);
    problems.into_errors(text, path)
}

/// Text -> raw structs. `None` only for a TOML syntax error (already in `problems`); type
/// errors and unknown keys are recorded and the offending value left out.
pub(crate) fn read_raw(text: &str, problems: &mut Problems) -> Option<RawConfig> {
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().replace('\n', " ");
            problems.push(span, "", format!("TOML syntax error: {message}"));
            return None;
        }
    };
    let mut w = Walker {
        problems,
        unknown_key: super::hints::unknown_key,
    };
    Some(RawConfig::walk(&mut w, doc.as_table(), &(0..0), ""))
}

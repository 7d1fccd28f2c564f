//! `ringlb import-nginx PATH`: an nginx configuration -> the equivalent ringlb TOML, and
//! a note for every directive that could not be carried over.
//!
//! The pipeline, one file per step:
//! - `lexer`: text -> tokens, as nginx cuts them (quotes, escapes, comments).
//! - `parse`: tokens -> a tree of directives, `include` expanded (globs, nginx's lookup).
//! - `convert` (main, `events`, `http`, `upstream`, inherited settings) and `server`
//!   (`server`, `location`): the tree -> a `plan::Plan`, with nginx's defaults written
//!   out where ringlb's differ (`client_max_body_size 1m`, `real_ip_header X-Real-IP`,
//!   no HTTP/2 unless turned on).
//! - `plan`: the plan -> TOML text.
//!
//! Values are converted with `values` (nginx sizes, times, addresses, variables).
//! `pipeline` runs the steps in order; `note` is what every step reports about a directive
//! it could not carry over. This file only declares and re-exports.

mod convert;
mod lexer;
mod note;
mod parse;
mod pipeline;
mod plan;
mod server;
mod values;

pub use note::Note;
pub use pipeline::{import, import_text, Imported};

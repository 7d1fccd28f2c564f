//! Configuration: the TOML file -> a validated [`Config`].
//!
//! The pipeline, one file per step:
//! - `schema`: the file's sections, each key written once; `walk`'s `section!` makes from
//!   each the raw struct (every value with its span), its key list and its walk.
//! - `load`: read the file, parse the TOML, walk it into `schema`'s structs, reporting
//!   every unknown key and mistyped value.
//! - `spanned`: the shapes of a value as written, with its span (`Spanned`, `StrOrInt`, ...);
//!   `walk` makes them, knowing no key names (the message for an unknown key is `hints`',
//!   handed to the walk by `load`).
//! - `validate`, `validate_server`, `validate_location`, `validate_upstream`: defaults
//!   (`defaults`), units (`units`), templates (`template_parse`), addresses and cross references
//!   -> [`model`], reporting every problem. The files TLS names are checked through the
//!   `tls_files` hook.
//! - `hints`: what an unknown key or a file that is not TOML most likely meant (nginx's
//!   names, a key in the wrong table, an nginx configuration).
//! - `suggest`: "did you mean" for every list of valid choices.
//! - `summary`: the one-screen text of `ringlb check`.
//!
//! Errors are [`ConfigError`]s: `file:line:col: key.path: what is wrong and how to fix it`.

pub mod defaults;
mod error;
mod hints;
mod load;
pub mod model;
pub mod schema;
mod spanned;
mod suggest;
mod summary;
pub mod syntax;
mod template_parse;
pub mod tls_files;
pub mod units;
mod validate;
mod validate_location;
mod validate_server;
mod validate_upstream;
mod walk;

pub use error::ConfigError;
pub use load::{load, parse, parse_offline, structure_errors};
pub use model::*;
pub use summary::{check, summary};
pub use template_parse::parse_template;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_front_door;

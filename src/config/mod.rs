//! Configuration: the TOML file (`schema`), its loading with line/column spans (`load`),
//! whole-file validation into the typed model the runtime uses (`model`).

pub mod model;

pub use model::*;

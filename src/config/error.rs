//! `ConfigError`: one complaint about the file, with where it is and how to fix it.
//!
//! The loader and the validator collect [`Problem`]s (a byte span in the text, a key path
//! and a message); [`Problems::into_errors`] turns them into [`ConfigError`]s with 1-based
//! line and column, sorted by position, one per key path.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

/// One error in a configuration file.
///
/// Displays as `{file}:{line}:{col}: {key}: {message}`, e.g.
/// `config/ringlb.toml:14:9: upstream.django.servers[1].addr: "127.0.0.1:80x" is not host:port`.
/// When the error is about no key (a TOML syntax error, an unreadable file) the key part is
/// left out: `{file}:{line}:{col}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file as it was named (`path.display()`).
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    /// Key path, e.g. `upstream.django.servers[1].addr`; empty for syntax errors.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    /// An error about the file as a whole (cannot be read), placed at 1:1.
    pub fn whole_file(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: path.display().to_string(),
            line: 1,
            col: 1,
            key: String::new(),
            message: message.into(),
        }
    }
}

/// A complaint before it has a line and column: a byte span of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub span: Range<usize>,
    pub key: String,
    pub message: String,
}

/// Every problem found so far in one file.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub fn push(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            span,
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Line/column for each problem, sorted by position. Only the first complaint about a
    /// key path is kept: a value of the wrong type is reported once, not again as "missing".
    /// The loader records before the validator, so a type error wins over "missing".
    pub fn into_errors(self, text: &str, path: &Path) -> Vec<ConfigError> {
        let mut seen = HashSet::new();
        let mut list: Vec<Problem> = self
            .list
            .into_iter()
            .filter(|p| p.key.is_empty() || seen.insert(p.key.clone()))
            .collect();
        list.sort_by_key(|p| p.span.start);
        let file = path.display().to_string();
        let mut out = Vec::new();
        for p in list {
            let (line, col) = line_col(text, p.span.start);
            out.push(ConfigError {
                file: file.clone(),
                line,
                col,
                key: p.key,
                message: p.message,
            });
        }
        out
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, text.find('=').unwrap()), (1, 3));
        let second_eq = text.rfind('=').unwrap();
        assert_eq!(line_col(text, second_eq), (2, 4));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }

    #[test]
    fn display_has_file_line_col_key_message() {
        let e = ConfigError {
            file: "config/ringlb.toml".into(),
            line: 14,
            col: 9,
            key: "upstream.django.servers[1].addr".into(),
            message: "\"127.0.0.1:80x\" is not host:port".into(),
        };
        assert_eq!(
            e.to_string(),
            "config/ringlb.toml:14:9: upstream.django.servers[1].addr: \"127.0.0.1:80x\" is not host:port"
        );
        let syntax = ConfigError {
            key: String::new(),
            ..e
        };
        assert!(syntax
            .to_string()
            .starts_with("config/ringlb.toml:14:9: \"127"));
    }

    #[test]
    fn one_error_per_key_sorted_by_position() {
        let mut p = Problems::default();
        p.push(5..6, "b", "second");
        p.push(0..1, "a", "first");
        p.push(2..3, "b", "later complaint about the same key");
        let errs = p.into_errors("0123456789", Path::new("f.toml"));
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].key, "a");
        assert_eq!(errs[1].message, "second");
    }
}

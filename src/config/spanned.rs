//! The shapes a value of the file takes before validation, each with the byte range it
//! was read from: what `walk.rs` produces and `schema.rs`'s raw structs hold.

use std::ops::Range;

/// A value and the byte range of the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    span: Range<usize>,
    value: T,
}

impl<T> Spanned<T> {
    pub fn new(span: Range<usize>, value: T) -> Self {
        Spanned { span, value }
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    pub fn get_ref(&self) -> &T {
        &self.value
    }

    pub fn into_inner(self) -> T {
        self.value
    }
}

/// A value that may be written as a string or an integer (`workers = "auto" | 4`,
/// sizes `"10m" | 1048576`, health check `status = "200-399" | 200`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrOrInt {
    Int(i64),
    Str(String),
}

/// `listen`, `server_name` and other lists: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany {
    /// Written as a plain string; its span is the enclosing `Spanned`'s.
    One(String),
    Many(Vec<Spanned<String>>),
}

/// A TOML table kept in file order (`proxy_set_header` entries are sent in that order).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for OrderedMap<K, V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

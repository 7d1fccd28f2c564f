//! A walk over a spanned `toml_edit` tree that records every problem and goes on: unknown
//! keys (with "did you mean"), values of the wrong type. Nothing here knows ringlb's keys:
//! `schema.rs` lists them, one table per section, through [`section!`], which emits from
//! each table the raw struct, its key list and the walk that fills it with these readers.

use std::ops::Range;

use toml_edit::{Item, TableLike, Value};

use super::error::Problems;
use super::spanned::{OneOrMany, OrderedMap, Spanned, StrOrInt};

/// One section of the file, written once: the raw struct (every field optional, spanned),
/// `KEYS` (for "unknown key ... valid: ..."), and `walk`, which reads a table into the
/// struct, recording every unknown key and mistyped value.
///
/// Each field is `name: reader` or `name: reader(argument)`, optionally `name as "key"`
/// when the TOML key is not a Rust identifier. The reader is a [`Walker`] method that
/// reads one value (its type is the field's, see [`raw_type!`]), or one of the nested
/// forms `table(T)`, `tables(T)` (arrays of tables), `list(T)` (an array of tables that
/// may be absent, as `[[server]]`), `named(T)` (a table of named tables, as
/// `[upstream.NAME]`), where `T` is another section.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident $(as $key:literal)? : $reader:ident $(($($arg:tt)*))?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $crate::config::walk::raw_type!($reader $($($arg)*)?), )*
        }

        impl $name {
            /// Every key of this section, in the schema's order.
            pub const KEYS: &'static [&'static str] =
                &[$($crate::config::walk::key_name!($field $($key)?)),*];

            /// Reads table `t` (spanning `span`, at key path `path`).
            pub(crate) fn walk(
                w: &mut $crate::config::walk::Walker<'_>,
                t: &dyn toml_edit::TableLike,
                span: &std::ops::Range<usize>,
                path: &str,
            ) -> Self {
                let mut out = Self::default();
                for e in $crate::config::walk::entries(t, span) {
                    let p = $crate::config::walk::join(path, e.name);
                    $(
                        if e.name == $crate::config::walk::key_name!($field $($key)?) {
                            out.$field =
                                $crate::config::walk::read_value!(w, e, p, $reader $($($arg)*)?);
                            continue;
                        }
                    )*
                    w.unknown(&e, path, Self::KEYS);
                }
                out
            }
        }
    };
}

/// The TOML key of a field: its name, or the `as "key"` given.
macro_rules! key_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $key:literal) => {
        $key
    };
}

/// The raw type each reader yields.
macro_rules! raw_type {
    (string) => { Option<$crate::config::spanned::Spanned<String>> };
    (duration) => {
        Option<$crate::config::spanned::Spanned<$crate::config::spanned::StrOrInt>>
    };
    (boolean) => { Option<$crate::config::spanned::Spanned<bool>> };
    (integer) => { Option<$crate::config::spanned::Spanned<i64>> };
    (float) => { Option<$crate::config::spanned::Spanned<f64>> };
    (str_or_int $expected:literal) => {
        Option<$crate::config::spanned::Spanned<$crate::config::spanned::StrOrInt>>
    };
    (strings) => {
        Option<$crate::config::spanned::Spanned<Vec<$crate::config::spanned::Spanned<String>>>>
    };
    (one_or_many) => {
        Option<$crate::config::spanned::Spanned<$crate::config::spanned::OneOrMany>>
    };
    (string_map) => {
        Option<$crate::config::spanned::Spanned<$crate::config::spanned::OrderedMap<
            $crate::config::spanned::Spanned<String>,
            $crate::config::spanned::Spanned<String>,
        >>>
    };
    (table $t:ty) => { Option<$crate::config::spanned::Spanned<$t>> };
    (tables $t:ty) => {
        Option<$crate::config::spanned::Spanned<Vec<$crate::config::spanned::Spanned<$t>>>>
    };
    (list $t:ty) => { Vec<$crate::config::spanned::Spanned<$t>> };
    (named $t:ty) => {
        $crate::config::spanned::OrderedMap<
            $crate::config::spanned::Spanned<String>,
            $crate::config::spanned::Spanned<$t>,
        >
    };
}

/// Reads entry `e` (at key path `p`) with walker `w`.
macro_rules! read_value {
    ($w:ident, $e:ident, $p:ident, table $t:ty) => {
        $w.table(&$e, &$p, <$t>::walk)
    };
    ($w:ident, $e:ident, $p:ident, tables $t:ty) => {
        $w.tables(&$e, &$p, <$t>::walk)
    };
    ($w:ident, $e:ident, $p:ident, list $t:ty) => {
        $w.tables(&$e, &$p, <$t>::walk)
            .map($crate::config::spanned::Spanned::into_inner)
            .unwrap_or_default()
    };
    ($w:ident, $e:ident, $p:ident, named $t:ty) => {
        $w.named(&$e, &$p, <$t>::walk)
    };
    ($w:ident, $e:ident, $p:ident, $reader:ident $($arg:literal)?) => {
        $w.$reader(&$e, &$p $(, $arg)?)
    };
}

pub(crate) use {key_name, raw_type, read_value, section};

pub(crate) struct Walker<'p> {
    pub problems: &'p mut Problems,
    /// The message for an unknown key among the valid ones of its table. The walk knows no
    /// key names; the caller supplies what it knows of them (`hints::unknown_key`).
    pub unknown_key: fn(key: &str, valid: &[&str]) -> String,
}

/// One `key = value` of a table: the key's name, its value and the key's span.
pub(crate) struct KeyEntry<'a> {
    pub name: &'a str,
    pub item: &'a Item,
    pub key_span: Range<usize>,
}

impl KeyEntry<'_> {
    /// Where a complaint about the value goes: the value itself, or its key.
    pub fn at(&self) -> Range<usize> {
        self.item.span().unwrap_or_else(|| self.key_span.clone())
    }
}

pub(crate) fn entries<'a>(t: &'a dyn TableLike, table_span: &Range<usize>) -> Vec<KeyEntry<'a>> {
    t.iter()
        .map(|(name, item)| KeyEntry {
            name,
            item,
            key_span: t
                .key(name)
                .and_then(|k| k.span())
                .unwrap_or_else(|| table_span.clone()),
        })
        .collect()
}

/// `a.b` with `b` quoted when it is not a bare TOML key.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) | Item::Value(Value::InlineTable(_)) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => match v {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::InlineTable(_) => "a table",
        },
    }
}

impl Walker<'_> {
    pub fn unknown(&mut self, e: &KeyEntry<'_>, path: &str, valid: &[&str]) {
        self.problems.push(
            e.key_span.clone(),
            join(path, e.name),
            (self.unknown_key)(e.name, valid),
        );
    }

    pub fn wrong_type(&mut self, at: Range<usize>, path: &str, expected: &str, item: &Item) {
        self.problems.push(
            at,
            path,
            format!("expected {expected}, found {}", describe(item)),
        );
    }

    /// A scalar value converted by `f`; a complaint naming `expected` when `f` says no.
    pub fn scalar<T>(
        &mut self,
        e: &KeyEntry<'_>,
        path: &str,
        expected: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Option<Spanned<T>> {
        self.value_as(e.item, e.at(), path, expected, f)
    }

    pub fn value_as<T>(
        &mut self,
        item: &Item,
        at: Range<usize>,
        path: &str,
        expected: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Option<Spanned<T>> {
        match item.as_value().and_then(&f) {
            Some(v) => Some(Spanned::new(at, v)),
            None => {
                self.wrong_type(at, path, expected, item);
                None
            }
        }
    }

    pub fn string(&mut self, e: &KeyEntry<'_>, path: &str) -> Option<Spanned<String>> {
        self.scalar(e, path, "a string", |v| v.as_str().map(str::to_owned))
    }

    /// A duration: a string with units (`"2s"`, `"1m30s"`) or a number of seconds, as an
    /// integer or a string (nginx's rule: `2` and `"2"` are both two seconds).
    pub fn duration(&mut self, e: &KeyEntry<'_>, path: &str) -> Option<Spanned<StrOrInt>> {
        self.str_or_int(
            e,
            path,
            "a duration such as \"2s\", \"500ms\", \"1m30s\" or a number of seconds",
        )
    }

    pub fn boolean(&mut self, e: &KeyEntry<'_>, path: &str) -> Option<Spanned<bool>> {
        self.scalar(e, path, "true or false", Value::as_bool)
    }

    pub fn integer(&mut self, e: &KeyEntry<'_>, path: &str) -> Option<Spanned<i64>> {
        self.scalar(e, path, "an integer", Value::as_integer)
    }

    pub fn float(&mut self, e: &KeyEntry<'_>, path: &str) -> Option<Spanned<f64>> {
        self.scalar(e, path, "a number", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
        })
    }

    pub fn str_or_int(
        &mut self,
        e: &KeyEntry<'_>,
        path: &str,
        expected: &str,
    ) -> Option<Spanned<StrOrInt>> {
        self.scalar(e, path, expected, |v| match v {
            Value::String(s) => Some(StrOrInt::Str(s.value().clone())),
            Value::Integer(i) => Some(StrOrInt::Int(*i.value())),
            _ => None,
        })
    }

    pub fn strings(
        &mut self,
        e: &KeyEntry<'_>,
        path: &str,
    ) -> Option<Spanned<Vec<Spanned<String>>>> {
        let Some(Value::Array(arr)) = e.item.as_value() else {
            self.wrong_type(e.at(), path, "an array of strings", e.item);
            return None;
        };
        let mut out = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            let at = v.span().unwrap_or_else(|| e.at());
            match v.as_str() {
                Some(s) => out.push(Spanned::new(at, s.to_owned())),
                None => self.problems.push(
                    at,
                    format!("{path}[{i}]"),
                    format!(
                        "expected a string, found {}",
                        describe(&Item::Value(v.clone()))
                    ),
                ),
            }
        }
        Some(Spanned::new(e.at(), out))
    }

    pub fn one_or_many(&mut self, e: &KeyEntry<'_>, path: &str) -> Option<Spanned<OneOrMany>> {
        if let Some(s) = e.item.as_str() {
            return Some(Spanned::new(e.at(), OneOrMany::One(s.to_owned())));
        }
        if !matches!(e.item.as_value(), Some(Value::Array(_))) {
            self.wrong_type(e.at(), path, "a string or an array of strings", e.item);
            return None;
        }
        let list = self.strings(e, path)?;
        let span = list.span();
        Some(Spanned::new(span, OneOrMany::Many(list.into_inner())))
    }

    /// A table (`[x]` or `{ ... }`) read by `read`.
    pub fn table<T>(
        &mut self,
        e: &KeyEntry<'_>,
        path: &str,
        read: impl FnOnce(&mut Self, &dyn TableLike, &Range<usize>, &str) -> T,
    ) -> Option<Spanned<T>> {
        match e.item.as_table_like() {
            Some(t) => {
                let at = e.at();
                Some(Spanned::new(at.clone(), read(self, t, &at, path)))
            }
            None => {
                self.wrong_type(e.at(), path, "a table", e.item);
                None
            }
        }
    }

    /// A table of strings kept in file order (`proxy_set_header`).
    pub fn string_map(
        &mut self,
        e: &KeyEntry<'_>,
        path: &str,
    ) -> Option<Spanned<OrderedMap<Spanned<String>, Spanned<String>>>> {
        self.table(e, path, |w, t, span, path| {
            let mut m = OrderedMap::default();
            for e in entries(t, span) {
                let p = join(path, e.name);
                if let Some(v) = w.string(&e, &p) {
                    m.0.push((Spanned::new(e.key_span.clone(), e.name.to_owned()), v));
                }
            }
            m
        })
    }

    /// A table of tables by name (`[upstream.NAME]`), in file order; absent or of the wrong
    /// type: empty (the type error is recorded).
    pub fn named<T>(
        &mut self,
        e: &KeyEntry<'_>,
        path: &str,
        mut read: impl FnMut(&mut Self, &dyn TableLike, &Range<usize>, &str) -> T,
    ) -> OrderedMap<Spanned<String>, Spanned<T>> {
        self.table(e, path, |w, t, span, path| {
            let mut m = OrderedMap::default();
            for e in entries(t, span) {
                let p = join(path, e.name);
                if let Some(v) = w.table(&e, &p, &mut read) {
                    m.0.push((Spanned::new(e.key_span.clone(), e.name.to_owned()), v));
                }
            }
            m
        })
        .map(Spanned::into_inner)
        .unwrap_or_default()
    }

    /// An array of tables, written `[[x]]` or `x = [{ ... }, { ... }]`.
    pub fn tables<T>(
        &mut self,
        e: &KeyEntry<'_>,
        path: &str,
        mut read: impl FnMut(&mut Self, &dyn TableLike, &Range<usize>, &str) -> T,
    ) -> Option<Spanned<Vec<Spanned<T>>>> {
        let mut out = Vec::new();
        match e.item {
            Item::ArrayOfTables(aot) => {
                for (i, t) in aot.iter().enumerate() {
                    let at = t.span().unwrap_or_else(|| e.at());
                    let p = format!("{path}[{i}]");
                    out.push(Spanned::new(at.clone(), read(self, t, &at, &p)));
                }
            }
            Item::Value(Value::Array(arr)) => {
                for (i, v) in arr.iter().enumerate() {
                    let at = v.span().unwrap_or_else(|| e.at());
                    let p = format!("{path}[{i}]");
                    match v.as_inline_table() {
                        Some(t) => out.push(Spanned::new(at.clone(), read(self, t, &at, &p))),
                        None => self.problems.push(
                            at,
                            p,
                            format!(
                                "expected a table such as {{ addr = \"host:port\" }}, found {}",
                                describe(&Item::Value(v.clone()))
                            ),
                        ),
                    }
                }
            }
            other => {
                self.wrong_type(e.at(), path, "an array of tables", other);
                return None;
            }
        }
        Some(Spanned::new(e.at(), out))
    }
}

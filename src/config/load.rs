//! File -> [`RawConfig`]: parse the TOML, then walk its spanned tree key by key.
//!
//! Walking the tree by hand (rather than `toml::from_str::<RawConfig>`) lets one pass report
//! every unknown key and every value of the wrong type, each with its line and column,
//! instead of stopping at the first. `validate.rs` then turns the raw structs into the
//! model, again collecting every problem.

use std::ops::Range;
use std::path::Path;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::error::{ConfigError, Problems};
use super::model::Config;
use super::schema::*;
use super::validate;

const TOP_KEYS: &[&str] = &["runtime", "admin", "server", "upstream"];
const RUNTIME_KEYS: &[&str] = &["workers", "pin_workers", "shutdown_timeout", "io"];
const ADMIN_KEYS: &[&str] = &["listen"];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "server_name",
    "client_header_timeout",
    "client_body_timeout",
    "keepalive_timeout",
    "keepalive_requests",
    "max_header_bytes",
    "max_body_bytes",
    "access_log",
    "location",
];
const LOCATION_KEYS: &[&str] = &["path", "proxy_pass", "proxy_set_header"];
const UPSTREAM_KEYS: &[&str] = &[
    "balance",
    "hash",
    "consistent",
    "keepalive",
    "keepalive_requests",
    "keepalive_timeout",
    "connect_timeout",
    "send_timeout",
    "read_timeout",
    "next_upstream",
    "next_upstream_tries",
    "next_upstream_timeout",
    "servers",
    "health_check",
    "hash_balance_factor",
    "ip_hash_prefix",
    "panic_threshold",
    "retry_budget",
    "queue",
    "queue_timeout",
];
const UPSTREAM_SERVER_KEYS: &[&str] = &[
    "addr",
    "weight",
    "max_fails",
    "fail_timeout",
    "max_conns",
    "backup",
    "down",
    "slow_start",
];
const HEALTH_CHECK_KEYS: &[&str] = &["path", "interval", "timeout", "fails", "passes", "status"];
const IP_HASH_PREFIX_KEYS: &[&str] = &["v4", "v6"];
const RETRY_BUDGET_KEYS: &[&str] = &["ratio", "min"];

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

/// Parses and validates `text`; `path` is only used to name the file in errors and is kept
/// in [`Config::path`] for reloads.
pub fn parse(text: &str, path: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut problems = Problems::default();
    let raw = read_raw(text, &mut problems);
    let config = raw.and_then(|raw| validate::build(&raw, path, &mut problems));
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems.into_errors(text, path)),
    }
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
    let mut w = Walker { problems };
    Some(w.config(doc.as_table()))
}

struct Walker<'p> {
    problems: &'p mut Problems,
}

/// One `key = value` of a table: the key's name, its value and the key's span.
struct Entry<'a> {
    name: &'a str,
    item: &'a Item,
    key_span: Range<usize>,
}

impl Entry<'_> {
    /// Where a complaint about the value goes: the value itself, or its key.
    fn at(&self) -> Range<usize> {
        self.item.span().unwrap_or_else(|| self.key_span.clone())
    }
}

fn entries<'a>(t: &'a dyn TableLike, table_span: &Range<usize>) -> Vec<Entry<'a>> {
    t.iter()
        .map(|(name, item)| Entry {
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

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `valid` to `word`, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, valid: &[&'a str]) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (distance(&word_lower, v), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 3) && *d < v.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// `one of: a, b, c` with a "did you mean" in front when one is close.
pub(crate) fn choices(word: &str, valid: &[&str]) -> String {
    let list = valid.join(", ");
    match did_you_mean(word, valid) {
        Some(close) => format!("did you mean `{close}`? (valid: {list})"),
        None => format!("valid: {list}"),
    }
}

impl Walker<'_> {
    fn unknown(&mut self, e: &Entry<'_>, path: &str, valid: &[&str]) {
        self.problems.push(
            e.key_span.clone(),
            join(path, e.name),
            format!("unknown key `{}`; {}", e.name, choices(e.name, valid)),
        );
    }

    fn wrong_type(&mut self, at: Range<usize>, path: &str, expected: &str, item: &Item) {
        self.problems.push(
            at,
            path,
            format!("expected {expected}, found {}", describe(item)),
        );
    }

    /// A scalar value converted by `f`; a complaint naming `expected` when `f` says no.
    fn scalar<T>(
        &mut self,
        e: &Entry<'_>,
        path: &str,
        expected: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Option<Spanned<T>> {
        self.value_as(e.item, e.at(), path, expected, f)
    }

    fn value_as<T>(
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

    fn string(&mut self, e: &Entry<'_>, path: &str) -> Option<Spanned<String>> {
        self.scalar(e, path, "a string", |v| v.as_str().map(str::to_owned))
    }

    fn duration(&mut self, e: &Entry<'_>, path: &str) -> Option<Spanned<String>> {
        self.scalar(
            e,
            path,
            "a duration string such as \"2s\" or \"500ms\"",
            |v| v.as_str().map(str::to_owned),
        )
    }

    fn boolean(&mut self, e: &Entry<'_>, path: &str) -> Option<Spanned<bool>> {
        self.scalar(e, path, "true or false", Value::as_bool)
    }

    fn integer(&mut self, e: &Entry<'_>, path: &str) -> Option<Spanned<i64>> {
        self.scalar(e, path, "an integer", Value::as_integer)
    }

    fn float(&mut self, e: &Entry<'_>, path: &str) -> Option<Spanned<f64>> {
        self.scalar(e, path, "a number", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
        })
    }

    fn str_or_int(
        &mut self,
        e: &Entry<'_>,
        path: &str,
        expected: &str,
    ) -> Option<Spanned<StrOrInt>> {
        self.scalar(e, path, expected, |v| match v {
            Value::String(s) => Some(StrOrInt::Str(s.value().clone())),
            Value::Integer(i) => Some(StrOrInt::Int(*i.value())),
            _ => None,
        })
    }

    fn strings(&mut self, e: &Entry<'_>, path: &str) -> Option<Spanned<Vec<Spanned<String>>>> {
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

    fn one_or_many(&mut self, e: &Entry<'_>, path: &str) -> Option<Spanned<OneOrMany>> {
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
    fn table<T>(
        &mut self,
        e: &Entry<'_>,
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

    /// An array of tables, written `[[x]]` or `x = [{ ... }, { ... }]`.
    fn tables<T>(
        &mut self,
        e: &Entry<'_>,
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

    fn config(&mut self, root: &toml_edit::Table) -> RawConfig {
        let mut c = RawConfig::default();
        let whole = 0..0;
        for e in entries(root, &whole) {
            let p = join("", e.name);
            match e.name {
                "runtime" => c.runtime = self.table(&e, &p, Self::runtime),
                "admin" => c.admin = self.table(&e, &p, Self::admin),
                "server" => {
                    c.server = self
                        .tables(&e, &p, Self::server)
                        .map(Spanned::into_inner)
                        .unwrap_or_default()
                }
                "upstream" => {
                    if let Some(ups) = self.table(&e, &p, Self::upstreams) {
                        c.upstream = ups.into_inner();
                    }
                }
                _ => self.unknown(&e, "", TOP_KEYS),
            }
        }
        c
    }

    fn runtime(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawRuntime {
        let mut r = RawRuntime::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "workers" => r.workers = self.str_or_int(&e, &p, "\"auto\" or a number of workers"),
                "pin_workers" => r.pin_workers = self.boolean(&e, &p),
                "shutdown_timeout" => r.shutdown_timeout = self.duration(&e, &p),
                "io" => r.io = self.string(&e, &p),
                _ => self.unknown(&e, path, RUNTIME_KEYS),
            }
        }
        r
    }

    fn admin(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawAdmin {
        let mut a = RawAdmin::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "listen" => a.listen = self.string(&e, &p),
                _ => self.unknown(&e, path, ADMIN_KEYS),
            }
        }
        a
    }

    fn server(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawServer {
        let mut s = RawServer::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "listen" => s.listen = self.one_or_many(&e, &p),
                "server_name" => s.server_name = self.one_or_many(&e, &p),
                "client_header_timeout" => s.client_header_timeout = self.duration(&e, &p),
                "client_body_timeout" => s.client_body_timeout = self.duration(&e, &p),
                "keepalive_timeout" => s.keepalive_timeout = self.duration(&e, &p),
                "keepalive_requests" => s.keepalive_requests = self.integer(&e, &p),
                "max_header_bytes" => {
                    s.max_header_bytes = self.str_or_int(&e, &p, "a size such as 16384 or \"16k\"")
                }
                "max_body_bytes" => {
                    s.max_body_bytes = self.str_or_int(&e, &p, "a size such as 0 or \"10m\"")
                }
                "access_log" => s.access_log = self.string(&e, &p),
                "location" => {
                    s.location = self
                        .tables(&e, &p, Self::location)
                        .map(Spanned::into_inner)
                        .unwrap_or_default()
                }
                _ => self.unknown(&e, path, SERVER_KEYS),
            }
        }
        s
    }

    fn location(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawLocation {
        let mut l = RawLocation::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "path" => l.path = self.string(&e, &p),
                "proxy_pass" => l.proxy_pass = self.string(&e, &p),
                "proxy_set_header" => l.proxy_set_header = self.table(&e, &p, Self::header_map),
                _ => self.unknown(&e, path, LOCATION_KEYS),
            }
        }
        l
    }

    fn header_map(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> OrderedMap<Spanned<String>, Spanned<String>> {
        let mut m = OrderedMap::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            if let Some(v) = self.string(&e, &p) {
                m.0.push((Spanned::new(e.key_span.clone(), e.name.to_owned()), v));
            }
        }
        m
    }

    fn upstreams(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> OrderedMap<Spanned<String>, Spanned<RawUpstream>> {
        let mut m = OrderedMap::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            if let Some(u) = self.table(&e, &p, Self::upstream) {
                m.0.push((Spanned::new(e.key_span.clone(), e.name.to_owned()), u));
            }
        }
        m
    }

    fn upstream(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawUpstream {
        let mut u = RawUpstream::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "balance" => u.balance = self.string(&e, &p),
                "hash" => u.hash = self.string(&e, &p),
                "consistent" => u.consistent = self.boolean(&e, &p),
                "keepalive" => u.keepalive = self.integer(&e, &p),
                "keepalive_requests" => u.keepalive_requests = self.integer(&e, &p),
                "keepalive_timeout" => u.keepalive_timeout = self.duration(&e, &p),
                "connect_timeout" => u.connect_timeout = self.duration(&e, &p),
                "send_timeout" => u.send_timeout = self.duration(&e, &p),
                "read_timeout" => u.read_timeout = self.duration(&e, &p),
                "next_upstream" => u.next_upstream = self.strings(&e, &p),
                "next_upstream_tries" => u.next_upstream_tries = self.integer(&e, &p),
                "next_upstream_timeout" => u.next_upstream_timeout = self.duration(&e, &p),
                "servers" => u.servers = self.tables(&e, &p, Self::upstream_server),
                "health_check" => u.health_check = self.table(&e, &p, Self::health_check),
                "hash_balance_factor" => u.hash_balance_factor = self.float(&e, &p),
                "ip_hash_prefix" => u.ip_hash_prefix = self.table(&e, &p, Self::ip_hash_prefix),
                "panic_threshold" => u.panic_threshold = self.integer(&e, &p),
                "retry_budget" => u.retry_budget = self.table(&e, &p, Self::retry_budget),
                "queue" => u.queue = self.integer(&e, &p),
                "queue_timeout" => u.queue_timeout = self.duration(&e, &p),
                _ => self.unknown(&e, path, UPSTREAM_KEYS),
            }
        }
        u
    }

    fn upstream_server(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawUpstreamServer {
        let mut s = RawUpstreamServer::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "addr" => s.addr = self.string(&e, &p),
                "weight" => s.weight = self.integer(&e, &p),
                "max_fails" => s.max_fails = self.integer(&e, &p),
                "fail_timeout" => s.fail_timeout = self.duration(&e, &p),
                "max_conns" => s.max_conns = self.integer(&e, &p),
                "backup" => s.backup = self.boolean(&e, &p),
                "down" => s.down = self.boolean(&e, &p),
                "slow_start" => s.slow_start = self.duration(&e, &p),
                _ => self.unknown(&e, path, UPSTREAM_SERVER_KEYS),
            }
        }
        s
    }

    fn health_check(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawHealthCheck {
        let mut h = RawHealthCheck::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "path" => h.path = self.string(&e, &p),
                "interval" => h.interval = self.duration(&e, &p),
                "timeout" => h.timeout = self.duration(&e, &p),
                "fails" => h.fails = self.integer(&e, &p),
                "passes" => h.passes = self.integer(&e, &p),
                "status" => {
                    h.status = self.str_or_int(&e, &p, "a status range such as \"200-399\" or 200")
                }
                _ => self.unknown(&e, path, HEALTH_CHECK_KEYS),
            }
        }
        h
    }

    fn ip_hash_prefix(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawIpHashPrefix {
        let mut x = RawIpHashPrefix::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "v4" => x.v4 = self.integer(&e, &p),
                "v6" => x.v6 = self.integer(&e, &p),
                _ => self.unknown(&e, path, IP_HASH_PREFIX_KEYS),
            }
        }
        x
    }

    fn retry_budget(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawRetryBudget {
        let mut r = RawRetryBudget::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "ratio" => r.ratio = self.float(&e, &p),
                "min" => r.min = self.integer(&e, &p),
                _ => self.unknown(&e, path, RETRY_BUDGET_KEYS),
            }
        }
        r
    }
}

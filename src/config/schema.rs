//! The TOML file as written: plain serde structs, every value with its span.
//!
//! These mirror SPEC.md's schema key for key (`deny_unknown_fields` everywhere), so
//! `toml::from_str::<RawConfig>` accepts exactly the files ringlb accepts structurally.
//! The loader (`load.rs`) fills the same structs by walking a spanned `toml_edit` tree
//! instead, so that it can report *every* unknown key or wrongly typed value, where serde
//! stops at the first; a test checks that both ways agree.
//!
//! Nothing here is checked beyond its TOML type: durations and sizes are still strings,
//! integers are `i64` (so that a negative number reaches `validate.rs` and gets a useful
//! message). Every key is optional here; `validate.rs` says which are required and holds
//! the defaults.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub runtime: Option<Spanned<RawRuntime>>,
    pub admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    pub server: Vec<Spanned<RawServer>>,
    #[serde(default)]
    pub upstream: OrderedMap<Spanned<String>, Spanned<RawUpstream>>,
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    /// `"auto"` or a number.
    pub workers: Option<Spanned<StrOrInt>>,
    pub pin_workers: Option<Spanned<bool>>,
    pub shutdown_timeout: Option<Spanned<String>>,
    pub io: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub temp_path: Option<Spanned<String>>,
    pub pid_file: Option<Spanned<String>>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
}

/// One `[[server]]` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<OneOrMany>>,
    pub server_name: Option<Spanned<OneOrMany>>,
    pub client_header_timeout: Option<Spanned<String>>,
    pub client_body_timeout: Option<Spanned<String>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    pub keepalive_requests: Option<Spanned<i64>>,
    pub max_header_bytes: Option<Spanned<StrOrInt>>,
    pub max_body_bytes: Option<Spanned<StrOrInt>>,
    /// A path or `"off"`.
    pub access_log: Option<Spanned<String>>,
    pub tls_certificate: Option<Spanned<String>>,
    pub tls_certificate_key: Option<Spanned<String>>,
    pub tls_protocols: Option<Spanned<Vec<Spanned<String>>>>,
    pub http2: Option<Spanned<bool>>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub real_ip_from: Option<Spanned<OneOrMany>>,
    pub real_ip_header: Option<Spanned<String>>,
    pub underscores_in_headers: Option<Spanned<bool>>,
    pub log_format: Option<Spanned<String>>,
    #[serde(default)]
    pub location: Vec<Spanned<RawLocation>>,
}

/// One `[[server.location]]` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub path: Option<Spanned<String>>,
    pub proxy_pass: Option<Spanned<String>>,
    /// Header name -> template, in file order.
    pub proxy_set_header: Option<Spanned<OrderedMap<Spanned<String>, Spanned<String>>>>,
    pub root: Option<Spanned<String>>,
    pub alias: Option<Spanned<String>>,
    pub index: Option<Spanned<OneOrMany>>,
    pub expires: Option<Spanned<String>>,
    #[serde(rename = "return")]
    pub return_: Option<Spanned<RawReturn>>,
    pub proxy_request_buffering: Option<Spanned<bool>>,
    pub proxy_buffering: Option<Spanned<bool>>,
    pub proxy_buffers: Option<Spanned<StrOrInt>>,
    pub proxy_max_temp_file_size: Option<Spanned<StrOrInt>>,
    pub max_body_bytes: Option<Spanned<StrOrInt>>,
    pub read_timeout: Option<Spanned<String>>,
    pub upgrade: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `return = { status, location | body }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReturn {
    pub status: Option<Spanned<i64>>,
    pub location: Option<Spanned<String>>,
    pub body: Option<Spanned<String>>,
}

/// One `[upstream.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub balance: Option<Spanned<String>>,
    pub hash: Option<Spanned<String>>,
    pub consistent: Option<Spanned<bool>>,
    pub keepalive: Option<Spanned<i64>>,
    pub keepalive_requests: Option<Spanned<i64>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub next_upstream: Option<Spanned<Vec<Spanned<String>>>>,
    pub next_upstream_tries: Option<Spanned<i64>>,
    pub next_upstream_timeout: Option<Spanned<String>>,
    pub servers: Option<Spanned<Vec<Spanned<RawUpstreamServer>>>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub hash_balance_factor: Option<Spanned<f64>>,
    pub ip_hash_prefix: Option<Spanned<RawIpHashPrefix>>,
    pub panic_threshold: Option<Spanned<i64>>,
    pub retry_budget: Option<Spanned<RawRetryBudget>>,
    pub queue: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<String>>,
}

/// One entry of an upstream's `servers`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamServer {
    pub addr: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub max_fails: Option<Spanned<i64>>,
    pub fail_timeout: Option<Spanned<String>>,
    pub max_conns: Option<Spanned<i64>>,
    pub backup: Option<Spanned<bool>>,
    pub down: Option<Spanned<bool>>,
    pub slow_start: Option<Spanned<String>>,
}

/// `[upstream.NAME.health_check]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub fails: Option<Spanned<i64>>,
    pub passes: Option<Spanned<i64>>,
    /// `"200-399"`, `"200"` or `200`.
    pub status: Option<Spanned<StrOrInt>>,
}

/// `ip_hash_prefix = { v4, v6 }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIpHashPrefix {
    pub v4: Option<Spanned<i64>>,
    pub v6: Option<Spanned<i64>>,
}

/// `retry_budget = { ratio, min }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBudget {
    pub ratio: Option<Spanned<f64>>,
    pub min: Option<Spanned<i64>>,
}

/// A value that may be written as a string or an integer (`workers = "auto" | 4`,
/// sizes `"10m" | 1048576`, health check `status = "200-399" | 200`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StrOrInt {
    Int(i64),
    Str(String),
}

/// `listen` and `server_name`: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany {
    /// Written as a plain string; its span is the enclosing `Spanned`'s.
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element()? {
                    v.push(s);
                }
                Ok(OneOrMany::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A TOML table kept in file order (`proxy_set_header` entries are sent in that order).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for OrderedMap<K, V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct M<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for M<K, V> {
            type Value = OrderedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    v.push(entry);
                }
                Ok(OrderedMap(v))
            }
        }
        d.deserialize_map(M(PhantomData))
    }
}

//! The TOML file as written: one table per section, every key once.
//!
//! Each `section!` (from `walk.rs`) below makes the raw struct (every value optional and
//! with its span), the section's key list and the walk that fills the struct from the
//! spanned `toml_edit` tree (`load.rs` starts it at the root). The walk reports *every*
//! unknown key or wrongly typed value with its position, where a serde derive would stop
//! at the first.
//!
//! Nothing here is checked beyond its TOML type: durations and sizes are still strings or
//! integers, integers are `i64` (so that a negative number reaches `validate.rs` and gets a useful
//! message). Every key is optional here; `validate.rs` says which are required and holds
//! the defaults.

pub use super::spanned::{OneOrMany, OrderedMap, Spanned, StrOrInt};
use super::walk::section;

section! {
    /// The whole file.
    pub struct RawConfig {
        runtime: table(RawRuntime),
        admin: table(RawAdmin),
        server: list(RawServer),
        upstream: named(RawUpstream),
    }
}

section! {
    /// `[runtime]`.
    pub struct RawRuntime {
        /// `"auto"` or a number.
        workers: str_or_int("\"auto\" or a number of workers"),
        pin_workers: boolean,
        shutdown_timeout: duration,
        io: string,
        max_connections: integer,
        temp_path: string,
        pid_file: string,
    }
}

section! {
    /// `[admin]`.
    pub struct RawAdmin {
        listen: string,
    }
}

section! {
    /// One `[[server]]` block.
    pub struct RawServer {
        listen: one_or_many,
        server_name: one_or_many,
        client_header_timeout: duration,
        client_body_timeout: duration,
        keepalive_timeout: duration,
        keepalive_requests: integer,
        max_header_bytes: str_or_int("a size such as 16384 or \"16k\""),
        max_body_bytes: str_or_int("a size such as 0 or \"10m\""),
        /// A path or `"off"`.
        access_log: string,
        tls_certificate: string,
        tls_certificate_key: string,
        tls_protocols: strings,
        http2: boolean,
        proxy_protocol: boolean,
        real_ip_from: one_or_many,
        real_ip_header: string,
        underscores_in_headers: boolean,
        log_format: string,
        location: list(RawLocation),
    }
}

section! {
    /// One `[[server.location]]` block.
    pub struct RawLocation {
        path: string,
        proxy_pass: string,
        /// Header name -> template, in file order.
        proxy_set_header: string_map,
        root: string,
        alias: string,
        index: one_or_many,
        expires: duration,
        return_ as "return": table(RawReturn),
        proxy_request_buffering: boolean,
        proxy_buffering: boolean,
        proxy_buffers: str_or_int("a size such as \"256k\""),
        proxy_max_temp_file_size: str_or_int("a size such as \"1g\""),
        max_body_bytes: str_or_int("a size such as 0 or \"10m\""),
        read_timeout: duration,
        upgrade: strings,
    }
}

section! {
    /// `return = { status, location | body }`.
    pub struct RawReturn {
        status: integer,
        location: string,
        body: string,
    }
}

section! {
    /// One `[upstream.NAME]` table.
    pub struct RawUpstream {
        balance: string,
        hash: string,
        consistent: boolean,
        keepalive: integer,
        keepalive_requests: integer,
        keepalive_timeout: duration,
        connect_timeout: duration,
        send_timeout: duration,
        read_timeout: duration,
        next_upstream: strings,
        next_upstream_tries: integer,
        next_upstream_timeout: duration,
        servers: tables(RawUpstreamServer),
        health_check: table(RawHealthCheck),
        hash_balance_factor: float,
        ip_hash_prefix: table(RawIpHashPrefix),
        panic_threshold: integer,
        retry_budget: table(RawRetryBudget),
        queue: integer,
        queue_timeout: duration,
    }
}

section! {
    /// One entry of an upstream's `servers`.
    pub struct RawUpstreamServer {
        addr: string,
        weight: integer,
        max_fails: integer,
        fail_timeout: duration,
        max_conns: integer,
        backup: boolean,
        down: boolean,
        slow_start: duration,
    }
}

section! {
    /// `[upstream.NAME.health_check]`.
    pub struct RawHealthCheck {
        path: string,
        interval: duration,
        timeout: duration,
        fails: integer,
        passes: integer,
        /// `"200-399"`, `"200"` or `200`.
        status: str_or_int("a status range such as \"200-399\" or 200"),
    }
}

section! {
    /// `ip_hash_prefix = { v4, v6 }`.
    pub struct RawIpHashPrefix {
        v4: integer,
        v6: integer,
    }
}

section! {
    /// `retry_budget = { ratio, min }`.
    pub struct RawRetryBudget {
        ratio: float,
        min: integer,
    }
}

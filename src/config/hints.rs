//! What an unknown key or an unreadable file most likely meant, for users who arrive from
//! nginx or put a key in the wrong table: nginx directive names mapped to ringlb's keys,
//! keys that belong to another section, and a whole file that is an nginx configuration.
//! `load.rs` hands [`unknown_key`] to the walk (the message for every unknown key) and asks
//! [`looks_like_nginx`] when a file is not TOML.

use super::schema::*;
use super::suggest::choices;

/// nginx directives (and `server` parameters) whose ringlb key has another name, or that
/// are spelt the same but live elsewhere in ringlb: (nginx name, ringlb key, where).
const NGINX_NAMES: &[(&str, &str, &str)] = &[
    (
        "client_max_body_size",
        "max_body_bytes",
        "[[server]] or [[server.location]]",
    ),
    (
        "proxy_read_timeout",
        "read_timeout",
        "[upstream.NAME] or [[server.location]]",
    ),
    (
        "proxy_connect_timeout",
        "connect_timeout",
        "[upstream.NAME]",
    ),
    ("proxy_send_timeout", "send_timeout", "[upstream.NAME]"),
    ("proxy_next_upstream", "next_upstream", "[upstream.NAME]"),
    (
        "proxy_next_upstream_tries",
        "next_upstream_tries",
        "[upstream.NAME]",
    ),
    (
        "proxy_next_upstream_timeout",
        "next_upstream_timeout",
        "[upstream.NAME]",
    ),
    ("proxy_temp_path", "temp_path", "[runtime]"),
    ("ssl_certificate", "tls_certificate", "[[server]]"),
    ("ssl_certificate_key", "tls_certificate_key", "[[server]]"),
    ("ssl_protocols", "tls_protocols", "[[server]]"),
    ("set_real_ip_from", "real_ip_from", "[[server]]"),
    (
        "large_client_header_buffers",
        "max_header_bytes",
        "[[server]]",
    ),
    (
        "client_header_buffer_size",
        "max_header_bytes",
        "[[server]]",
    ),
    ("worker_processes", "workers", "[runtime]"),
    ("worker_connections", "max_connections", "[runtime]"),
    ("worker_cpu_affinity", "pin_workers", "[runtime]"),
    ("worker_shutdown_timeout", "shutdown_timeout", "[runtime]"),
    ("pid", "pid_file", "[runtime]"),
    ("server", "servers", "[upstream.NAME]"),
    ("least_conn", "balance = \"least_conn\"", "[upstream.NAME]"),
    ("ip_hash", "balance = \"ip_hash\"", "[upstream.NAME]"),
    (
        "random",
        "balance = \"random_two_least_conn\"",
        "[upstream.NAME]",
    ),
];

/// nginx directives with nothing to set in ringlb, and why.
const NGINX_NOT_NEEDED: &[(&str, &str)] = &[
    (
        "proxy_http_version",
        "ringlb always speaks HTTP/1.1 to servers",
    ),
    (
        "error_log",
        "ringlb logs to stderr; set the level with RINGLB_LOG",
    ),
    (
        "real_ip_recursive",
        "ringlb always takes the last untrusted address, as nginx's `real_ip_recursive on`",
    ),
    (
        "sendfile",
        "ringlb sends files without copying wherever the kernel allows",
    ),
    ("tcp_nopush", "ringlb sets its socket options itself"),
    ("tcp_nodelay", "ringlb sets TCP_NODELAY on every connection"),
];

/// Each section's key list, with how to write where it lives.
fn sections() -> [(&'static str, &'static [&'static str]); 10] {
    [
        ("the top level", RawConfig::KEYS),
        ("[runtime]", RawRuntime::KEYS),
        ("[admin]", RawAdmin::KEYS),
        ("[[server]]", RawServer::KEYS),
        ("[[server.location]]", RawLocation::KEYS),
        ("[upstream.NAME]", RawUpstream::KEYS),
        (
            "each entry of an upstream's servers = [...]",
            RawUpstreamServer::KEYS,
        ),
        ("[upstream.NAME.health_check]", RawHealthCheck::KEYS),
        ("ip_hash_prefix = { ... }", RawIpHashPrefix::KEYS),
        ("retry_budget = { ... }", RawRetryBudget::KEYS),
    ]
}

/// The message for `key`, unknown among `valid` (the keys of the table it is in).
pub(crate) fn unknown_key(key: &str, valid: &[&str]) -> String {
    let list = valid.join(", ");
    if let Some((_, ours, home)) = NGINX_NAMES.iter().find(|(n, _, _)| *n == key) {
        let here = ours.split(' ').next().is_some_and(|k| valid.contains(&k));
        return if here {
            format!("unknown key `{key}`; did you mean `{ours}`? (nginx's {key} is ringlb's {ours}; valid: {list})")
        } else {
            format!("unknown key `{key}`; did you mean `{ours}` in {home}? (nginx's {key} is ringlb's {ours} there; valid here: {list})")
        };
    }
    if let Some((_, why)) = NGINX_NOT_NEEDED.iter().find(|(n, _)| *n == key) {
        if !valid.contains(&key) {
            return format!("unknown key `{key}`: nothing to set here, {why} (valid: {list})");
        }
    }
    let homes: Vec<&str> = sections()
        .iter()
        .filter(|(_, keys)| *keys != valid && keys.contains(&key))
        .map(|(home, _)| *home)
        .collect();
    if !homes.is_empty() {
        return format!(
            "unknown key `{key}`; `{key}` belongs in {} (valid here: {list})",
            homes.join(" or ")
        );
    }
    format!("unknown key `{key}`; {}", choices(key, valid))
}

/// When `text` (which is not valid TOML) reads like an nginx configuration, the 0-based
/// byte offset of the first line that says so.
pub(crate) fn looks_like_nginx(text: &str) -> Option<usize> {
    let mut offset = 0;
    let mut first_directive = None;
    let mut directives = 0;
    for raw_line in text.split_inclusive('\n') {
        let start = offset;
        offset += raw_line.len();
        let line = raw_line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let block = line.ends_with('{')
            && matches!(
                words[0],
                "http" | "events" | "stream" | "server" | "upstream" | "location" | "map" | "types"
            )
            && !line.contains('=');
        let known = matches!(
            words[0],
            "worker_processes" | "worker_connections" | "user" | "pid" | "error_log" | "include"
        );
        if block || (known && line.ends_with(';')) {
            return Some(start);
        }
        // `name value;` without `=`: a directive. Two of them make a file nginx's.
        if line.ends_with(';') && !line.contains('=') && words.len() >= 2 {
            directives += 1;
            first_directive.get_or_insert(start);
            if directives >= 2 {
                return first_directive;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_names_point_to_ringlb_keys() {
        let m = unknown_key("client_max_body_size", RawServer::KEYS);
        assert!(
            m.starts_with("unknown key `client_max_body_size`; did you mean `max_body_bytes`?"),
            "{m}"
        );
        let m = unknown_key("proxy_connect_timeout", RawLocation::KEYS);
        assert!(
            m.contains("did you mean `connect_timeout` in [upstream.NAME]?"),
            "{m}"
        );
        let m = unknown_key("worker_processes", RawConfig::KEYS);
        assert!(m.contains("did you mean `workers` in [runtime]?"), "{m}");
        let m = unknown_key("least_conn", RawUpstream::KEYS);
        assert!(
            m.contains("did you mean `balance = \"least_conn\"`?"),
            "{m}"
        );
        let m = unknown_key("proxy_http_version", RawLocation::KEYS);
        assert!(m.contains("always speaks HTTP/1.1"), "{m}");
    }

    #[test]
    fn a_key_of_another_section_says_where_it_belongs() {
        let m = unknown_key("max_fails", RawUpstream::KEYS);
        assert!(
            m.contains("`max_fails` belongs in each entry of an upstream's servers"),
            "{m}"
        );
        let m = unknown_key("keepalive_timeout", RawLocation::KEYS);
        assert!(
            m.contains("belongs in [[server]] or [upstream.NAME]"),
            "{m}"
        );
        let m = unknown_key("proxy_buffering", RawServer::KEYS);
        assert!(m.contains("belongs in [[server.location]]"), "{m}");
    }

    #[test]
    fn typos_still_get_the_closest_key() {
        assert_eq!(
            unknown_key("wieght", RawUpstreamServer::KEYS),
            "unknown key `wieght`; did you mean `weight`? (valid: addr, weight, max_fails, fail_timeout, max_conns, backup, down, slow_start)"
        );
    }

    #[test]
    fn nginx_files_are_recognised() {
        let conf = "# main\nuser www-data;\nworker_processes auto;\n";
        assert_eq!(looks_like_nginx(conf), Some(conf.find("user").unwrap()));
        let conf = "\nhttp {\n  server {\n";
        assert_eq!(looks_like_nginx(conf), Some(1));
        let conf = "upstream app {\n server 127.0.0.1:8000;\n}\n";
        assert_eq!(looks_like_nginx(conf), Some(0));
        let conf = "listen 80;\nserver_name example.com;\n";
        assert_eq!(looks_like_nginx(conf), Some(0));
        // Broken TOML is not nginx.
        assert_eq!(looks_like_nginx("[runtime]\nworkers = \n"), None);
        assert_eq!(looks_like_nginx("server = {\n"), None);
        assert_eq!(looks_like_nginx("a = 1;\n"), None);
    }
}

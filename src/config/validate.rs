//! [`RawConfig`] -> [`Config`]: defaults, units, addresses, cross references, and every
//! rule a file must satisfy. Each problem is recorded and checking goes on, so one run of
//! `ringlb check` lists everything that is wrong.
//!
//! `[[server]]` blocks are checked in `validate_server.rs`, upstreams in
//! `validate_upstream.rs`; this file has the entry point, the shared helpers, `[runtime]`
//! and `[admin]`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults as d;
use super::error::Problems;
use super::model::*;
use super::schema::*;
use super::suggest::choices;
use super::units::{parse_duration, parse_size};
use super::walk::join;

/// `runtime.workers` above this is surely a typo.
const MAX_WORKERS: i64 = 4096;
const IO_MODES: &[&str] = &["auto", "io_uring", "epoll"];

/// Builds the model. The result is only meaningful when no problem was recorded.
pub(crate) fn build(
    raw: &RawConfig,
    path: &Path,
    files: Files,
    problems: &mut Problems,
) -> Option<Config> {
    let mut v = Validator { problems, files };
    // Upstreams first: locations refer to them by index into the sorted list.
    let mut raw_ups: Vec<&(Spanned<String>, Spanned<RawUpstream>)> =
        raw.upstream.0.iter().collect();
    raw_ups.sort_by(|a, b| a.0.get_ref().cmp(b.0.get_ref()));
    let names: Vec<&str> = raw_ups.iter().map(|(n, _)| n.get_ref().as_str()).collect();
    let upstreams = raw_ups
        .iter()
        .map(|(name, u)| v.upstream(name, u))
        .collect();
    let runtime = v.runtime(raw.runtime.as_ref());
    let admin = raw.admin.as_ref().and_then(|a| v.admin(a));
    let servers = v.servers(&raw.server, &names);
    if let Some(admin) = &admin {
        v.admin_not_shared(admin, raw, &servers);
    }
    Some(Config {
        path: path.to_path_buf(),
        runtime,
        admin,
        servers,
        upstreams,
    })
}

pub(crate) struct Validator<'p> {
    pub problems: &'p mut Problems,
    pub files: Files,
}

/// Whether validation checks the files a configuration names (opens access logs, creating
/// them; reads TLS certificates and keys), as start-up, reload and `ringlb check` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    Check,
    Leave,
}

impl Validator<'_> {
    pub fn err(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.problems.push(span, key, message);
    }

    /// A required key is absent: the complaint goes on the table that lacks it.
    pub fn missing(&mut self, table: Range<usize>, path: &str, key: &str, example: &str) {
        self.err(
            table,
            &join(path, key),
            format!("missing `{key}`; add e.g. {key} = {example}"),
        );
    }

    /// A duration key: `"500ms"`, `"1m30s"`, or a bare number of seconds (integer or string,
    /// as in nginx); `default` when absent or wrong.
    pub fn duration(
        &mut self,
        value: &Option<Spanned<StrOrInt>>,
        path: &str,
        key: &str,
        default: Duration,
        zero_ok: bool,
    ) -> Duration {
        let Some(s) = value else { return default };
        let parsed = match s.get_ref() {
            StrOrInt::Int(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| format!("{n} is negative; a duration is 0 or more seconds")),
            StrOrInt::Str(text) => parse_duration(text),
        };
        match parsed {
            Ok(dur) if dur.is_zero() && !zero_ok => {
                self.err(
                    s.span(),
                    &join(path, key),
                    format!(
                        "must be longer than 0s; use e.g. \"{}\"",
                        super::units::format_duration(default)
                    ),
                );
                default
            }
            Ok(dur) => dur,
            Err(e) => {
                self.err(s.span(), &join(path, key), e);
                default
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn int(
        &mut self,
        value: &Option<Spanned<i64>>,
        path: &str,
        key: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        let Some(n) = value else { return default };
        let n_val = *n.get_ref();
        if (min..=max).contains(&n_val) {
            return n_val;
        }
        let message = if max == i64::from(u32::MAX) || max == i64::MAX {
            format!("{n_val} is out of range; must be at least {min}")
        } else {
            format!("{n_val} is out of range; must be between {min} and {max}")
        };
        self.err(n.span(), &join(path, key), message);
        default
    }

    pub fn size(
        &mut self,
        value: &Option<Spanned<StrOrInt>>,
        path: &str,
        key: &str,
        default: u64,
    ) -> u64 {
        let Some(s) = value else { return default };
        let parsed = match s.get_ref() {
            StrOrInt::Int(n) => {
                u64::try_from(*n).map_err(|_| format!("{n} is negative; a size is 0 or more bytes"))
            }
            StrOrInt::Str(text) => parse_size(text),
        };
        parsed.unwrap_or_else(|e| {
            self.err(s.span(), &join(path, key), e);
            default
        })
    }

    /// A file or directory path: any non-empty string without NUL (relative paths are
    /// relative to the working directory).
    pub fn path(&mut self, value: &Spanned<String>, key: &str) -> Option<PathBuf> {
        let p = value.get_ref();
        if p.trim().is_empty() {
            self.err(value.span(), key, "is empty; give a path");
            return None;
        }
        if p.contains('\0') {
            self.err(value.span(), key, "a path may not contain NUL");
            return None;
        }
        Some(PathBuf::from(p))
    }

    /// `host:port` resolved now; a name that does not resolve is an error at load time.
    pub fn socket_addr(&mut self, s: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match resolve(s.get_ref()) {
            Ok(a) => Some(a),
            Err(e) => {
                self.err(s.span(), key, e);
                None
            }
        }
    }

    fn runtime(&mut self, raw: Option<&Spanned<RawRuntime>>) -> RuntimeCfg {
        let empty = RawRuntime::default();
        let r = raw.map_or(&empty, |r| r.get_ref());
        let path = "runtime";
        let workers = match &r.workers {
            None => d::auto_workers(),
            Some(w) => match w.get_ref() {
                StrOrInt::Str(s) if s == "auto" => d::auto_workers(),
                StrOrInt::Int(n) if (1..=MAX_WORKERS).contains(n) => *n as usize,
                StrOrInt::Int(0) => {
                    self.err(
                        w.span(),
                        "runtime.workers",
                        "must be at least 1; use \"auto\" for one worker per allowed CPU",
                    );
                    1
                }
                other => {
                    let shown = match other {
                        StrOrInt::Int(n) => n.to_string(),
                        StrOrInt::Str(s) => format!("{s:?}"),
                    };
                    self.err(
                        w.span(),
                        "runtime.workers",
                        format!("{shown} is not a worker count; use \"auto\" or a number from 1 to {MAX_WORKERS}"),
                    );
                    1
                }
            },
        };
        let io = match &r.io {
            None => IoMode::Auto,
            Some(s) => match s.get_ref().as_str() {
                "auto" => IoMode::Auto,
                "io_uring" => IoMode::IoUring,
                "epoll" => IoMode::Epoll,
                other => {
                    self.err(
                        s.span(),
                        "runtime.io",
                        format!("unknown io mode {other:?}; {}", choices(other, IO_MODES)),
                    );
                    IoMode::Auto
                }
            },
        };
        RuntimeCfg {
            workers,
            pin_workers: r
                .pin_workers
                .as_ref()
                .map_or(d::PIN_WORKERS, |b| *b.get_ref()),
            shutdown_timeout: self.duration(
                &r.shutdown_timeout,
                path,
                "shutdown_timeout",
                d::SHUTDOWN_TIMEOUT,
                true,
            ),
            io,
            max_connections: self.int(
                &r.max_connections,
                path,
                "max_connections",
                d::MAX_CONNECTIONS as i64,
                1,
                i64::from(u32::MAX),
            ) as usize,
            temp_path: r
                .temp_path
                .as_ref()
                .and_then(|p| self.path(p, "runtime.temp_path"))
                .unwrap_or_else(d::temp_path),
            pid_file: r
                .pid_file
                .as_ref()
                .and_then(|p| self.path(p, "runtime.pid_file")),
        }
    }

    fn admin(&mut self, raw: &Spanned<RawAdmin>) -> Option<AdminCfg> {
        match &raw.get_ref().listen {
            Some(l) => self
                .socket_addr(l, "admin.listen")
                .map(|listen| AdminCfg { listen }),
            None => {
                self.missing(raw.span(), "admin", "listen", "\"127.0.0.1:9900\"");
                None
            }
        }
    }

    fn admin_not_shared(&mut self, admin: &AdminCfg, raw: &RawConfig, servers: &[VirtualServer]) {
        if servers.iter().any(|s| s.listen.contains(&admin.listen)) {
            let span = raw
                .admin
                .as_ref()
                .and_then(|a| a.get_ref().listen.as_ref())
                .map_or(0..0, |l| l.span());
            self.err(
                span,
                "admin.listen",
                format!(
                    "{} is also a [[server]] listen address; give the admin endpoint its own port",
                    admin.listen
                ),
            );
        }
    }
}

/// `host:port` (`[v6]:port` for IPv6) to one socket address. A name resolving to several
/// addresses uses the first (nginx would make one server of each).
pub(crate) fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let not_host_port = || {
        format!(
            "{text:?} is not host:port (e.g. \"127.0.0.1:8001\", \"[::1]:8001\", \"backend:8001\")"
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(not_host_port)?;
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let port: u16 = if port_ok {
        port.parse().map_err(|_| not_host_port())?
    } else {
        return Err(not_host_port());
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !host_ok {
        return Err(not_host_port());
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host {host:?} resolves to no address")),
        Err(e) => Err(format!(
            "cannot resolve host {host:?} ({e}); use an IP address or a name in /etc/hosts or DNS"
        )),
    }
}

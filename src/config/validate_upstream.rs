//! `[upstream.NAME]` -> [`UpstreamCfg`]: balance method and its options, servers, retries,
//! health checks. Part of `validate.rs`'s [`Validator`].

use std::collections::HashMap;
use std::ops::Range;

use super::defaults as d;
use super::model::*;
use super::schema::*;
use super::suggest::choices;
use super::template_parse::parse_template;
use super::validate::Validator;
use super::walk::join;

/// Every `balance` method.
pub const BALANCES: &[&str] = &[
    "round_robin",
    "least_conn",
    "ip_hash",
    "hash",
    "random_two_least_conn",
    "least_time",
];
/// Every `next_upstream` condition.
pub const NEXT_UPSTREAM: &[&str] = &[
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_429",
    "non_idempotent",
    "off",
];
/// nginx caps nothing, but a larger weight is surely a typo, and this keeps a ketama ring
/// (160 points per weight unit) and smooth round robin sums small.
pub const MAX_WEIGHT: i64 = 1000;
const U32: i64 = u32::MAX as i64;
/// `sockaddr_un.sun_path` holds 108 bytes with the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

impl Validator<'_> {
    pub(crate) fn upstream(
        &mut self,
        name: &Spanned<String>,
        raw: &Spanned<RawUpstream>,
    ) -> UpstreamCfg {
        let u = raw.get_ref();
        let path = join("upstream", name.get_ref());
        let p = path.as_str();
        if name.get_ref().trim().is_empty() {
            self.err(name.span(), p, "an upstream name may not be empty");
        }
        let balance = self.balance(u, p);
        let hash = match (&u.hash, balance) {
            (Some(h), Balance::Hash) => match parse_template(h.get_ref()) {
                Ok(t) if t.parts.iter().any(|x| matches!(x, TemplatePart::Var(_))) => Some(t),
                Ok(_) => {
                    self.err(h.span(), &join(p, "hash"), format!("{:?} has no $variable, so every request would go to the same server; e.g. \"$request_uri\"", h.get_ref()));
                    None
                }
                Err(e) => {
                    self.err(h.span(), &join(p, "hash"), e);
                    None
                }
            },
            (Some(h), _) => {
                self.err(h.span(), &join(p, "hash"), format!("`hash` only applies to balance = \"hash\" (this upstream uses {:?}); remove it or set balance = \"hash\"", balance.name()));
                None
            }
            (None, _) => None,
        };
        let consistent = match &u.consistent {
            Some(c) if *c.get_ref() && balance != Balance::Hash => {
                self.err(c.span(), &join(p, "consistent"), "`consistent` only applies to balance = \"hash\"; remove it or set balance = \"hash\" and a `hash` key");
                false
            }
            Some(c) => *c.get_ref(),
            None => false,
        };
        let hash_balance_factor = u.hash_balance_factor.as_ref().and_then(|f| {
            let v = *f.get_ref();
            if v.is_finite() && v > 1.0 {
                Some(v)
            } else {
                self.err(f.span(), &join(p, "hash_balance_factor"), format!("{v} must be greater than 1 (e.g. 1.25: no server gets more than 1.25x the average load)"));
                None
            }
        });
        let ip_hash_prefix = self.ip_hash_prefix(u.ip_hash_prefix.as_ref(), p);
        let panic_threshold = u
            .panic_threshold
            .as_ref()
            .map(|_| self.int(&u.panic_threshold, p, "panic_threshold", 0, 0, 100) as u8);
        let retry_budget = u.retry_budget.as_ref().map(|r| self.retry_budget(r, p));
        let queue = self.int(&u.queue, p, "queue", d::QUEUE as i64, 0, U32) as usize;
        let queue_timeout = self.duration(
            &u.queue_timeout,
            p,
            "queue_timeout",
            d::QUEUE_TIMEOUT,
            queue == 0,
        );
        UpstreamCfg {
            name: name.get_ref().clone(),
            balance,
            hash,
            consistent,
            keepalive: self.int(
                &u.keepalive,
                p,
                "keepalive",
                d::UPSTREAM_KEEPALIVE as i64,
                0,
                U32,
            ) as usize,
            keepalive_requests: self.int(
                &u.keepalive_requests,
                p,
                "keepalive_requests",
                d::UPSTREAM_KEEPALIVE_REQUESTS as i64,
                1,
                i64::MAX,
            ) as u64,
            keepalive_timeout: self.duration(
                &u.keepalive_timeout,
                p,
                "keepalive_timeout",
                d::UPSTREAM_KEEPALIVE_TIMEOUT,
                true,
            ),
            connect_timeout: self.duration(
                &u.connect_timeout,
                p,
                "connect_timeout",
                d::CONNECT_TIMEOUT,
                false,
            ),
            send_timeout: self.duration(&u.send_timeout, p, "send_timeout", d::SEND_TIMEOUT, false),
            read_timeout: self.duration(&u.read_timeout, p, "read_timeout", d::READ_TIMEOUT, false),
            next_upstream: self.next_upstream(&u.next_upstream, p),
            next_upstream_tries: self.int(
                &u.next_upstream_tries,
                p,
                "next_upstream_tries",
                i64::from(d::NEXT_UPSTREAM_TRIES),
                0,
                U32,
            ) as u32,
            next_upstream_timeout: self.duration(
                &u.next_upstream_timeout,
                p,
                "next_upstream_timeout",
                d::NEXT_UPSTREAM_TIMEOUT,
                true,
            ),
            servers: self.upstream_servers(&u.servers, raw.span(), p),
            health_check: u
                .health_check
                .as_ref()
                .map(|h| self.health_check(h, &join(p, "health_check"))),
            hash_balance_factor,
            ip_hash_prefix,
            panic_threshold,
            retry_budget,
            queue,
            queue_timeout,
        }
    }

    fn balance(&mut self, u: &RawUpstream, p: &str) -> Balance {
        let Some(b) = &u.balance else {
            return Balance::RoundRobin;
        };
        let balance = match b.get_ref().as_str() {
            "round_robin" => Balance::RoundRobin,
            "least_conn" => Balance::LeastConn,
            "ip_hash" => Balance::IpHash,
            "hash" => Balance::Hash,
            "random_two_least_conn" => Balance::RandomTwoLeastConn,
            "least_time" => Balance::LeastTime,
            other => {
                self.err(
                    b.span(),
                    &join(p, "balance"),
                    format!(
                        "unknown balance method {other:?}; {}",
                        choices(other, BALANCES)
                    ),
                );
                return Balance::RoundRobin;
            }
        };
        if balance == Balance::Hash && u.hash.is_none() {
            self.err(
                b.span(),
                &join(p, "balance"),
                "balance = \"hash\" needs a `hash` key; add e.g. hash = \"$request_uri\"",
            );
        }
        balance
    }

    fn ip_hash_prefix(&mut self, raw: Option<&Spanned<RawIpHashPrefix>>, p: &str) -> IpHashPrefix {
        let def = IpHashPrefix::default();
        let Some(raw) = raw else { return def };
        let path = join(p, "ip_hash_prefix");
        let r = raw.get_ref();
        IpHashPrefix {
            v4: self.int(&r.v4, &path, "v4", def.v4.into(), 1, 32) as u8,
            v6: self.int(&r.v6, &path, "v6", def.v6.into(), 1, 128) as u8,
        }
    }

    fn retry_budget(&mut self, raw: &Spanned<RawRetryBudget>, p: &str) -> RetryBudget {
        let path = join(p, "retry_budget");
        let r = raw.get_ref();
        let ratio = match &r.ratio {
            None => d::RETRY_BUDGET_RATIO,
            Some(x) if *x.get_ref() > 0.0 && *x.get_ref() <= 1.0 => *x.get_ref(),
            Some(x) => {
                self.err(x.span(), &join(&path, "ratio"), format!("{} must be more than 0 and at most 1 (e.g. 0.2: retries at most 20% of active requests)", x.get_ref()));
                d::RETRY_BUDGET_RATIO
            }
        };
        RetryBudget {
            ratio,
            min: self.int(&r.min, &path, "min", i64::from(d::RETRY_BUDGET_MIN), 0, U32) as u32,
        }
    }

    fn next_upstream(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        p: &str,
    ) -> NextUpstream {
        let Some(list) = raw else {
            return NextUpstream {
                error: true,
                timeout: true,
                ..NextUpstream::default()
            };
        };
        let mut n = NextUpstream::default();
        let has_off = list.get_ref().iter().any(|c| c.get_ref() == "off");
        for (i, c) in list.get_ref().iter().enumerate() {
            let key = format!("{}[{i}]", join(p, "next_upstream"));
            let flag = match c.get_ref().as_str() {
                "error" => &mut n.error,
                "timeout" => &mut n.timeout,
                "invalid_header" => &mut n.invalid_header,
                "http_500" => &mut n.http_500,
                "http_502" => &mut n.http_502,
                "http_503" => &mut n.http_503,
                "http_504" => &mut n.http_504,
                "http_429" => &mut n.http_429,
                "non_idempotent" => &mut n.non_idempotent,
                "off" => continue,
                other => {
                    self.err(
                        c.span(),
                        &key,
                        format!(
                            "unknown next_upstream condition {other:?}; {}",
                            choices(other, NEXT_UPSTREAM)
                        ),
                    );
                    continue;
                }
            };
            *flag = true;
            if has_off {
                self.err(c.span(), &key, "\"off\" turns retries off and can not be combined with other conditions; use [\"off\"] alone");
            }
        }
        n
    }

    fn upstream_servers(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<RawUpstreamServer>>>>,
        table: Range<usize>,
        p: &str,
    ) -> Vec<ServerCfg> {
        let path = join(p, "servers");
        let example = "servers = [{ addr = \"127.0.0.1:8001\" }]";
        let list = match raw {
            Some(l) if !l.get_ref().is_empty() => l,
            Some(l) => {
                self.err(
                    l.span(),
                    &path,
                    format!("is empty; an upstream needs at least one server, e.g. {example}"),
                );
                return Vec::new();
            }
            None => {
                self.err(
                    table,
                    &path,
                    format!(
                        "missing `servers`; an upstream needs at least one server, e.g. {example}"
                    ),
                );
                return Vec::new();
            }
        };
        let mut primary = Vec::new();
        let mut backup = Vec::new();
        let mut seen: HashMap<ServerAddr, usize> = HashMap::new();
        for (i, s) in list.get_ref().iter().enumerate() {
            let sp = format!("{path}[{i}]");
            let Some(server) = self.upstream_server(s, &sp) else {
                continue;
            };
            if let Some(first) = seen.insert(server.addr.clone(), i) {
                let span = s.get_ref().addr.as_ref().map_or(s.span(), |a| a.span());
                self.err(span, &join(&sp, "addr"), format!("{:?} ({}) is already {path}[{first}]; list each server once and use weight to give it more traffic", server.name, server.addr));
                continue;
            }
            if server.backup {
                backup.push(server);
            } else {
                primary.push(server);
            }
        }
        if primary.is_empty() && !backup.is_empty() {
            self.err(list.span(), &path, "every server is a backup; at least one must be a primary (remove `backup = true` from one)");
        }
        primary.extend(backup);
        primary
    }

    fn upstream_server(&mut self, raw: &Spanned<RawUpstreamServer>, sp: &str) -> Option<ServerCfg> {
        let s = raw.get_ref();
        let addr_key = join(sp, "addr");
        let addr = match &s.addr {
            None => {
                self.missing(raw.span(), sp, "addr", "\"127.0.0.1:8001\"");
                None
            }
            Some(a) if a.get_ref().starts_with("unix:") => self.unix_addr(a, &addr_key),
            Some(a) => match self.socket_addr(a, &addr_key) {
                Some(x) if x.port() == 0 => {
                    self.err(
                        a.span(),
                        &addr_key,
                        format!(
                            "{:?} has port 0; give the port the server listens on",
                            a.get_ref()
                        ),
                    );
                    None
                }
                other => other.map(ServerAddr::Inet),
            },
        };
        let weight = self.int(&s.weight, sp, "weight", i64::from(d::WEIGHT), 1, MAX_WEIGHT) as u32;
        let max_fails = self.int(
            &s.max_fails,
            sp,
            "max_fails",
            i64::from(d::MAX_FAILS),
            0,
            U32,
        ) as u32;
        let fail_timeout =
            self.duration(&s.fail_timeout, sp, "fail_timeout", d::FAIL_TIMEOUT, true);
        let max_conns = self.int(
            &s.max_conns,
            sp,
            "max_conns",
            i64::from(d::MAX_CONNS),
            0,
            U32,
        ) as u32;
        let slow_start = self.duration(&s.slow_start, sp, "slow_start", d::SLOW_START, true);
        Some(ServerCfg {
            addr: addr?,
            name: s
                .addr
                .as_ref()
                .map(|a| a.get_ref().clone())
                .unwrap_or_default(),
            weight,
            max_fails,
            fail_timeout,
            max_conns,
            backup: s.backup.as_ref().is_some_and(|b| *b.get_ref()),
            down: s.down.as_ref().is_some_and(|b| *b.get_ref()),
            slow_start,
        })
    }

    /// `unix:/path`: the path as written (the socket may appear after the check).
    fn unix_addr(&mut self, a: &Spanned<String>, key: &str) -> Option<ServerAddr> {
        let path = a.get_ref()["unix:".len()..].trim();
        let problem = if path.is_empty() {
            "has no path; write e.g. \"unix:/run/gunicorn.sock\"".to_owned()
        } else if path.contains('\0') {
            "a path may not contain NUL".to_owned()
        } else if path.len() > MAX_UNIX_PATH {
            format!(
                "the socket path is {} bytes; a unix socket path has at most {MAX_UNIX_PATH}",
                path.len()
            )
        } else {
            return Some(ServerAddr::Unix(path.into()));
        };
        self.err(a.span(), key, problem);
        None
    }

    fn health_check(&mut self, raw: &Spanned<RawHealthCheck>, p: &str) -> HealthCheckCfg {
        let h = raw.get_ref();
        let path = match &h.path {
            None => d::HEALTH_PATH.to_owned(),
            Some(x) if x.get_ref().starts_with('/') => x.get_ref().clone(),
            Some(x) => {
                self.err(
                    x.span(),
                    &join(p, "path"),
                    format!("{:?} must start with \"/\"", x.get_ref()),
                );
                d::HEALTH_PATH.to_owned()
            }
        };
        let status = match &h.status {
            None => d::HEALTH_STATUS,
            Some(s) => parse_status(s.get_ref()).unwrap_or_else(|e| {
                self.err(s.span(), &join(p, "status"), e);
                d::HEALTH_STATUS
            }),
        };
        HealthCheckCfg {
            path,
            interval: self.duration(&h.interval, p, "interval", d::HEALTH_INTERVAL, false),
            timeout: self.duration(&h.timeout, p, "timeout", d::HEALTH_TIMEOUT, false),
            fails: self.int(&h.fails, p, "fails", i64::from(d::HEALTH_FAILS), 1, U32) as u32,
            passes: self.int(&h.passes, p, "passes", i64::from(d::HEALTH_PASSES), 1, U32) as u32,
            status,
        }
    }
}

/// `"200-399"`, `"200"` or `200` -> an inclusive range of HTTP statuses.
fn parse_status(s: &StrOrInt) -> Result<(u16, u16), String> {
    let text = match s {
        StrOrInt::Int(n) => n.to_string(),
        StrOrInt::Str(t) => t.trim().to_owned(),
    };
    let bad = || {
        format!("{text:?} is not a status or status range; write e.g. \"200-399\" or \"200\" (statuses are 100 to 599)")
    };
    let one = |x: &str| -> Result<u16, String> {
        let n: u16 = x.trim().parse().map_err(|_| bad())?;
        if (100..=599).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let n = one(&text)?;
            (n, n)
        }
    };
    if lo > hi {
        return Err(format!(
            "{text:?} is an empty range; write the lower status first, e.g. \"{hi}-{lo}\""
        ));
    }
    Ok((lo, hi))
}

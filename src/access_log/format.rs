//! Access log formats (`log_format`), parsed once when the configuration is loaded and
//! written into a worker's reused buffer per request: a template of nginx variables (the
//! default, `combined`, is one), or JSON lines.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::{Captured, HeaderSlot, Record, MAX_HEADERS};
use crate::config::syntax::{pieces, Piece};

/// The default format: nginx's `combined` followed by four of its upstream variables.
pub const COMBINED: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status \
                            $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \
                            $upstream_addr $upstream_status $request_time $upstream_response_time";
/// Formats that have a name instead of a template.
pub const NAMES: [&str; 2] = ["combined", "json"];
/// Every variable a template may use, for error messages.
pub const VARIABLES: &[&str] = &[
    "$remote_addr",
    "$remote_port",
    "$remote_user",
    "$time_local",
    "$time_iso8601",
    "$msec",
    "$request",
    "$request_method",
    "$request_uri",
    "$uri",
    "$args",
    "$query_string",
    "$server_protocol",
    "$scheme",
    "$host",
    "$status",
    "$body_bytes_sent",
    "$bytes_sent",
    "$request_time",
    "$http_referer",
    "$http_user_agent",
    "$http_<name>",
    "$upstream_addr",
    "$upstream_status",
    "$upstream_response_time",
    "$pid",
];

/// A parsed `log_format`. Two formats are equal when written the same way.
#[derive(Debug, Clone)]
pub struct LogFormat {
    /// As written in the configuration.
    source: String,
    kind: Kind,
    /// Lower-case names (`x-forwarded-for`) of the `$http_<name>` headers the format logs,
    /// besides Referer and User-Agent, in slot order.
    headers: Vec<String>,
}

impl PartialEq for LogFormat {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl PartialEq<&str> for LogFormat {
    fn eq(&self, other: &&str) -> bool {
        self.source == *other
    }
}

/// The format as written.
impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Default for LogFormat {
    fn default() -> Self {
        LogFormat::parse("combined").expect("the combined format parses")
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Template(Vec<Part>),
    Json,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(Box<[u8]>),
    Var(LogVar),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogVar {
    RemoteAddr,
    RemotePort,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Scheme,
    Host,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestTime,
    Referer,
    UserAgent,
    /// Index into `LogFormat::headers`.
    Header(usize),
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseTime,
    Pid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown variable `${0}` in the access log format")]
    UnknownVariable(String),
    #[error("{0}")]
    Syntax(String),
}

impl FormatError {
    /// The unknown variable, `$`-prefixed as in `VARIABLES`, for a "did you mean".
    pub fn unknown_variable(&self) -> Option<String> {
        match self {
            FormatError::UnknownVariable(name) => Some(format!("${name}")),
            FormatError::Syntax(_) => None,
        }
    }
}

impl LogFormat {
    /// `"combined"`, `"json"`, or a template of variables.
    pub fn parse(text: &str) -> Result<LogFormat, FormatError> {
        let (kind, headers) = match text {
            "json" => (Kind::Json, Vec::new()),
            "combined" => template(COMBINED)?,
            _ if !text.contains('$') => {
                return Err(FormatError::Syntax(format!(
                    "{text:?} is neither a format name ({}) nor a template with variables \
                     (e.g. \"$remote_addr [$time_local] \\\"$request\\\" $status\")",
                    NAMES.join(", ")
                )))
            }
            _ => template(text)?,
        };
        Ok(LogFormat {
            source: text.to_owned(),
            kind,
            headers,
        })
    }

    /// The format as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where to keep the value of request header `name` (any case), if the format logs it.
    pub fn slot(&self, name: &[u8]) -> Option<HeaderSlot> {
        if name.eq_ignore_ascii_case(b"referer") {
            Some(HeaderSlot::Referer)
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            Some(HeaderSlot::UserAgent)
        } else {
            self.headers
                .iter()
                .position(|h| name.eq_ignore_ascii_case(h.as_bytes()))
                .map(HeaderSlot::Other)
        }
    }

    /// Appends one line for `r`.
    pub fn write(&self, out: &mut Vec<u8>, now: &Stamp<'_>, r: &Record<'_>) {
        match &self.kind {
            Kind::Template(parts) => {
                for part in parts {
                    match part {
                        Part::Literal(l) => out.extend_from_slice(l),
                        Part::Var(v) => write_var(out, *v, now, r),
                    }
                }
            }
            Kind::Json => json_line(out, now, r),
        }
        out.push(b'\n');
    }
}

/// A template of variables in the syntax of every ringlb template (`config::syntax`).
fn template(text: &str) -> Result<(Kind, Vec<String>), FormatError> {
    if text.contains(['\n', '\r']) {
        return Err(FormatError::Syntax(
            "a line break in the format would split one request's line in two".into(),
        ));
    }
    let mut parts = Vec::new();
    let mut headers: Vec<String> = Vec::new();
    for piece in pieces(text).map_err(FormatError::Syntax)? {
        parts.push(match piece {
            Piece::Text(t) => Part::Literal(t.as_bytes().into()),
            Piece::Name(n) => Part::Var(variable(n, &mut headers)?),
        });
    }
    Ok((Kind::Template(parts), headers))
}

fn variable(name: &str, headers: &mut Vec<String>) -> Result<LogVar, FormatError> {
    use LogVar::*;
    Ok(match name {
        "remote_addr" => RemoteAddr,
        "remote_port" => RemotePort,
        "remote_user" => RemoteUser,
        "time_local" => TimeLocal,
        "time_iso8601" => TimeIso8601,
        "msec" => Msec,
        "request" => Request,
        "request_method" => RequestMethod,
        "request_uri" => RequestUri,
        "uri" => Uri,
        "args" | "query_string" => Args,
        "server_protocol" => ServerProtocol,
        "scheme" => Scheme,
        "host" => Host,
        "status" => Status,
        "body_bytes_sent" => BodyBytesSent,
        "bytes_sent" => BytesSent,
        "request_time" => RequestTime,
        "http_referer" => Referer,
        "http_user_agent" => UserAgent,
        "upstream_addr" => UpstreamAddr,
        "upstream_status" => UpstreamStatus,
        "upstream_response_time" => UpstreamResponseTime,
        "pid" => Pid,
        _ => {
            let Some(h) = name.strip_prefix("http_").filter(|h| !h.is_empty()) else {
                return Err(FormatError::UnknownVariable(name.to_owned()));
            };
            let header = h.to_ascii_lowercase().replace('_', "-");
            let i = match headers.iter().position(|x| *x == header) {
                Some(i) => i,
                None if headers.len() < MAX_HEADERS => {
                    headers.push(header);
                    headers.len() - 1
                }
                None => {
                    return Err(FormatError::Syntax(format!(
                        "more than {MAX_HEADERS} different $http_<name> headers in one format"
                    )))
                }
            };
            Header(i)
        }
    })
}

fn non_empty(s: &[u8]) -> Option<&[u8]> {
    Some(s).filter(|s| !s.is_empty())
}

/// `GET /a?b HTTP/1.1` -> ("GET", "/a?b", "HTTP/1.1"); missing parts empty.
fn request_parts(line: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut it = line.splitn(3, |&b| b == b' ');
    (
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    )
}

fn path_and_args(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &[]),
    }
}

fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn write_var(out: &mut Vec<u8>, v: LogVar, now: &Stamp<'_>, r: &Record<'_>) {
    let mut n = itoa::Buffer::new();
    let h: &Captured = r.head;
    let (method, target, protocol) = request_parts(h.request_line());
    match v {
        LogVar::RemoteAddr => {
            let _ = write!(out, "{}", r.remote.ip());
        }
        LogVar::RemotePort => out.extend_from_slice(n.format(r.remote.port()).as_bytes()),
        // ringlb does no authentication.
        LogVar::RemoteUser => out.push(b'-'),
        LogVar::TimeLocal => out.extend_from_slice(now.local),
        LogVar::TimeIso8601 => out.extend_from_slice(now.iso),
        LogVar::Msec => {
            out.extend_from_slice(n.format(now.unix_ms / 1000).as_bytes());
            out.push(b'.');
            three_digits(out, now.unix_ms % 1000);
        }
        LogVar::Request => escaped(out, non_empty(h.request_line())),
        LogVar::RequestMethod => escaped(out, non_empty(method)),
        LogVar::RequestUri => escaped(out, non_empty(target)),
        LogVar::Uri => escaped(out, non_empty(path_and_args(target).0)),
        LogVar::Args => escaped(out, non_empty(path_and_args(target).1)),
        LogVar::ServerProtocol => escaped(out, non_empty(protocol)),
        LogVar::Scheme => out.extend_from_slice(r.scheme.as_bytes()),
        LogVar::Host => escaped(out, non_empty(h.host())),
        LogVar::Status => out.extend_from_slice(n.format(status(r)).as_bytes()),
        LogVar::BodyBytesSent => out.extend_from_slice(n.format(r.body_bytes).as_bytes()),
        LogVar::BytesSent => out.extend_from_slice(n.format(r.bytes_sent).as_bytes()),
        LogVar::RequestTime => seconds(out, r.request_time),
        LogVar::Referer => escaped(out, h.referer()),
        LogVar::UserAgent => escaped(out, h.user_agent()),
        LogVar::Header(i) => escaped(out, h.header(i)),
        LogVar::UpstreamAddr => match r.upstream {
            Some(a) => {
                let _ = write!(out, "{a}");
            }
            None => out.push(b'-'),
        },
        LogVar::UpstreamStatus => match r.upstream_status {
            0 => out.push(b'-'),
            s => out.extend_from_slice(n.format(s).as_bytes()),
        },
        LogVar::UpstreamResponseTime => match upstream_time(r) {
            Some(t) => seconds(out, t),
            None => out.push(b'-'),
        },
        LogVar::Pid => out.extend_from_slice(n.format(pid()).as_bytes()),
    }
}

/// `$status`: 0 (no response sent: the client went away) is logged as nginx's 499.
fn status(r: &Record<'_>) -> u16 {
    if r.status == 0 {
        499
    } else {
        r.status
    }
}

/// `$upstream_response_time`, when a server answered.
fn upstream_time(r: &Record<'_>) -> Option<Duration> {
    (r.upstream.is_some() && r.upstream_status != 0).then_some(r.upstream_time)
}

/// `1.234`: seconds with millisecond resolution, as nginx writes `$request_time`.
fn seconds(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis() as u64;
    out.extend_from_slice(itoa::Buffer::new().format(ms / 1000).as_bytes());
    out.push(b'.');
    three_digits(out, ms % 1000);
}

fn three_digits(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&[
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

/// nginx's escaping of logged values: `"`, `\`, control bytes and non-ASCII as `\xHH`, so
/// that a line can always be split on its quotes and never carries a raw newline. A value
/// that is not there is `-`; one that is there but empty (`Referer:` with nothing after it)
/// is written empty, as nginx does.
fn escaped(out: &mut Vec<u8>, s: Option<&[u8]>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let Some(s) = s else {
        out.push(b'-');
        return;
    };
    for &b in s {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}

// ---- JSON lines ---------------------------------------------------------------------

/// One JSON object: the keys are nginx's variable names (`time` is `$time_iso8601`);
/// what is unknown is `null` (no upstream, no header), numbers are numbers.
fn json_line(out: &mut Vec<u8>, now: &Stamp<'_>, r: &Record<'_>) {
    let h = r.head;
    let line = h.request_line();
    let (method, target, protocol) = request_parts(line);
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(now.iso);
    out.extend_from_slice(b"\",\"remote_addr\":\"");
    let _ = write!(out, "{}", r.remote.ip());
    out.extend_from_slice(b"\",\"remote_port\":");
    out.extend_from_slice(n.format(r.remote.port()).as_bytes());
    for (key, value) in [
        ("request", line),
        ("request_method", method),
        ("request_uri", target),
        ("server_protocol", protocol),
        ("host", h.host()),
    ] {
        json_key(out, key);
        json_str_or_null(out, Some(value).filter(|v| !v.is_empty()));
    }
    json_key(out, "scheme");
    json_str(out, r.scheme.as_bytes());
    json_key(out, "status");
    out.extend_from_slice(n.format(status(r)).as_bytes());
    json_key(out, "body_bytes_sent");
    out.extend_from_slice(n.format(r.body_bytes).as_bytes());
    json_key(out, "bytes_sent");
    out.extend_from_slice(n.format(r.bytes_sent).as_bytes());
    json_key(out, "request_time");
    seconds(out, r.request_time);
    json_key(out, "http_referer");
    json_str_or_null(out, h.referer());
    json_key(out, "http_user_agent");
    json_str_or_null(out, h.user_agent());
    json_key(out, "upstream_addr");
    match r.upstream {
        Some(a) => {
            out.push(b'"');
            let _ = write!(out, "{a}");
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    json_key(out, "upstream_status");
    match r.upstream_status {
        0 => out.extend_from_slice(b"null"),
        s => out.extend_from_slice(n.format(s).as_bytes()),
    }
    json_key(out, "upstream_response_time");
    match upstream_time(r) {
        Some(t) => seconds(out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn json_key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_str_or_null(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: `"` and `\` escaped, control characters as `\n`, `\u00XX`..., valid UTF-8
/// kept, and each byte that is not valid UTF-8 (a client may send any) as U+FFFD, so that
/// every line is valid JSON.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..0x20 | 0x7f => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 15) as usize]);
                }
                _ => out.push(b),
            }
        }
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

// ---- Time ---------------------------------------------------------------------------

/// The time of one line, in every form a format may want.
pub struct Stamp<'a> {
    pub unix_ms: u64,
    /// `25/Nov/2025:12:49:11 +0000` (`$time_local`).
    pub local: &'a [u8],
    /// `2025-11-25T12:49:11+00:00` (`$time_iso8601`).
    pub iso: &'a [u8],
}

/// Reads the clock per line and formats the local time once per second.
#[derive(Default)]
pub struct Clock {
    second: i64,
    local: Vec<u8>,
    iso: Vec<u8>,
}

impl Clock {
    pub fn now(&mut self) -> Stamp<'_> {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let second = (unix_ms / 1000) as i64;
        if second != self.second || self.local.is_empty() {
            self.second = second;
            self.local.clear();
            self.iso.clear();
            local_times(second, &mut self.local, &mut self.iso);
        }
        Stamp {
            unix_ms,
            local: &self.local,
            iso: &self.iso,
        }
    }
}

/// `$time_local` and `$time_iso8601` of `unix` seconds, in the machine's time zone.
fn local_times(unix: i64, local: &mut Vec<u8>, iso: &mut Vec<u8>) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = unix as libc::time_t;
    // SAFETY: `tm` is plain data, fully written by localtime_r on success.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        tm.tm_mday = 1;
        tm.tm_year = 70;
    }
    let off = tm.tm_gmtoff / 60;
    let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
    let month = tm.tm_mon.clamp(0, 11);
    let _ = write!(
        local,
        "{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        tm.tm_mday,
        MONTHS[month as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 60,
        off % 60
    );
    let _ = write!(
        iso,
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        tm.tm_year + 1900,
        month + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 60,
        off % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn head(line: &[u8], referer: Option<&[u8]>, ua: Option<&[u8]>) -> Captured {
        let mut c = Captured::default();
        c.set_request_line(line);
        c.set_host(|out| out.extend_from_slice(b"example.com"));
        if let Some(r) = referer {
            c.set_header(HeaderSlot::Referer, r);
        }
        if let Some(u) = ua {
            c.set_header(HeaderSlot::UserAgent, u);
        }
        c
    }

    fn rec(head: &Captured) -> Record<'_> {
        Record {
            remote: "10.1.2.3:50000".parse().unwrap(),
            head,
            scheme: "http",
            status: 200,
            bytes_sent: 700,
            body_bytes: 612,
            upstream: Some(&UPSTREAM),
            upstream_status: 200,
            request_time: Duration::from_micros(4_200),
            upstream_time: Duration::from_micros(3_050),
        }
    }

    static UPSTREAM: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8001);

    const STAMP: Stamp<'static> = Stamp {
        unix_ms: 1_764_074_951_042,
        local: b"25/Nov/2025:12:49:11 +0000",
        iso: b"2025-11-25T12:49:11+00:00",
    };

    fn line(format: &str, r: &Record<'_>) -> String {
        let mut out = Vec::new();
        LogFormat::parse(format).unwrap().write(&mut out, &STAMP, r);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_line_with_upstream_fields() {
        let h = head(b"GET /a?b=\"c\" HTTP/1.1", None, Some(b"curl/8.5.0"));
        assert_eq!(
            line("combined", &rec(&h)),
            "10.1.2.3 - - [25/Nov/2025:12:49:11 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 612 \
             \"-\" \"curl/8.5.0\" 127.0.0.1:8001 200 0.004 0.003\n"
        );
    }

    #[test]
    fn own_response_has_dashes_for_upstream() {
        let h = head(b"", None, Some(b"curl/8.5.0"));
        let mut r = rec(&h);
        r.upstream = None;
        r.upstream_status = 0;
        r.status = 0;
        r.request_time = Duration::from_millis(12_345);
        let s = line("combined", &r);
        assert!(
            s.ends_with("\"-\" 499 612 \"-\" \"curl/8.5.0\" - - 12.345 -\n"),
            "{s}"
        );
    }

    #[test]
    fn control_bytes_are_escaped() {
        let mut out = Vec::new();
        escaped(&mut out, Some(b"a\nb\\\xff"));
        assert_eq!(out, b"a\\x0Ab\\x5C\\xFF");
    }

    #[test]
    fn template_with_every_kind_of_variable() {
        let mut h = head(b"POST /p/q?x=1&y=2 HTTP/1.1", Some(b"http://r/"), None);
        let format = LogFormat::parse(
            "$remote_addr:$remote_port $request_method $uri ?$args $server_protocol \
             ${scheme}://$host $status $bytes_sent/$body_bytes_sent $msec $time_iso8601 \
             xff=$http_x_forwarded_for ua=$http_user_agent ref=$http_referer \
             up=$upstream_addr/$upstream_status/$upstream_response_time rt=$request_time",
        )
        .unwrap();
        assert_eq!(format.slot(b"X-Forwarded-For"), Some(HeaderSlot::Other(0)));
        assert_eq!(format.slot(b"x-request-id"), None);
        h.set_header(HeaderSlot::Other(0), b"1.2.3.4, 5.6.7.8");
        let mut out = Vec::new();
        format.write(&mut out, &STAMP, &rec(&h));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10.1.2.3:50000 POST /p/q ?x=1&y=2 HTTP/1.1 http://example.com 200 700/612 \
             1764074951.042 2025-11-25T12:49:11+00:00 xff=1.2.3.4, 5.6.7.8 ua=- ref=http://r/ \
             up=127.0.0.1:8001/200/0.003 rt=0.004\n"
        );
    }

    #[test]
    fn json_lines_are_valid_json_with_nulls_and_numbers() {
        let h = head(
            b"GET /\"q\"\\\x01\xff\xc3\xa9 HTTP/1.1",
            None,
            Some("caf\u{e9} \"x\"".as_bytes()),
        );
        let mut r = rec(&h);
        r.upstream = None;
        r.upstream_status = 0;
        let s = line("json", &r);
        assert!(s.ends_with("}\n") && s.matches('\n').count() == 1, "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["time"], "2025-11-25T12:49:11+00:00");
        assert_eq!(v["remote_addr"], "10.1.2.3");
        assert_eq!(v["remote_port"], 50000);
        assert_eq!(v["request"], "GET /\"q\"\\\u{1}\u{fffd}\u{e9} HTTP/1.1");
        assert_eq!(v["request_method"], "GET");
        assert_eq!(v["server_protocol"], "HTTP/1.1");
        assert_eq!(v["host"], "example.com");
        assert_eq!(v["status"], 200);
        assert_eq!(v["body_bytes_sent"], 612);
        assert_eq!(v["bytes_sent"], 700);
        assert_eq!(v["request_time"], 0.004);
        assert_eq!(v["http_referer"], serde_json::Value::Null);
        assert_eq!(v["http_user_agent"], "caf\u{e9} \"x\"");
        assert_eq!(v["upstream_addr"], serde_json::Value::Null);
        assert_eq!(v["upstream_status"], serde_json::Value::Null);
        assert_eq!(v["upstream_response_time"], serde_json::Value::Null);
    }

    #[test]
    fn bad_formats_are_refused_with_the_reason() {
        assert_eq!(
            LogFormat::parse("$remote_addr $stauts").unwrap_err(),
            FormatError::UnknownVariable("stauts".into())
        );
        assert_eq!(
            LogFormat::parse("$x").unwrap_err().unknown_variable(),
            Some("$x".into())
        );
        for bad in ["main", "$", "${status", "a $ b", "$status\n", "$http_"] {
            assert!(LogFormat::parse(bad).is_err(), "{bad:?} accepted");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("$http_h{i} ")).collect();
        assert!(LogFormat::parse(&many).is_err());
        assert!(LogFormat::parse("${status}ok").is_ok());
    }

    #[test]
    fn formats_compare_by_their_text() {
        assert_eq!(LogFormat::default(), "combined");
        assert_eq!(LogFormat::parse("json").unwrap().source(), "json");
    }

    #[test]
    fn local_time_shapes() {
        let (mut local, mut iso) = (Vec::new(), Vec::new());
        local_times(0, &mut local, &mut iso);
        let local = String::from_utf8(local).unwrap();
        let iso = String::from_utf8(iso).unwrap();
        // dd/Mon/yyyy:hh:mm:ss +hhmm and yyyy-mm-ddThh:mm:ss+hh:mm, whatever the zone.
        assert_eq!(local.len(), 26, "{local}");
        assert_eq!(&local[2..3], "/");
        assert_eq!(iso.len(), 25, "{iso}");
        assert_eq!(&iso[10..11], "T");
        assert_eq!(&iso[22..23], ":");
    }
}

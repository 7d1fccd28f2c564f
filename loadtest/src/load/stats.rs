//! What one generator thread measured, and how threads' figures are merged.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::tls;

/// Latency histogram range in microseconds: 1 us to one hour, 3 significant digits.
const LATENCY_MAX_US: u64 = 3_600_000_000;
const LATENCY_DIGITS: u8 = 3;
/// Status codes are three digits; the array is indexed by code.
const STATUS_SLOTS: usize = 1000;

/// Why a request produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Timeout,
    Read,
    Write,
    Invalid,
    /// TLS: the server's certificate did not verify.
    TlsCert,
    /// TLS: the server sent a fatal alert.
    TlsAlert,
    /// TLS: any other handshake or record failure (protocol error, closed mid-handshake).
    Tls,
}

/// How many kinds there are (the length of per-kind counters).
pub const ERROR_KINDS: usize = 8;

impl ErrorKind {
    pub const ALL: [ErrorKind; ERROR_KINDS] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::Invalid,
        ErrorKind::TlsCert,
        ErrorKind::TlsAlert,
        ErrorKind::Tls,
    ];

    /// The key in the report and the JSON `errors` object.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Invalid => "invalid",
            ErrorKind::TlsCert => "tls_cert",
            ErrorKind::TlsAlert => "tls_alert",
            ErrorKind::Tls => "tls",
        }
    }
}

impl From<tls::Failure> for ErrorKind {
    fn from(failure: tls::Failure) -> ErrorKind {
        match failure {
            tls::Failure::Certificate => ErrorKind::TlsCert,
            tls::Failure::Alert => ErrorKind::TlsAlert,
            tls::Failure::Other => ErrorKind::Tls,
        }
    }
}

/// Counts and latencies of counted (post-warmup) requests.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every response, in microseconds.
    pub latency: Histogram<u64>,
    /// Open loop: how late each request left after its due time, in microseconds (the
    /// pacing's precision; its own share of the latency above).
    pub late: Histogram<u64>,
    pub status: Vec<u64>,
    pub errors: [u64; ERROR_KINDS],
    /// Response bytes read (heads and bodies).
    pub bytes: u64,
    pub responses: u64,
    /// Responses per value of the by-server header (`X-Backend`).
    pub by_server: HashMap<Vec<u8>, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_DIGITS)
                .expect("valid histogram bounds"),
            late: Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_DIGITS)
                .expect("valid histogram bounds"),
            status: vec![0; STATUS_SLOTS],
            errors: [0; ERROR_KINDS],
            bytes: 0,
            responses: 0,
            by_server: HashMap::new(),
        }
    }

    pub fn record_response(
        &mut self,
        status: u16,
        latency_us: u64,
        bytes: u64,
        served_by: Option<&[u8]>,
    ) {
        self.responses += 1;
        self.bytes += bytes;
        self.latency.saturating_record(latency_us.max(1));
        if let Some(slot) = self.status.get_mut(usize::from(status)) {
            *slot += 1;
        }
        if let Some(server) = served_by {
            match self.by_server.get_mut(server) {
                Some(count) => *count += 1,
                None => {
                    self.by_server.insert(server.to_vec(), 1);
                }
            }
        }
    }

    /// Open loop: a request left `late_us` after it was due.
    pub fn record_late(&mut self, late_us: u64) {
        // The histogram starts at 1 us: on time counts as 1.
        self.late.saturating_record(late_us.max(1));
    }

    pub fn record_error(&mut self, kind: ErrorKind, bytes: u64) {
        self.errors[kind as usize] += 1;
        self.bytes += bytes;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.late.add(&other.late);
        for (mine, theirs) in self.status.iter_mut().zip(&other.status) {
            *mine += theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(&other.errors) {
            *mine += theirs;
        }
        self.bytes += other.bytes;
        self.responses += other.responses;
        for (server, count) in &other.by_server {
            *self.by_server.entry(server.clone()).or_default() += count;
        }
    }

    /// Responses with a 2xx or 3xx status.
    pub fn successes(&self) -> u64 {
        self.status[200..400].iter().sum()
    }

    /// (status code, count) for every status seen, in code order.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(code, &n)| (code as u16, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_up() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.record_response(200, 100, 10, Some(b"s1"));
        b.record_response(200, 300, 10, Some(b"s1"));
        b.record_response(503, 50_000, 10, Some(b"s2"));
        b.record_error(ErrorKind::Timeout, 0);
        a.merge(&b);
        assert_eq!(a.responses, 3);
        assert_eq!(a.statuses().collect::<Vec<_>>(), vec![(200, 2), (503, 1)]);
        assert_eq!(a.by_server[&b"s1"[..]], 2);
        assert_eq!(a.errors[ErrorKind::Timeout as usize], 1);
        assert_eq!(a.bytes, 30);
        assert!(a.latency.max() >= 49_000);
        assert_eq!(a.successes(), 2);
    }
}

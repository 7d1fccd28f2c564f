//! HTTP/1.1 framing shared by both sides: where a message ends, never what it means.

pub mod chunked;
pub mod request;
pub mod response;

/// Lower-case ASCII comparison of a header value against a token list such as
/// `Connection: keep-alive, Upgrade`.
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a Content-Length value strictly: digits only, no sign, no overflow.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

//! Arbitrary server bytes through the response head parser and the body cursor, as the
//! relay uses them, split into reads at arbitrary points (the first input bytes choose
//! them): nothing past the framed end of the response is ever taken for forwarding, and a
//! connection is only ever poolable when nothing followed the response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb::http::framing::{may_pool, BodyCursor};
use ringlb::http::response::{self, ResponseBody, ResponseHead};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let head_request = data[0] & 1 == 1;
    let reencode = data[0] & 2 == 2;
    let cut = data[1] as usize + 1;
    let input = &data[2..];
    let mut res = ResponseHead::default();
    let head_len = match response::parse(input, &mut res, head_request) {
        Ok(true) => res.head_len,
        _ => return,
    };
    // The reference: where the body ends by RFC 9112 6.3, computed without the cursor.
    let expected_end = match res.body {
        ResponseBody::None => Some(head_len),
        ResponseBody::Length(n) => head_len.checked_add(n as usize),
        _ => None,
    };
    let mut cursor = BodyCursor::new(res.body);
    let mut out = Vec::new();
    let mut at = head_len;
    let mut forwarded = 0usize;
    let mut done = cursor.is_done();
    while at < input.len() && !done {
        let end = (at + cut).min(input.len());
        let t = match cursor.take(&input[at..end], &mut out, reencode) {
            Ok(t) => t,
            Err(_) => return,
        };
        assert!(t.taken <= end - at);
        forwarded += t.taken;
        at += t.taken;
        done = t.done;
        if !done {
            // Everything offered was taken, or the body would be done.
            assert_eq!(at, end);
        }
    }
    let left_over = input.len() - at;
    if let Some(end) = expected_end {
        // Never a byte past the declared end.
        assert!(head_len + forwarded <= end);
        if done {
            assert_eq!(head_len + forwarded, end);
            assert_eq!(left_over, input.len().saturating_sub(end));
        }
    }
    if res.body == ResponseBody::Close {
        assert!(!may_pool(cursor.is_done(), left_over, res.keep_alive, true));
    }
    if left_over > 0 {
        assert!(!may_pool(done, left_over, res.keep_alive, true));
    }
    // Head requests, 1xx, 204 and 304 never have a body, whatever the headers say.
    if head_request || matches!(res.status, 100..=199 | 204 | 304) {
        assert_eq!(forwarded, 0);
    }
});

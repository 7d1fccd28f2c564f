//! The request head parser on arbitrary bytes: no panic, every span inside the head, and
//! the head ringlb would forward (re-framed from what was parsed) parses again to the same
//! method, target, host and body framing: nothing the parser accepted can be read two ways.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use ringlb::http::request::{parse, RequestHead};
use ringlb::http::rewrite;
use ringlb::http::vars::Vars;

fn span(buf: &[u8], s: (u32, u32)) -> &[u8] {
    &buf[s.0 as usize..s.1 as usize]
}

fuzz_target!(|data: &[u8]| {
    let mut head = RequestHead::default();
    let Ok(true) = parse(data, &mut head) else {
        return;
    };
    assert!(head.head_len <= data.len());
    let within = |s: (u32, u32)| s.0 <= s.1 && (s.1 as usize) <= head.head_len;
    assert!(within(head.method_span) && within(head.target));
    assert!(head.host.is_none_or(within));
    for h in &head.headers {
        assert!(within(h.name) && within(h.value));
    }

    // The forwarded head may carry a few more headers than the client sent (Host, the
    // framing header, Connection for an upgrade): past the parser's header limit the
    // re-parse would rightly say 431, which proves nothing.
    if head.headers.len() + 3 > ringlb::http::MAX_HEADERS {
        return;
    }
    let mut out = Vec::new();
    let vars = Vars {
        buf: data,
        head: &head,
        remote: SocketAddr::from(([127, 0, 0, 1], 1)),
        server_name: "",
        https: false,
    };
    rewrite::request_head(&mut out, &vars, &[], "upstream", &rewrite::Forwarding::default());
    let mut again = RequestHead::default();
    match parse(&out, &mut again) {
        Ok(true) => {}
        other => panic!(
            "forwarded head does not parse: {other:?}\n{:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    assert_eq!(again.head_len, out.len());
    assert_eq!(again.method, head.method);
    assert_eq!(again.body, head.body);
    assert_eq!(span(&out, again.method_span), span(data, head.method_span));
    if let Some(h) = head.host {
        assert_eq!(again.host.map(|s| span(&out, s)), Some(span(data, h)));
    }
});

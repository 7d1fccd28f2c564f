//! The PROXY protocol parser on arbitrary first bytes of a connection: no panic; a complete
//! header lies within the input and the limits; every shorter prefix of a complete header is
//! "incomplete" (never an error, never a different header), so reading in pieces cannot
//! change the verdict; and bytes appended after a complete header do not change it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb::http::proxy_protocol::{parse, Parsed, ProxyError, V1_MAX, V2_MAX};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    match whole {
        Ok(Parsed::Done(h)) => {
            assert!(h.len <= data.len());
            assert!(h.len <= if h.version == 1 { V1_MAX } else { V2_MAX });
            // The header alone parses the same, and so does the header plus other bytes.
            assert_eq!(parse(&data[..h.len]), whole);
            let mut more = data[..h.len].to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(&more), whole);
            for n in 0..h.len {
                assert_eq!(parse(&data[..n]), Ok(Parsed::Incomplete), "prefix {n}");
            }
        }
        Ok(Parsed::Incomplete) => {
            assert!(data.len() < V2_MAX, "an incomplete header stays within the limit");
            for n in 0..data.len() {
                assert_eq!(parse(&data[..n]), Ok(Parsed::Incomplete), "prefix {n}");
            }
        }
        Err(ProxyError::Missing) => {
            // Once the signature is off, more bytes cannot put it back.
            let mut more = data.to_vec();
            more.extend_from_slice(b"\r\n");
            assert_eq!(parse(&more), whole);
        }
        Err(_) => {}
    }
});

//! The chunked decoder on arbitrary bytes: no panic, and the same input fed whole or split
//! at arbitrary points (the first bytes of the fuzz input choose them) gives the same data,
//! the same end and the same verdict; re-encoded output decodes back to the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb::http::chunked::ChunkedDecoder;

/// Data, bytes consumed, done, failed.
type Run = (Vec<u8>, usize, bool, bool);

fn feed(input: &[u8], cuts: &[usize], reencode: bool) -> Run {
    let mut d = ChunkedDecoder::default();
    let mut out = Vec::new();
    let mut at = 0;
    let mut consumed = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(at, input.len());
        let piece = &input[at..end];
        match d.decode(piece, &mut out, reencode) {
            Ok(r) => {
                consumed += r.consumed;
                if r.done {
                    assert_eq!(
                        d.decoded as usize,
                        if reencode {
                            d.decoded as usize
                        } else {
                            out.len()
                        }
                    );
                    return (out, consumed, true, false);
                }
                assert_eq!(
                    r.consumed,
                    piece.len(),
                    "an unfinished decoder takes all it is given"
                );
            }
            // Where in the input the error lies is not part of the contract: only that
            // there is one, after the same data.
            Err(_) => return (out, 0, false, true),
        }
        at = end;
    }
    (out, consumed, false, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n % 8) as usize;
    if rest.len() < n {
        return;
    }
    let (seeds, input) = rest.split_at(n);
    let mut cuts: Vec<usize> = seeds
        .iter()
        .map(|&s| s as usize * input.len() / 255)
        .collect();
    cuts.sort_unstable();

    let whole = feed(input, &[], false);
    let split = feed(input, &cuts, false);
    assert_eq!(whole, split, "cuts {cuts:?}");
    let bytewise: Vec<usize> = (1..input.len().min(4096)).collect();
    assert_eq!(whole, feed(input, &bytewise, false));

    let (framed, consumed, done, failed) = feed(input, &cuts, true);
    assert_eq!((consumed, done, failed), (whole.1, whole.2, whole.3));
    if done {
        let back = feed(&framed, &[], false);
        assert_eq!(back, (whole.0.clone(), framed.len(), true, false));
    }
});

//! ns per pick for each balancing method, with 3, 30 and 300 servers: one thread alone, and
//! two threads picking at once on one shared upstream (each with its own `Selector`, as two
//! workers would), to show that the shared atomics do not collapse under contention.
//!
//! Each pick is a whole request's worth of selection: reset `tried`, pick (which counts the
//! request active), release. Run: `cargo bench --bench selection`; results in BENCHMARKS.md
//! ("Selection cost").

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringlb::config::{Balance, UpstreamCfg};
use ringlb::upstream::balance::release;
use ringlb::upstream::bench_support::{server, snapshot, upstream_cfg};
use ringlb::upstream::{PickInput, Selector, Snapshot, Tried, Upstream};

const SIZES: [usize; 3] = [3, 30, 300];
const NOW_MS: u64 = 1_000_000;
/// Distinct clients and keys cycled through, so hash methods do not hit one cached path.
const INPUTS: usize = 1024;

const METHODS: [(&str, Balance, bool); 7] = [
    ("round_robin", Balance::RoundRobin, false),
    ("least_conn", Balance::LeastConn, false),
    ("ip_hash", Balance::IpHash, false),
    ("hash", Balance::Hash, false),
    ("hash_consistent", Balance::Hash, true),
    ("random_two_least_conn", Balance::RandomTwoLeastConn, false),
    ("least_time", Balance::LeastTime, false),
];

fn cfg(balance: Balance, consistent: bool, n: usize) -> UpstreamCfg {
    let servers = (0..n)
        .map(|i| server(10_000 + i as u16, 1 + (i % 3) as u32))
        .collect();
    let mut c = upstream_cfg(balance, servers);
    c.consistent = consistent;
    c
}

struct Inputs {
    ips: Vec<IpAddr>,
    keys: Vec<String>,
}

impl Inputs {
    fn new() -> Inputs {
        Inputs {
            ips: (0..INPUTS)
                .map(|i| IpAddr::from([10, (i >> 8) as u8, i as u8, 7]))
                .collect(),
            keys: (0..INPUTS).map(|i| format!("/objects/{i:08x}")).collect(),
        }
    }

    fn get(&self, n: usize) -> PickInput<'_> {
        let i = n % INPUTS;
        PickInput {
            client_ip: self.ips[i],
            hash_key: self.keys[i].as_bytes(),
        }
    }
}

fn prepared(balance: Balance, consistent: bool, n: usize) -> Snapshot {
    let snap = snapshot(vec![cfg(balance, consistent, n)]);
    // least_time needs samples: 1..8 ms, varied per server.
    let sel = Selector::new(1);
    let up = &snap.upstreams[0];
    for i in 0..up.peers.len() {
        let ms = 1 + (i as u64 * 7) % 8;
        sel.observe(up, i, Duration::from_millis(ms), NOW_MS);
    }
    snap
}

fn run(sel: &mut Selector, up: &Upstream, inputs: &Inputs, tried: &mut Tried, n: usize) {
    tried.reset(up.peers.len());
    let input = inputs.get(n);
    if let Ok(i) = sel.pick(up, black_box(&input), tried, NOW_MS) {
        release(&up.peers[black_box(i)]);
    }
}

fn single(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut g = c.benchmark_group("single");
    for (name, balance, consistent) in METHODS {
        for n in SIZES {
            let snap = prepared(balance, consistent, n);
            let up = &snap.upstreams[0];
            let mut sel = Selector::new(0x9e37_79b9);
            sel.sync(&snap);
            let mut tried = Tried::default();
            let mut k = 0usize;
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    k = k.wrapping_add(1);
                    run(&mut sel, up, &inputs, &mut tried, k);
                })
            });
        }
    }
    g.finish();
}

fn contended(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut g = c.benchmark_group("contended2");
    for (name, balance, consistent) in METHODS {
        for n in SIZES {
            let snap = prepared(balance, consistent, n);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                // Wall time for both threads to do `iters` picks each: time per pick as one
                // thread sees it while the other picks on the same upstream.
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..2u64 {
                            let (snap, inputs) = (&snap, &inputs);
                            s.spawn(move || {
                                let up = &snap.upstreams[0];
                                let mut sel = Selector::new(0x9e37_79b9 + t);
                                sel.sync(snap);
                                let mut tried = Tried::default();
                                for k in 0..iters as usize {
                                    run(&mut sel, up, inputs, &mut tried, k + t as usize * 512);
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(300))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = single, contended
}
criterion_main!(benches);

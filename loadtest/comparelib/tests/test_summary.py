"""The summary arithmetic of loadtest/compare, and the pieces of measuring and rendering that
are pure functions (h2load's output, layouts, relative paths).

Run: python3 -m unittest discover -s loadtest/comparelib/tests -t loadtest (from the
repository root); `cargo test -p ringload --test compare_python` runs it too."""

import copy
import unittest

from comparelib import layouts, render, summary
from comparelib.measure import h2load_report, parse_h2load


def rec(rps, cpu_us=None, p50=100, p99=200, p999=300, rss=1024, accepts=0, responses=None, errors=0,
        non2xx=None, busy=None, by_server=None, window=2.0, backend_cpu=None):
    """One run's record as measure() writes it (only the fields the summary reads)."""
    responses = responses if responses is not None else int(rps * window)
    return {
        "rps": rps, "responses": responses, "duration_s": window, "sample_window_s": window,
        "proxy_cpu_us_per_req": cpu_us,
        "proxy_cpu_s": (cpu_us or 0) * responses / 1e6,
        "backend_cpu_us_per_req": backend_cpu,
        "latency_us": {"p50": p50, "p90": p50, "p99": p99, "p999": p999, "max": p999},
        "memory": {"vmhwm_kib": rss, "pss_kib": rss // 2},
        "tcp_accepts": accepts, "error_count": errors, "non_2xx": non2xx or {},
        "core_busy_pct": busy or {"0": 90.0, "1": 50.0},
        "by_server": by_server or {}, "bytes_per_s": rps * 100.0,
    }


class Median(unittest.TestCase):
    def test_odd_even_and_missing(self):
        self.assertEqual(summary.median([3, 1, 2]), 2)
        self.assertEqual(summary.median([4, 1, 3, 2]), 2.5)
        self.assertEqual(summary.median([None, 5, None]), 5)
        self.assertIsNone(summary.median([None, None]))
        self.assertIsNone(summary.median([]))

    def test_ratio_needs_both_and_a_nonzero_base(self):
        self.assertEqual(summary.ratio(3, 2), 1.5)
        self.assertIsNone(summary.ratio(None, 2))
        self.assertIsNone(summary.ratio(3, 0))
        self.assertIsNone(summary.ratio(3, None))


class OneRun(unittest.TestCase):
    def test_cpu_per_request_from_ticks(self):
        # 250 ticks at 100 Hz = 2.5 s of CPU over 100,000 responses = 25 us each.
        self.assertAlmostEqual(summary.cpu_us_per_request(1000, 1250, 100, 100_000), 25.0)
        self.assertIsNone(summary.cpu_us_per_request(0, 10, 100, 0))

    def test_core_busy_from_proc_stat_readings(self):
        before = {0: (100, 1000), 1: (500, 1000), 2: (0, 0)}
        after = {0: (190, 1100), 1: (525, 1100), 2: (0, 0)}
        self.assertEqual(summary.core_busy_pct(before, after), {"0": 90.0, "1": 25.0, "2": None})

    def test_backend_accepts_subtract_the_clients_own(self):
        rd = {"direct": rec(1000, accepts=3), "ringlb": rec(900, accepts=3), "nginx": rec(800, accepts=10)}
        summary.backend_accepts(rd, keepalive=True)
        self.assertEqual([rd[n]["backend_accepts"] for n in ("direct", "ringlb", "nginx")], [3, 0, 7])
        churn = {"direct": rec(1000, accepts=2000), "nginx": rec(800, accepts=4000)}
        summary.backend_accepts(churn, keepalive=False)
        self.assertNotIn("backend_accepts", churn["nginx"])

    def test_percentiles_follow_hdrhistogram(self):
        p = summary.percentiles(list(range(1000, 0, -1)))
        self.assertEqual((p["p50"], p["p90"], p["p99"], p["p999"], p["p9999"], p["max"]),
                         (500, 900, 990, 999, 1000, 1000))
        self.assertEqual(p["mean"], 500.5)
        self.assertEqual(summary.percentiles([7])["p50"], 7)
        self.assertEqual(summary.percentiles([])["max"], 0)


class Summarize(unittest.TestCase):
    def rounds(self):
        return [
            {"direct": rec(2000), "ringlb": rec(1500, cpu_us=10.0, p50=100), "nginx": rec(1000, cpu_us=20.0, p50=200)},
            {"direct": rec(2100), "ringlb": rec(1200, cpu_us=12.0, p50=90), "nginx": rec(1000, cpu_us=15.0, p50=100)},
            {"direct": rec(1900), "ringlb": rec(1800, cpu_us=9.0, p50=80, errors=2, non2xx={"502": 1}),
             "nginx": rec(900, cpu_us=18.0, p50=160)},
        ]

    def test_medians_and_per_round_ratios(self):
        med, ratio = summary.summarize(self.rounds(), proxy_cores=1)
        self.assertEqual(list(med), ["direct", "ringlb", "nginx"])
        self.assertEqual(med["ringlb"]["rps"], 1500)
        self.assertEqual(med["ringlb"]["proxy_cpu_us_per_req"], 10.0)
        self.assertEqual(med["nginx"]["p50_us"], 160)
        self.assertEqual(med["ringlb"]["rounds"], 3)
        # Ratios are taken per round, then their median: not the ratio of the medians.
        per = ratio["ringlb"]["rps"]["per_round"]
        self.assertEqual(per, [1.5, 1.2, 2.0])
        self.assertEqual(ratio["ringlb"]["rps"]["median"], 1.5)
        cpu = ratio["ringlb"]["proxy_cpu_us_per_req"]
        self.assertEqual(cpu["per_round"], [0.5, 0.8, 0.5])
        self.assertEqual(cpu["median"], 0.5)
        self.assertNotEqual(cpu["median"], med["ringlb"]["proxy_cpu_us_per_req"] / med["nginx"]["proxy_cpu_us_per_req"])
        self.assertNotIn("nginx", ratio)
        self.assertIn("direct", ratio)

    def test_errors_and_non_2xx_are_summed_not_medianed(self):
        med, _ = summary.summarize(self.rounds())
        self.assertEqual(med["ringlb"]["errors"], 2)
        self.assertEqual(med["ringlb"]["non_2xx"], 1)
        self.assertEqual(med["nginx"]["errors"] + med["nginx"]["non_2xx"], 0)

    def test_per_proxy_core_figures(self):
        med, _ = summary.summarize(self.rounds(), proxy_cores=4)
        self.assertEqual(med["ringlb"]["rps_per_proxy_core"], 375.0)
        self.assertEqual(med["nginx"]["rps_per_proxy_core"], 250.0)
        self.assertIsNone(med["direct"]["rps_per_proxy_core"])  # the backend is on the load cores

    def test_a_target_that_failed_part_way(self):
        rounds = self.rounds()
        del rounds[2]["ringlb"]
        med, ratio = summary.summarize(rounds)
        self.assertEqual(med["ringlb"]["rounds"], 2)
        self.assertEqual(med["ringlb"]["rps"], 1350)
        self.assertEqual(ratio["ringlb"]["rps"]["per_round"], [1.5, 1.2, None])
        self.assertEqual(ratio["ringlb"]["rps"]["median"], 1.35)

    def test_without_nginx_there_are_no_ratios(self):
        rounds = [{"ringlb": rec(1000, cpu_us=5.0)}]
        med, ratio = summary.summarize(rounds)
        self.assertEqual(ratio, {})
        self.assertEqual(med["ringlb"]["rps"], 1000)
        self.assertEqual(summary.summarize([{}, {}]), ({}, {}))

    def test_core_busy_median_per_core(self):
        rounds = [{"nginx": rec(1, busy={"0": 10.0, "1": 50.0})}, {"nginx": rec(1, busy={"0": 30.0, "1": 70.0})},
                  {"nginx": rec(1, busy={"0": 20.0, "1": None})}]
        med, _ = summary.summarize(rounds)
        self.assertEqual(med["nginx"]["core_busy_pct"], {"0": 20.0, "1": 60.0})


class Shares(unittest.TestCase):
    def test_window_share_of_proxy_and_backend(self):
        sc = {"rounds": [{"ringlb": rec(1000, cpu_us=500.0, backend_cpu=250.0, window=2.0)},
                         {"ringlb": rec(1000, cpu_us=700.0, backend_cpu=250.0, window=2.0)}]}
        # 1000 req/s x 500 us = 0.5 s of CPU per second: 50%.
        self.assertAlmostEqual(summary.window_share_pct(sc, "ringlb", "proxy_cpu_s"), 60.0)
        self.assertAlmostEqual(summary.window_share_pct(sc, "ringlb", "backend"), 25.0)
        self.assertEqual(summary.window_share_pct(sc, "nginx", "backend"), 0.0)

    def test_response_shares_per_backend(self):
        sc = {"rounds": [{"rr": rec(1, by_server={"a": 1, "b": 3})}, {"rr": rec(1, by_server={"a": 2, "b": 2})},
                         {"rr": rec(1, by_server={"a": 3, "b": 1})}]}
        self.assertEqual(summary.response_shares(sc), {"rr": {"a": 0.5, "b": 0.5}})


def result(workers, proxy_cores, load_cores, connections, rps_ringlb, rps_nginx, layout=None, cpus=16):
    rounds = [{"ringlb": rec(rps_ringlb, cpu_us=10.0), "nginx": rec(rps_nginx, cpu_us=12.0)}]
    res = {"options": {"proxy_cores": proxy_cores, "load_cores": load_cores, "workers": workers,
                       "connections": connections, "quick": True, "rounds": 1, "duration": 2.0, "warmup": 0.5},
           "machine": {"cpus": cpus, "cpu_model": "Test CPU", "kernel": "6.18"},
           "scenarios": [{"id": "a", "title": "Closed loop", "connections": connections, "rounds": rounds}]}
    if layout:
        res["options"]["layout"] = layout
    return summary.enrich(res)


class Scaling(unittest.TestCase):
    def test_rows_are_ordered_and_per_core(self):
        w4 = result(4, "0,1,2,3", "4,5,6,7,8,9,10,11,12,13,14,15", 256, 400_000, 320_000, layout="16core-w4")
        w1 = result(1, "0", "4,5,6,7,8,9,10,11,12,13,14,15", 64, 120_000, 100_000)
        rows = summary.scaling([("w4.json", w4), ("w1.json", w1)])
        self.assertEqual([r["workers"] for r in rows], [1, 4])
        self.assertEqual(rows[1]["targets"]["ringlb"]["rps_per_proxy_core"], 100_000)
        self.assertEqual(rows[1]["targets"]["ringlb"]["rps_ratio"], 1.25)
        self.assertEqual(rows[0]["targets"]["ringlb"]["rps_ratio"], 1.2)
        self.assertEqual(rows[0]["machine"], "16 x Test CPU, Linux 6.18")
        text = "\n".join(render.scaling_section([("w4.json", w4), ("w1.json", w1)]))
        self.assertIn("| 16 x Test CPU, Linux 6.18 | 16core-w1 | 1 | 64 | 120,000 (1.20x) | 100,000 |", text)
        self.assertIn("16core-w4 | 4 | 256 | 100,000 (1.25x) | 80,000 |", text)

    def test_enrich_recomputes_old_results(self):
        old = result(2, "0,1", "2,3", 64, 1000, 500)
        for m in old["scenarios"][0]["median"].values():
            del m["rps_per_proxy_core"]
        again = summary.enrich(copy.deepcopy(old))
        self.assertEqual(again["scenarios"][0]["median"]["ringlb"]["rps_per_proxy_core"], 500)


class Layouts(unittest.TestCase):
    def test_presets_and_overrides(self):
        self.assertEqual(layouts.resolve("16core-w4", None, None, None, None, 16),
                         ("16core-w4", [0, 1, 2, 3], list(range(4, 16)), 4, 256))
        name, proxy, load, workers, conns = layouts.resolve("16core-w4", None, None, None, 128, 16)
        self.assertEqual((name, conns), ("16core-w4", 128))
        # No preset named: the settings are matched against the presets.
        self.assertEqual(layouts.resolve(None, None, None, None, None, 2), ("2core", [0], [1], 1, 64))
        self.assertEqual(layouts.resolve(None, "0-3", "4-15", 4, 256, 16)[0], "16core-w4")
        self.assertEqual(layouts.resolve(None, None, None, None, None, 16)[0], "custom")

    def test_missing_cores_are_refused(self):
        with self.assertRaisesRegex(ValueError, "has 2"):
            layouts.resolve("16core-w8", None, None, None, None, 2)
        with self.assertRaisesRegex(ValueError, "unknown layout"):
            layouts.resolve("64core", None, None, None, None, 64)


H2LOAD_TEXT = """starting benchmark...
TLS Protocol: TLSv1.2
Cipher: ECDHE-ECDSA-AES128-GCM-SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2

finished in 3.01s, 87675.50 req/s, 6.02MB/s
requests: 175351 total, 175351 started, 175351 done, 175341 succeeded, 10 failed, 4 errored, 1 timeout
status codes: 175341 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 12.04MB (12624264) total, 4.01MB (4200000) headers (space savings 93.07%), 4.01MB (4200000) data
"""


class H2load(unittest.TestCase):
    def test_text_is_parsed(self):
        h = parse_h2load(H2LOAD_TEXT)
        self.assertEqual(h["rps"], 87675.5)
        self.assertEqual(h["requests"]["succeeded"], 175341)
        self.assertEqual(h["status"]["2xx"], 175341)
        self.assertEqual(h["bytes"], 12624264)
        self.assertEqual((h["tls_protocol"], h["alpn"]), ("TLSv1.2", "h2"))

    def test_report_is_shaped_like_ringloads(self):
        lines = [f"1796401753944589\t200\t{us}\n" for us in range(1, 1001)]
        j = h2load_report(H2LOAD_TEXT, lines, 2.0)
        self.assertEqual(j["requests"], 175341)
        self.assertEqual(j["latency_us"]["p50"], 500)
        self.assertEqual(j["errors"], {"errored": 4, "timeout": 1, "failed": 5})
        self.assertEqual(j["status"], {"2xx": 175341})
        self.assertAlmostEqual(j["bytes_per_s"], 12624264 / 2.0)

    def test_no_h2_is_a_failure(self):
        with self.assertRaisesRegex(RuntimeError, "not negotiated"):
            h2load_report(H2LOAD_TEXT.replace("Application protocol: h2", "Application protocol: http/1.1"), [], 2.0)
        with self.assertRaisesRegex(RuntimeError, "no result"):
            h2load_report("connect failed\n", [], 2.0)


class Render(unittest.TestCase):
    def test_paths_are_relative_to_the_repository(self):
        line = "taskset -c 1 /home/ci/ringlb/target/release/ringload -t 1 -c 64 http://127.0.0.1:PORT/"
        self.assertEqual(render.relative(line), "taskset -c 1 target/release/ringload -t 1 -c 64 http://127.0.0.1:PORT/")
        self.assertEqual(render.relative(render.ROOT + "/loadtest/results/w4.json"), "loadtest/results/w4.json")

    def test_commit_and_tree_state(self):
        res = {"machine": {"git_short": "abc1234", "git_dirty": True}}
        self.assertIn("`abc1234` (tree dirty", render.commit_text(res))
        old = {"machine": {"git_commit": "d219861d20ea0e7211facfb7953deb32e639d4ed"}}
        self.assertEqual(render.commit_text(old), "commit `d219861` (tree state not recorded)")

    def test_failed_targets_show_in_the_table(self):
        res = result(1, "0", "1", 64, 1000, 900, cpus=2)
        sc = res["scenarios"][0]
        sc["failed"] = {"haproxy": "did not start: exited with status 1"}
        table = render.scenario_table(sc)
        self.assertIn("| haproxy | **failed** |", table)
        self.assertIn("| ringlb | 1,000 (1.11x) | 1,000 (1.11x) |", table)


if __name__ == "__main__":
    unittest.main()

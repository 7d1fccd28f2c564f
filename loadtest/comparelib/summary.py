"""The arithmetic: CPU per request, core busy shares, medians over rounds, per-round ratios to
nginx and their medians, per-proxy-core figures, the scaling rows across result files.

Pure functions of the recorded figures (no I/O), so that a results file can be summarised
again with the current rules (`--render` does) and the rules can be tested
(loadtest/comparelib/tests/test_summary.py)."""

import statistics

from . import layouts
from .host import parse_cores

REF = "nginx"  # ratios are to this target


def median(xs):
    """Median of the values that are not None; None when there are none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentiles(values):
    """{p50, p90, p99, p999, p9999, max, mean} in the unit of `values` (HdrHistogram's rule,
    as ringload reports them: the smallest value at or below which p% of the values lie);
    zeros when there are none."""
    keys = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9), ("p9999", 99.99))
    if not values:
        return dict({k: 0 for k, _ in keys}, max=0, mean=0.0)
    v = sorted(values)
    n = len(v)
    out = {}
    for k, p in keys:
        rank = max(1, -(-round(p * 100) * n // 10000))  # ceil(p/100 * n), in integers
        out[k] = v[min(n, rank) - 1]
    out["max"] = v[-1]
    out["mean"] = sum(v) / n
    return out


def ratio(a, b):
    """a / b, or None when either is missing or b is zero."""
    return a / b if (a is not None and b) else None


# ---------------------------------------------------------------- one run

def cpu_us_per_request(ticks_before, ticks_after, clk_tck, responses):
    """CPU microseconds per response from utime+stime ticks over the measured window."""
    if not responses:
        return None
    return (ticks_after - ticks_before) / clk_tck * 1e6 / responses


def core_busy_pct(before, after):
    """{cpu: busy %} between two /proc/stat readings of {cpu: (busy, total) jiffies}."""
    busy = {}
    for c in sorted(after):
        db = after[c][0] - before[c][0]
        dt = after[c][1] - before[c][1]
        busy[str(c)] = round(100.0 * db / dt, 1) if dt else None
    return busy


def backend_accepts(rd, keepalive):
    """New upstream connections per target in one round: the namespace's accepts while the
    target was measured minus the client's own connections, which the direct run of the same
    round measures. Only for keep-alive scenarios with a direct run (sets `backend_accepts`
    on each record of `rd` in place)."""
    if "direct" not in rd or not keepalive:
        return
    client = rd["direct"]["tcp_accepts"]
    rd["direct"]["backend_accepts"] = client
    for lbl, rec in rd.items():
        if lbl != "direct":
            rec["backend_accepts"] = rec["tcp_accepts"] - client


# ---------------------------------------------------------------- a scenario's rounds

def metrics():
    """The figures taken per target and round, as functions of one run's record."""
    return {
        "rps": lambda r: r["rps"],
        "proxy_cpu_us_per_req": lambda r: r["proxy_cpu_us_per_req"],
        "p50_us": lambda r: r["latency_us"]["p50"],
        "p90_us": lambda r: r["latency_us"]["p90"],
        "p99_us": lambda r: r["latency_us"]["p99"],
        "p999_us": lambda r: r["latency_us"]["p999"],
        "max_us": lambda r: r["latency_us"]["max"],
        "peak_rss_kib": lambda r: r["memory"]["vmhwm_kib"],
        "pss_kib": lambda r: r["memory"]["pss_kib"],
        "backend_accepts": lambda r: r.get("backend_accepts"),
        "tcp_accepts": lambda r: r["tcp_accepts"],
        "accepts_per_response": lambda r: (r["tcp_accepts"] / r["responses"]) if r["responses"] else None,
        "bytes_per_s": lambda r: r.get("bytes_per_s"),
    }


RATIO_KEYS = ("rps", "proxy_cpu_us_per_req", "p50_us", "p99_us", "p999_us", "peak_rss_kib")


def target_names(rounds):
    """Every target measured in any round, in the order first measured."""
    names = []
    for rd in rounds:
        for n in rd:
            if n not in names:
                names.append(n)
    return names


def summarize(rounds, ref=REF, proxy_cores=1):
    """Medians per target over the rounds it was measured in, and per-round ratios to `ref`
    (rounds where both were measured) with their median. A target that failed part-way has
    fewer rounds; `rounds` counts them. `proxy_cores`: how many cores the proxies were pinned
    to; req/s per proxy core is the median req/s over it (none for the backend itself)."""
    keys = metrics()
    med, ratios = {}, {}
    names = target_names(rounds)
    for n in names:
        mine = [rd[n] for rd in rounds if n in rd]
        med[n] = {k: median([f(r) for r in mine]) for k, f in keys.items()}
        med[n]["rps_per_proxy_core"] = (med[n]["rps"] / proxy_cores
                                        if n != "direct" and med[n]["rps"] is not None else None)
        med[n]["rounds"] = len(mine)
        med[n]["errors"] = sum(r["error_count"] for r in mine)
        med[n]["non_2xx"] = sum(sum(r["non_2xx"].values()) for r in mine)
        med[n]["core_busy_pct"] = {c: median([r["core_busy_pct"].get(c) for r in mine])
                                   for c in mine[0]["core_busy_pct"]}
        if ref in names and n != ref:
            ratios[n] = {}
            for k in RATIO_KEYS:
                per = [ratio(keys[k](rd[n]), keys[k](rd[ref])) if (n in rd and ref in rd) else None
                       for rd in rounds]
                ratios[n][k] = {"per_round": per, "median": median(per)}
    return med, ratios


def window_share_pct(sc, name, what):
    """Median CPU seconds per measured-window second (in %, 100 = one core) of the proxy
    (`what` = "proxy_cpu_s") or of the backend ("backend") of one target."""
    vals = []
    for rd in sc["rounds"]:
        r = rd.get(name)
        if r is None:
            continue
        w = r["sample_window_s"] or r["duration_s"]
        if what == "proxy_cpu_s":
            vals.append(100.0 * r["proxy_cpu_s"] / w)
        elif name == "direct":
            vals.append(100.0 * r["proxy_cpu_s"] / w)  # the target is the backend itself
        elif r.get("backend_cpu_us_per_req") is not None:
            vals.append(r["backend_cpu_us_per_req"] * r["responses"] / 1e6 / w * 100.0)
    return median(vals) or 0.0


def response_shares(sc):
    """{target: {backend: median share of the responses}} from ringload's by_server counts."""
    out = {}
    for name in target_names(sc["rounds"]):
        tot = {}
        for rd in sc["rounds"]:
            if name not in rd:
                continue
            n = sum(rd[name]["by_server"].values()) or 1
            for k, v in rd[name]["by_server"].items():
                tot.setdefault(k, []).append(v / n)
        out[name] = {k: median(v) for k, v in sorted(tot.items())}
    return out


def proxy_core_count(options):
    return len(parse_cores(options["proxy_cores"]))


def enrich(res):
    """Recomputes every scenario's medians, ratios (and (e)'s shares) from its rounds with the
    current rules, so that older results files gain the figures added since."""
    cores = proxy_core_count(res["options"])
    for sc in res["scenarios"]:
        if not sc["rounds"]:
            continue
        sc["median"], sc["ratio_to_nginx"] = summarize(sc["rounds"], proxy_cores=cores)
        if sc["id"] == "e":
            sc["share"] = response_shares(sc)
    return res


# ---------------------------------------------------------------- across result files

def scaling(results):
    """Rows of the scaling table: one per (results file, scenario), ordered by scenario, then
    machine size, then workers. Each row: the layout and, per target, the median req/s, req/s
    per proxy core, CPU us per request and their ratios to nginx."""
    rows = []
    for path, res in results:
        opts = res["options"]
        for sc in res["scenarios"]:
            if not sc.get("median"):
                continue
            targets = {}
            for n, m in sc["median"].items():
                if n == "direct":
                    continue
                rt = sc.get("ratio_to_nginx", {}).get(n, {})
                targets[n] = {
                    "rps": m["rps"],
                    "rps_per_proxy_core": m.get("rps_per_proxy_core"),
                    "proxy_cpu_us_per_req": m["proxy_cpu_us_per_req"],
                    "p50_us": m["p50_us"],
                    "rps_ratio": (rt.get("rps") or {}).get("median"),
                    "cpu_ratio": (rt.get("proxy_cpu_us_per_req") or {}).get("median"),
                    "p50_ratio": (rt.get("p50_us") or {}).get("median"),
                }
            rows.append({
                "file": path,
                "scenario": sc["id"],
                "title": sc["title"],
                "cpus": res["machine"]["cpus"],
                "machine": machine_label(res["machine"]),
                "layout": layouts.name_of(opts),
                "workers": opts["workers"],
                "proxy_cores": opts["proxy_cores"],
                "load_cores": opts["load_cores"],
                "connections": sc["connections"],
                "targets": targets,
                "failed": sc.get("failed", {}),
            })
    order = []
    for r in rows:
        if r["scenario"] not in order:
            order.append(r["scenario"])
    rows.sort(key=lambda r: (order.index(r["scenario"]), r["cpus"], r["workers"]))
    return rows


def machine_label(m):
    """"16 x Intel Xeon ..., Linux 6.18": the machine a figure comes from."""
    return f"{m['cpus']} x {m['cpu_model']}, Linux {m['kernel']}"

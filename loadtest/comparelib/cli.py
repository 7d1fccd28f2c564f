"""The command line of loadtest/compare (loadtest/compare.md describes every option)."""

import argparse
import atexit
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from . import layouts, render, scenarios
from .environment import enter_netns, in_netns, install, machine_info, netns_setup, ringlb_driver
from .host import ROOT, cleanup, format_cores, log, on_signal, set_nice
from .measure import callgrind

DESCRIPTION = "loadtest/compare: ringlb vs nginx vs HAProxy vs the backend directly, side by side."


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None (those options say their default in their help)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def parser():
    ap = argparse.ArgumentParser(prog="loadtest/compare", description=DESCRIPTION, formatter_class=_Help)
    ap.add_argument("--quick", action="store_true", help="3 rounds of 2 s, 0.5 s warm-up (about 4 minutes)")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default 3)")
    ap.add_argument("--duration", type=float, help="measured seconds per run (default 5, quick 2)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds before each run (default 1, quick 0.5)")
    ap.add_argument("--layout", choices=list(layouts.LAYOUTS),
                    help="cores, workers and connections for a machine size (explicit flags below win): "
                    + layouts.describe())
    ap.add_argument("--proxy-cores", default=None, help="cores of the proxy workers, e.g. 0 or 0-3 (default 0)")
    ap.add_argument("--load-cores", default=None, help="cores of the backend and generator (default: the others)")
    ap.add_argument("--workers", type=int, help="proxy workers (default: one per proxy core)")
    ap.add_argument("--connections", type=int, help="client connections in (a), (b), (c), (f), (g) (default 64)")
    ap.add_argument("--rate", type=float, help="open-loop rate of (b) (default: 50%% of the weakest proxy in (a))")
    ap.add_argument("--mixed-rate", type=float, default=3000, help="open-loop rate of (e)")
    ap.add_argument("--scenarios", default=scenarios.ALL, help="which scenarios, comma separated")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--callgrind-requests", default="2000,12000", help="two request counts to difference")
    ap.add_argument("--callgrind-connections", type=int, default=4)
    ap.add_argument("--callgrind-proxies", default="ringlb,nginx,haproxy")
    ap.add_argument("--nice", type=int, help="run every benchmark process at this niceness (e.g. -10 on a "
                    "machine shared with other work, so that they get the cores they are pinned to)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    ap.add_argument("--no-netns", action="store_true", help="stay in the shared network namespace")
    ap.add_argument("--out", default=os.path.join(ROOT, "loadtest", "results", "latest.json"))
    ap.add_argument("--render", metavar="JSON", nargs="+",
                    help="only re-render BENCHMARKS.md and latency.svg from results files: the first in full, "
                    "and with several a scaling table over all of them")
    ap.add_argument("--no-markdown", action="store_true", help="leave BENCHMARKS.md and latency.svg alone")
    return ap


def load_results(paths):
    out = []
    for p in paths:
        with open(p) as f:
            out.append((os.path.abspath(p), json.load(f)))
    return out


def main(script):
    """`script`: the path of loadtest/compare, re-run inside the network namespace."""
    ap = parser()
    opts = ap.parse_args()
    argv = sys.argv[1:]
    if opts.render:
        render.render(load_results(opts.render))
        return 0

    opts.rounds = opts.rounds or 3
    opts.duration = opts.duration or (2.0 if opts.quick else 5.0)
    opts.warmup = opts.warmup if opts.warmup is not None else (0.5 if opts.quick else 1.0)
    try:
        opts.layout, opts.proxy_cores, opts.load_cores, opts.workers, opts.connections = layouts.resolve(
            opts.layout, opts.proxy_cores, opts.load_cores, opts.workers, opts.connections, os.cpu_count())
    except ValueError as e:
        ap.error(str(e))
    opts.load_cores_str = ",".join(map(str, opts.load_cores))
    opts.callgrind_requests = [int(x) for x in opts.callgrind_requests.split(",")]
    opts.callgrind_proxies = [x for x in opts.callgrind_proxies.split(",") if x]
    set_nice(opts.nice)
    scen = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    unknown = [s for s in scen if s not in scenarios.ALL.split(",")]
    if unknown:
        ap.error(f"unknown scenario(s) {','.join(unknown)}: choose from {scenarios.ALL}")

    if not in_netns():
        # Things that need the network or the build happen outside the namespace.
        missing = [p for p in ("nginx", "haproxy") if not shutil.which(p)]
        if not opts.no_callgrind and not shutil.which("valgrind"):
            missing.append("valgrind")
        if "h" in scen and not shutil.which("h2load"):
            missing.append("nghttp2-client")
        if scenarios.NEEDS_TLS & set(scen) and not shutil.which("openssl"):
            missing.append("openssl")
        if missing:
            install(missing)
        if not opts.no_build:
            log("cargo build --release -p ringlb -p ringload")
            subprocess.run(["cargo", "build", "--release", "-p", "ringlb", "-p", "ringload"], cwd=ROOT, check=True)
        if not opts.no_netns:
            enter_netns(script, argv + ["--no-build"])
    netns = netns_setup()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(cleanup)

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    tmp = tempfile.mkdtemp(prefix="ringlb-compare-")
    for d in ("nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    res = {
        "started": started,
        "command": "loadtest/compare " + " ".join(a for a in argv if a != "--no-build"),
        "options": {"quick": opts.quick, "rounds": opts.rounds, "duration": opts.duration, "warmup": opts.warmup,
                    "layout": opts.layout,
                    "proxy_cores": ",".join(map(str, opts.proxy_cores)), "load_cores": opts.load_cores_str,
                    "workers": opts.workers, "connections": opts.connections, "nice": opts.nice,
                    "scenarios": ",".join(scen)},
        "netns": netns,
        "machine": machine_info(),
        "scenarios": [],
    }
    log(f"machine: {res['machine']['cpus']} cpus, {res['machine']['cpu_model']}, load {res['machine']['loadavg_at_start']}; "
        f"layout {opts.layout}: proxy cores {format_cores(opts.proxy_cores)} ({opts.workers} workers), "
        f"load cores {format_cores(opts.load_cores)}, {opts.connections} connections; temp dir {tmp}")
    ok = True
    try:
        scenarios.run_all(opts, tmp, res, scen)
        if not opts.no_callgrind:
            log("callgrind: user-space instructions per request")
            res["callgrind"] = callgrind(opts, tmp)
    except Exception as e:  # noqa: BLE001 - record what ran, then fail loudly
        ok = False
        res["failure"] = repr(e)
        log(f"FAILED: {e!r} (logs kept in {tmp})")
    finally:
        cleanup()
    res["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    drivers = set()
    for sc in res["scenarios"]:
        for rd in sc["rounds"]:
            for r in rd.values():
                if r.get("driver"):
                    drivers.add(r["driver"])
    res["ringload_driver"] = ",".join(sorted(drivers))
    res["ringlb_driver"] = ringlb_driver(tmp)
    errs = [(sc["id"], n, v["errors"] + v["non_2xx"]) for sc in res["scenarios"] for n, v in sc["median"].items()
            if v["errors"] + v["non_2xx"]]
    res["errors_seen"] = [{"scenario": s, "target": n, "count": c} for s, n, c in errs]
    res["failures"] = [{"scenario": sc["id"], "target": n, "reason": why}
                       for sc in res["scenarios"] for n, why in sc.get("failed", {}).items()]
    with open("/proc/loadavg") as f:
        res["machine"]["loadavg_at_end"] = f.read().split()[:3]
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    with open(opts.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"wrote {opts.out}")
    if not opts.no_markdown and res["scenarios"]:
        render.render([(os.path.abspath(opts.out), res)])
    for s, n, c in errs:
        log(f"ERRORS: scenario {s}, {n}: {c} failed requests or non-2xx responses (see {opts.out})")
    for f in res["failures"]:
        log(f"FAILED: scenario {f['scenario']}, {f['target']}: {f['reason']}")
    if res["failures"]:
        ok = False
        log(f"logs of every process kept in {tmp}")
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1

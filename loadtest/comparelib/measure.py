"""Measuring: one generator run against one target with the proxy's CPU, memory, core busy
shares and TCP accepts sampled around the measured window; a scenario's interleaved rounds;
user-space instructions per request under callgrind."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time

from . import summary
from .environment import install
from .host import (CHILDREN, CLK_TCK, NICE, RINGLB, RINGLOAD, cpu_times, fresh_port, log, passive_opens,
                   proc_ticks, set_autogroup_nice, spawn, stop, wait_listening)
from .proxies import Target, haproxy_config, nginx_config, ringlb_config, start_backends, start_proxy

H2_STREAMS = 100  # concurrent streams per HTTP/2 connection in scenario (h)


class Load:
    """What drives a target: ringload (HTTP/1.1, plain or TLS) or h2load (HTTP/2 over TLS)."""

    def __init__(self, connections, args=(), tool="ringload", scheme="http", path="/", streams=None):
        self.connections, self.args, self.tool = connections, list(args), tool
        self.scheme, self.path, self.streams = scheme, path, streams

    @property
    def keepalive(self):
        return "--no-keepalive" not in self.args

    def describe(self):
        return {"tool": self.tool, "connections": self.connections, "args": self.args, "scheme": self.scheme,
                "path": self.path, "streams": self.streams}


def ringload_cmd(opts, port, conns, extra, duration=None, warmup=None, scheme="http", path="/"):
    tls = ["--insecure"] if scheme == "https" else []
    return (["taskset", "-c", opts.load_cores_str, RINGLOAD, "-t", str(len(opts.load_cores)),
             "-c", str(conns), "-d", f"{duration or opts.duration}s",
             "--warmup", f"{warmup if warmup is not None else opts.warmup}s", "--json"]
            + tls + extra + [f"{scheme}://127.0.0.1:{port}{path}"])


def h2load_cmd(opts, port, load, logfile):
    """h2load, closed loop, `load.streams` streams per connection, over TLS with ALPN h2; its
    own warm-up (`--warm-up-time`), whose requests it neither counts nor logs."""
    threads = max(1, min(len(opts.load_cores), load.connections))
    return ["taskset", "-c", opts.load_cores_str, "h2load", "-t", str(threads), "-c", str(load.connections),
            "-m", str(load.streams), "-D", f"{int(opts.duration * 1000)}ms",
            "--warm-up-time", f"{int(opts.warmup * 1000)}ms", "--log-file", logfile,
            f"https://127.0.0.1:{port}{load.path}"]


def parse_h2load(text):
    """h2load's end-of-run text -> its counts, rate, traffic and the negotiated TLS/ALPN."""
    out = {}
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    out["rps"] = float(m.group(1)) if m else None
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    out["requests"] = dict(zip(keys, (int(x) for x in m.groups()))) if m else None
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    out["status"] = ({k: int(v) for k, v in zip(("2xx", "3xx", "4xx", "5xx"), m.groups())} if m else None)
    m = re.search(r"traffic: \S+ \((\d+)\) total", text)
    out["bytes"] = int(m.group(1)) if m else None
    for key, label in (("tls_protocol", "TLS Protocol"), ("cipher", "Cipher"), ("key_exchange", "Server Temp Key"),
                       ("alpn", "Application protocol")):
        m = re.search(rf"^{label}: (.+)$", text, re.M)
        out[key] = m.group(1).strip() if m else None
    return out


def h2load_report(text, log_lines, duration):
    """h2load's text and per-request log (start us since the epoch, status, us to the end of
    the response; warm-up requests are not in it) -> a record shaped like `ringload --json`.
    Raises RuntimeError when h2 was not negotiated or nothing succeeded."""
    h = parse_h2load(text)
    if h["requests"] is None or h["status"] is None:
        raise RuntimeError(f"h2load printed no result: {text.strip()[-300:]}")
    if h["alpn"] != "h2":
        raise RuntimeError(f"HTTP/2 not negotiated (ALPN: {h['alpn'] or 'none'})")
    latencies = []
    for line in log_lines:
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].isdigit():
            latencies.append(int(parts[2]))
    latency = summary.percentiles(latencies)
    responses = sum(h["status"].values())
    errors = {"errored": h["requests"]["errored"], "timeout": h["requests"]["timeout"]}
    other = h["requests"]["failed"] - h["requests"]["errored"] - h["requests"]["timeout"]
    errors["failed"] = max(0, other)
    if h["requests"]["succeeded"] == 0:
        raise RuntimeError(f"h2load: no successful response ({h['requests']})")
    return {
        "requests": responses,
        "duration_s": duration,
        "rps": h["rps"],
        "status": {k: v for k, v in h["status"].items() if v},
        "errors": errors,
        "latency_us": latency,
        "bytes_per_s": (h["bytes"] / duration) if h["bytes"] is not None else None,
        "by_server": {},
        "driver": None,
        "tls": {k: h[k] for k in ("tls_protocol", "cipher", "key_exchange", "alpn")},
    }


def failure_summary(j):
    """"connect 512, timeout 3" from a ringload report that has no successful response."""
    errs = ", ".join(f"{k} {v}" for k, v in j.get("errors", {}).items() if v) or "no errors counted"
    status = ", ".join(f"{k}: {v}" for k, v in j.get("status", {}).items())
    return errs + (f"; statuses {status}" if status else "")


def measure(target, opts, load, backends_procs, tmp):
    """One run of `load` against `target`. Raises RuntimeError when the run failed."""
    logfile = None
    if load.tool == "h2load":
        logfile = os.path.join(tmp, f"h2load-{target.port}.tsv")
        cmd = h2load_cmd(opts, target.port, load, logfile)
    else:
        cmd = ringload_cmd(opts, target.port, load.connections, load.args, scheme=load.scheme, path=load.path)
    acc0 = passive_opens()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen = subprocess.Popen(NICE + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    CHILDREN.append(gen)
    set_autogroup_nice(gen.pid)
    # Sample after the warm-up so that CPU covers the measured window only.
    time.sleep(opts.warmup)
    t0 = time.time()
    cpu0 = cpu_times()
    tk0, tt0 = target.ticks(), target.task_ticks()
    accw0 = passive_opens()
    bk0 = sum(proc_ticks(p.pid) for p in backends_procs)
    try:
        out, err = gen.communicate(timeout=opts.duration + opts.warmup + 60)
    except subprocess.TimeoutExpired:
        stop(gen)
        raise RuntimeError(f"{load.tool} hung: {' '.join(cmd)}")
    CHILDREN.remove(gen)
    # The generator's own CPU, warm-up included (it has exited and been reaped, so its
    # time is in our children's rusage; the other children are still running).
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen_cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    tk1, tt1 = target.ticks(), target.task_ticks()
    bk1 = sum(proc_ticks(p.pid) for p in backends_procs)
    cpu1 = cpu_times()
    t1 = time.time()
    acc1 = passive_opens()
    accw1 = acc1
    if load.tool == "h2load":
        if gen.returncode != 0:
            raise RuntimeError(f"h2load failed ({gen.returncode}): {(out + err).strip()[-300:]}")
        with open(logfile) as f:
            j = h2load_report(out, f.readlines(), opts.duration)
        os.unlink(logfile)
    else:
        try:
            j = json.loads(out)
        except ValueError:
            j = None
        if gen.returncode != 0 and j is None:
            raise RuntimeError(f"ringload failed ({gen.returncode}): {' '.join(cmd)}\n{err.strip()}")
        # ringload exits non-zero, after its report, when nothing succeeded; older builds
        # exited 0 then, so look at the statuses either way.
        if not any(v for k, v in j["status"].items() if k[:1] in "23"):
            raise RuntimeError(f"no successful response: {failure_summary(j)}")
    responses = j["requests"]
    errors = {k: v for k, v in j["errors"].items() if v}
    non2xx = {k: v for k, v in j["status"].items() if not k.startswith("2")}
    cpu_us = summary.cpu_us_per_request(tk0, tk1, CLK_TCK, responses)
    rec = {
        "rps": j["rps"],
        "responses": responses,
        "duration_s": j["duration_s"],
        "latency_us": j["latency_us"],
        "errors": errors,
        "error_count": sum(errors.values()),
        "non_2xx": non2xx,
        "by_server": j.get("by_server", {}),
        "bytes_per_s": j.get("bytes_per_s"),
        "driver": j.get("driver"),
        "proxy_cpu_s": (tk1 - tk0) / CLK_TCK,
        "proxy_cpu_us_per_req": cpu_us,
        "proxy_cpu_task_sum_us_per_req": summary.cpu_us_per_request(tt0, tt1, CLK_TCK, responses),
        "backend_cpu_us_per_req": summary.cpu_us_per_request(bk0, bk1, CLK_TCK, responses),
        "sample_window_s": round(t1 - t0, 3),
        "generator_cpu_s_with_warmup": round(gen_cpu_s, 3),
        "generator_core_pct": round(100.0 * gen_cpu_s / (opts.duration + opts.warmup), 1),
        "core_busy_pct": summary.core_busy_pct(cpu0, cpu1),
        "tcp_accepts": accw1 - accw0,
        "tcp_accepts_with_warmup": acc1 - acc0,
        "memory": target.memory(),
        "command": " ".join(cmd),
    }
    if j.get("tls"):
        rec["tls"] = j["tls"]
    return rec


# ---------------------------------------------------------------- a scenario

def run_scenario(sid, title, opts, tmp, backend_specs, proxies, load, note="", tls=None, static_root=None,
                 keepalive=64):
    """Starts the backends and every target, then runs `opts.rounds` interleaved rounds.

    proxies: list of (kind, balance, label); kind "direct" means the first backend itself. A
    target that cannot start, or whose run fails, is recorded under `failed` with the reason
    and left out of the later rounds; the others go on. Backends that cannot start fail the
    whole scenario (RuntimeError)."""
    log(f"scenario {sid}: {title}")
    backends = start_backends(backend_specs, opts.load_cores_str, tmp)
    ports = [b[0] for b in backends]
    bprocs = [b[1] for b in backends]
    targets, failed = [], {}
    try:
        for kind, balance, label in proxies:
            if kind == "direct":
                t = Target("direct", "direct", ports[0], bprocs[0])
                t.cmd, t.config = backends[0][2], None
                targets.append(t)
                continue
            try:
                targets.append(start_proxy(kind, ports, opts, tmp, balance, label, tls=tls,
                                           static_root=static_root, keepalive=keepalive))
            except (RuntimeError, OSError) as e:
                failed[label] = f"did not start: {e}"
                log(f"  {sid} {label}: FAILED to start: {e}")
        rounds = []
        for r in range(opts.rounds):
            rd = {}
            for t in targets:
                if t.label in failed:
                    continue
                try:
                    rec = measure(t, opts, load, bprocs if t.kind != "direct" else [], tmp)
                except (RuntimeError, OSError, ValueError, KeyError) as e:
                    failed[t.label] = f"round {r + 1}: {e}"
                    log(f"  {sid} round {r + 1} {t.label:>16}: FAILED: {e}")
                    if t.kind != "direct":
                        stop(t.proc)
                    continue
                rd[t.label] = rec
                e = f" ERRORS {rec['errors']}" if rec["error_count"] else ""
                n2 = f" non-2xx {rec['non_2xx']}" if rec["non_2xx"] else ""
                log(f"  {sid} round {r + 1} {t.label:>16}: {rec['rps']:>10.0f} req/s  "
                    f"cpu {rec['proxy_cpu_us_per_req'] or 0:6.2f} us/req  p50 {rec['latency_us']['p50']} "
                    f"p99 {rec['latency_us']['p99']} p99.9 {rec['latency_us']['p999']} us  "
                    f"accepts {rec['tcp_accepts']}{e}{n2}")
            summary.backend_accepts(rd, load.keepalive)
            rounds.append(rd)
        med, ratio = summary.summarize(rounds, proxy_cores=len(opts.proxy_cores))
        sc = {
            "id": sid,
            "title": title,
            "note": note,
            "connections": load.connections,
            "ringload_args": load.args,
            "load": load.describe(),
            "backends": [{"port": p, "command": " ".join(c)} for p, _, c in backends],
            "targets": {t.label: {"kind": t.kind, "port": t.port, "command": " ".join(t.cmd),
                                  "config": open(t.config).read() if t.config else None}
                        for t in targets},
            "rounds": rounds,
            "median": med,
            "ratio_to_nginx": ratio,
        }
        if failed:
            sc["failed"] = failed
        return sc
    finally:
        for t in targets:
            if t.kind != "direct":
                stop(t.proc)
        for _, p, _ in backends:
            stop(p)


# ---------------------------------------------------------------- callgrind

def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no summary line in {path}")


def callgrind(opts, tmp):
    """User-space instructions per proxied request, by differencing two request counts."""
    if not shutil.which("valgrind"):
        install(["valgrind"])
    n_small, n_large = opts.callgrind_requests
    res = {"requests": [n_small, n_large], "connections": opts.callgrind_connections, "proxies": {},
           "note": ("ringlb runs with io = \"epoll\" here, the driver whose costs are system calls "
                    "that a user-space count sees (valgrind 3.19 passes io_uring's calls through, and the "
                    "kernel then does the I/O out of its sight); the throughput runs use io = \"auto\", "
                    "i.e. io_uring, where ringlb's own user-space count is higher (monoio's ring "
                    "bookkeeping per operation) and its kernel time lower. One worker each; nginx "
                    "with master_process off; daemon off. Instructions are Ir of every thread "
                    "(callgrind's summary line), client and backend not included.")}
    backends = start_backends([[]], opts.load_cores_str, tmp)
    bport = backends[0][0]
    try:
        for kind in opts.callgrind_proxies:
            counts = {}
            for n in (n_small, n_large):
                port = fresh_port()
                out = os.path.join(tmp, f"callgrind.{kind}.{n}.out")
                conf = os.path.join(tmp, f"cg-{kind}-{n}.conf")
                if kind == "ringlb":
                    with open(conf, "w") as f:
                        f.write(ringlb_config(port, [bport], 1, "round_robin", io="epoll"))
                    target = [RINGLB, "-c", conf]
                elif kind == "nginx":
                    with open(conf, "w") as f:
                        f.write(nginx_config(port, [bport], 1, [0], "round_robin", tmp, master=False))
                    target = ["nginx", "-c", conf, "-e", os.path.join(tmp, "nginx-cg.stderr.log")]
                elif kind == "haproxy":
                    with open(conf, "w") as f:
                        f.write(haproxy_config(port, [bport], 1, [0], "round_robin").replace(
                            "    cpu-map auto:1/1-1 0\n", ""))
                    target = ["haproxy", "-db", "-f", conf]
                else:
                    raise ValueError(kind)
                cmd = ["taskset", "-c", ",".join(map(str, opts.proxy_cores)), "valgrind", "--tool=callgrind",
                       f"--callgrind-out-file={out}"] + target
                logf = open(os.path.join(tmp, f"callgrind.{kind}.{n}.log"), "w")
                p = spawn(cmd, stderr=logf, stdout=logf, env=dict(os.environ, RINGLB_LOG="warn"))
                wait_listening(port, p, timeout=120, what=f"{kind} under valgrind")
                time.sleep(1.0)
                lcmd = ["taskset", "-c", opts.load_cores_str, RINGLOAD, "-t", "1", "-c",
                        str(opts.callgrind_connections), "-n", str(n), "--timeout", "30s", "--json",
                        f"http://127.0.0.1:{port}/"]
                t_load = time.time()
                r = subprocess.run(NICE + lcmd, capture_output=True, text=True, timeout=600)
                t_load = time.time() - t_load
                if r.returncode != 0:
                    raise RuntimeError(f"ringload failed under callgrind: {r.stderr}")
                j = json.loads(r.stdout)
                stop(p, signal.SIGTERM, timeout=120)
                counts[n] = {"instructions": callgrind_total(out), "responses": j["requests"],
                             "errors": {k: v for k, v in j["errors"].items() if v},
                             "command": " ".join(cmd), "load_command": " ".join(lcmd)}
                log(f"  callgrind {kind} n={n}: {counts[n]['instructions']:,} Ir, "
                    f"{j['requests']} responses in {t_load:.1f} s, errors {counts[n]['errors']}")
            d_ins = counts[n_large]["instructions"] - counts[n_small]["instructions"]
            d_req = counts[n_large]["responses"] - counts[n_small]["responses"]
            res["proxies"][kind] = {"runs": counts, "instructions_per_request": d_ins / d_req if d_req else None}
            log(f"  callgrind {kind}: {res['proxies'][kind]['instructions_per_request']:,.0f} instructions/request")
    finally:
        for _, p, _ in backends:
            stop(p)
    if "nginx" in res["proxies"]:
        base = res["proxies"]["nginx"]["instructions_per_request"]
        for k, v in res["proxies"].items():
            v["ratio_to_nginx"] = v["instructions_per_request"] / base if base else None
    return res

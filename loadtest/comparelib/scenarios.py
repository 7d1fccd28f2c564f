"""What each scenario runs: backends, targets, generator and the note printed with its table.

(a)-(e) are HTTP/1.1 in plain text. (f)-(h) put TLS (and HTTP/2) on the client side of the
proxies, with one certificate for all three; (s) serves a file from disk. Every proxy gets the
same settings where it has them (loadtest/compare.md, "Configurations")."""

from . import summary
from .host import log
from .measure import H2_STREAMS, Load, run_scenario
from .proxies import STATIC_PATH, make_certificate, make_static_root

ALL = "a,b,c,d,e,f,g,h,s"
NEEDS_TLS = set("fgh")

FOUR = [("direct", None, "direct"), ("ringlb", "round_robin", "ringlb"),
        ("nginx", "round_robin", "nginx"), ("haproxy", "round_robin", "haproxy")]
PROXIES = FOUR[1:]
# Upstream keep-alive connections cached per worker in (h), where 100 streams per client
# connection put hundreds of requests in flight per worker: with the usual 64, most would
# open and close an upstream connection per request and (h) would measure that instead.
H2_UPSTREAM_KEEPALIVE = 512


def run_all(opts, tmp, res, scen):
    """Runs the scenarios in `scen` (ids) in their fixed order, appending each to
    res["scenarios"]; a scenario whose backends cannot start is recorded with its failure."""
    c = opts.connections
    tls = None

    def cert():
        nonlocal tls
        if tls is None:
            tls = make_certificate(tmp)
            res["tls_certificate"] = tls["kind"]
            log(f"TLS certificate for every proxy: {tls['kind']} ({tls['cert']})")
        return tls

    def add(sid, fn):
        if sid not in scen:
            return
        try:
            res["scenarios"].append(fn())
        except Exception as e:  # noqa: BLE001 - record it, go on with the next scenario
            log(f"scenario {sid} FAILED: {e!r}")
            res["scenarios"].append({"id": sid, "title": f"scenario {sid}", "note": "", "connections": c,
                                     "ringload_args": [], "backends": [], "targets": {}, "rounds": [],
                                     "median": {}, "ratio_to_nginx": {}, "failed": {"scenario": repr(e)}})

    add("a", lambda: run_scenario(
        "a", f"Closed loop, max rate, {c} connections", opts, tmp, [[]], FOUR, Load(c)))

    def b():
        rate = opts.rate
        if rate is None:
            a = next((s for s in res["scenarios"] if s["id"] == "a" and s["median"]), None)
            rates = [v["rps"] for k, v in a["median"].items() if k != "direct"] if a else []
            if rates:
                rate = 0.5 * min(rates)
                rate = float(int(rate / 1000) * 1000) or 1000.0
            else:
                rate = 10000.0
        return run_scenario(
            "b", f"Open loop at {rate:,.0f} req/s, {c} connections", opts, tmp, [[]], FOUR,
            Load(c, ["-R", str(rate)]),
            note=(f"The rate is {'given by --rate' if opts.rate else '50% of the weakest proxy in (a), rounded down'}; "
                  "latency is measured from each request's intended send time (coordinated omission corrected). "
                  "Proxy CPU per request at a fixed rate below saturation is the primary cost figure."))
    add("b", b)

    add("c", lambda: run_scenario(
        "c", f"A new client connection per request, closed loop, {c} concurrent", opts, tmp, [[]], FOUR,
        Load(c, ["--no-keepalive"]),
        note=("`ringload --no-keepalive`: every request opens a connection and sends `Connection: close`. "
              "The accepts column counts every TCP accept in the namespace per response: 1.00 means the "
              "proxy reused its upstream connections, 2.00 that it opened one per request.")))

    add("d", lambda: run_scenario(
        "d", "1 MiB responses, closed loop, 16 connections", opts, tmp, [["--body-bytes", "1048576"]], FOUR,
        Load(16),
        note="`ringload serve --body-bytes 1048576`. nginx runs with `proxy_max_temp_file_size 0` "
             "(stream through its memory buffers, never spill to disk), its default buffers otherwise."))

    def e():
        mixed = [["--delay-dist", "uniform:500us,1500us"], ["--delay-dist", "uniform:500us,1500us"],
                 ["--delay-dist", "exp:20ms"]]
        props = [("ringlb", "round_robin", "ringlb rr"), ("ringlb", "least_conn", "ringlb least_conn"),
                 ("ringlb", "least_time", "ringlb least_time"), ("nginx", "round_robin", "nginx"),
                 ("nginx", "least_conn", "nginx least_conn")]
        sc = run_scenario(
            "e", f"Mixed backend latency, open loop at {opts.mixed_rate:,.0f} req/s, 256 connections",
            opts, tmp, mixed, props, Load(256, ["-R", str(opts.mixed_rate)]),
            note=("Three backends: two answer after uniform 0.5-1.5 ms, one after an exponential delay of "
                  "mean 20 ms (`ringload serve --delay-dist uniform:500us,1500us` x2, `--delay-dist exp:20ms`). "
                  "Ratios are to nginx round robin. Proxy CPU per request here includes idle timers and is "
                  "not the figure to compare; latency and the share sent to the slow backend are."))
        sc["share"] = summary.response_shares(sc)
        sc["backend_labels"] = {f"127.0.0.1:{b['port']}": ("slow" if "exp:20ms" in b["command"] else "fast")
                                + f" :{b['port']}" for b in sc["backends"]}
        return sc
    add("e", e)

    tls_note = ("One certificate for all three proxies, generated by compare with openssl: ECDSA P-256 "
                "(prime256v1), self-signed for localhost and 127.0.0.1; TLS 1.2 and 1.3 allowed on every "
                "proxy, ALPN h2 and http/1.1 offered. ")
    add("f", lambda: run_scenario(
        "f", f"TLS, a new connection (full handshake) per request, closed loop, {c} concurrent", opts, tmp,
        [[]], PROXIES, Load(c, ["--no-keepalive"], scheme="https"), tls=cert(),
        note=(tls_note + "`ringload --no-keepalive --insecure https://...`: every request opens a TCP "
              "connection and makes a full TLS handshake (ringload's rustls client offers no session to "
              "resume; TLS 1.3, X25519), then sends `Connection: close`; the handshake counts in the "
              "latency. Requests/s here are handshakes/s; per proxy core is the figure to compare.")))

    add("g", lambda: run_scenario(
        "g", f"TLS keep-alive, closed loop, {c} connections", opts, tmp, [[]], PROXIES,
        Load(c, scheme="https"), tls=cert(),
        note=(tls_note + "`ringload --insecure https://...` over HTTP/1.1 (ALPN http/1.1): the "
              "connections' handshakes happen in the warm-up, so this is the cost of TLS records "
              "per request on top of (a).")))

    h2c = max(4, 4 * opts.workers)
    add("h", lambda: run_scenario(
        "h", f"HTTP/2 over TLS (h2load), {h2c} connections x {H2_STREAMS} streams, closed loop", opts, tmp,
        [[]], PROXIES, Load(h2c, tool="h2load", scheme="https", streams=H2_STREAMS), tls=cert(),
        keepalive=H2_UPSTREAM_KEEPALIVE,
        note=(tls_note + f"`h2load -c {h2c} -m {H2_STREAMS}` (nghttp2's h2load, OpenSSL; it negotiates what "
              "the `tls` key of each run in the JSON records), warm-up by `--warm-up-time`; latency "
              "percentiles from its per-request log (`--log-file`). Upstream: HTTP/1.1 with "
              f"`keepalive {H2_UPSTREAM_KEEPALIVE}` per worker for ringlb and nginx (HAProxy pools without "
              "a limit), so that the hundreds of requests in flight per worker reuse upstream connections. "
              "Stream limits are each proxy's default (nginx 128, HAProxy 100).")))

    add("s", lambda: run_scenario(
        "s", "A 1 MiB static file, closed loop, 16 connections", opts, tmp, [[]], PROXIES[:2],
        Load(16, path=STATIC_PATH), static_root=make_static_root(tmp),
        note=(f"`GET {STATIC_PATH}`, 1 MiB of random bytes on the temporary directory's file system: ringlb "
              "`root = ...` in a `/static/` location, nginx `root` with `sendfile on` (its other file "
              "settings at their defaults, no `open_file_cache`). HAProxy serves no files and is not in "
              "this one.")))

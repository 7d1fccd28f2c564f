"""The things the generator talks to: `ringload serve` backends and ringlb, nginx and HAProxy
in front of them, each configured alike where the proxies allow (loadtest/compare.md has the
table), plus the TLS certificate and the static file the second-round scenarios use."""

import functools
import os
import re
import subprocess
import time

from .host import (RINGLB, RINGLOAD, children_of, fresh_port, parse_cores, proc_ticks, pss_kib, spawn,
                   status_kib, stop, task_ticks, wait_listening)

STATIC_PATH = "/static/1m.bin"  # the file scenario (s) fetches, under the static root
STATIC_BYTES = 1 << 20


class Target:
    """One thing the generator talks to: the backend directly, or a proxy in front of it."""

    def __init__(self, name, kind, port, proc, label=None):
        self.name, self.kind, self.port, self.proc = name, kind, port, proc
        self.label = label or name
        self.cmd, self.config, self.logfile = None, None, None

    def pids(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} (pid {self.proc.pid}) has exited: status {self.proc.returncode}")
        pids = [self.proc.pid]
        if self.kind in ("nginx", "ringlb-wrapper"):
            pids += children_of(self.proc.pid)
        return pids

    def ticks(self):
        return sum(proc_ticks(p) for p in self.pids())

    def task_ticks(self):
        return sum(task_ticks(p) for p in self.pids())

    def memory(self):
        pids = self.pids()
        return {
            "vmhwm_kib": sum(status_kib(p, "VmHWM") for p in pids),
            "vmrss_kib": sum(status_kib(p, "VmRSS") for p in pids),
            "pss_kib": sum(pss_kib(p) for p in pids),
            "processes": len(pids),
        }


def start_backends(specs, load_cores, tmp):
    """specs: list of lists of extra `ringload serve` args. Returns [(port, proc, cmd)]."""
    out = []
    threads = str(len(parse_cores(load_cores)))
    for i, extra in enumerate(specs):
        port = fresh_port()
        cmd = ["taskset", "-c", load_cores, RINGLOAD, "serve", "--listen", f"127.0.0.1:{port}",
               "--threads", threads] + extra
        path = os.path.join(tmp, f"backend{i}-{port}.log")
        p = spawn(cmd, stderr=open(path, "w"))
        wait_listening(port, p, what=f"backend {port}", logfile=path)
        out.append((port, p, cmd))
    return out


# ---------------------------------------------------------------- front-side material

def make_certificate(tmp):
    """One self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, shared by all three
    proxies: {"cert", "key", "pem" (certificate then key, for HAProxy's crt)}."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key, pem, cnf = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "haproxy.pem", "openssl.cnf"))
    # A configuration of our own: no dependence on the system's openssl.cnf (a benchmark host
    # may have the binary only), and no CA extensions on what is an end-entity certificate.
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\n[dn]\n")
    subprocess.run(["openssl", "req", "-config", cnf, "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    with open(pem, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return {"cert": cert, "key": key, "pem": pem, "kind": "ECDSA P-256 (prime256v1), self-signed"}


def make_static_root(tmp):
    """A root directory holding STATIC_PATH: 1 MiB of random bytes (incompressible)."""
    root = os.path.join(tmp, "static-root")
    path = root + STATIC_PATH
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(STATIC_BYTES))
    return root


@functools.lru_cache(maxsize=None)
def nginx_version():
    """(major, minor, patch) of the nginx on PATH, (0, 0, 0) if unknown."""
    try:
        r = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    except OSError:
        return (0, 0, 0)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", r.stdout + r.stderr)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


# ---------------------------------------------------------------- configurations

def ringlb_config(port, backends, workers, balance, io="auto", tls=None, static_root=None, keepalive=64):
    servers = ",\n".join(f'  {{ addr = "127.0.0.1:{b}" }}' for b in backends)
    front = ""
    if tls:
        front = (f'tls_certificate = "{tls["cert"]}"\n'
                 f'tls_certificate_key = "{tls["key"]}"\n'
                 'tls_protocols = ["TLSv1.2", "TLSv1.3"]\n'
                 "http2 = true\n")
    static = ""
    if static_root:
        static = f"""
  [[server.location]]
  path = "/static/"
  root = "{static_root}"
"""
    return f"""# written by loadtest/compare
[runtime]
workers = {workers}
pin_workers = true
shutdown_timeout = "2s"
io = "{io}"

[[server]]
listen = ["127.0.0.1:{port}"]
keepalive_requests = 1000000
{front}{static}
  [[server.location]]
  path = "/"
  proxy_pass = "bench"

[upstream.bench]
balance = "{balance}"
keepalive = {keepalive}
keepalive_requests = 100000
servers = [
{servers}
]
"""


def cpu_masks(cores):
    return " ".join(format(1 << c, "b") for c in cores)


def nginx_config(port, backends, workers, cores, balance, tmp, master=True, tls=None, static_root=None,
                 keepalive=64):
    lines = "\n".join(f"        server 127.0.0.1:{b};" for b in backends)
    method = "least_conn;" if balance == "least_conn" else ""
    affinity = f"worker_cpu_affinity {cpu_masks(cores[:workers] if len(cores) >= workers else cores)};"
    if not master:
        affinity = ""
    listen = f"listen 127.0.0.1:{port} reuseport;"
    extra_http = ""
    extra_server = ""
    if tls:
        # `http2 on;` replaced the listen parameter in nginx 1.25.1.
        if nginx_version() >= (1, 25, 1):
            listen = f"listen 127.0.0.1:{port} ssl reuseport;\n        http2 on;"
        else:
            listen = f"listen 127.0.0.1:{port} ssl http2 reuseport;"
        extra_server += (f"        ssl_certificate {tls['cert']};\n"
                         f"        ssl_certificate_key {tls['key']};\n"
                         "        ssl_protocols TLSv1.2 TLSv1.3;\n")
    if static_root:
        extra_http += "    sendfile on;\n"
        extra_server += f"        location /static/ {{\n            root {static_root};\n        }}\n"
    return f"""# written by loadtest/compare
daemon off;
master_process {"on" if master else "off"};
user root;
worker_processes {workers};
{affinity}
pid {tmp}/nginx-{port}.pid;
error_log {tmp}/nginx-{port}.error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8000;
}}
http {{
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
{extra_http}    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream bench {{
        {method}
{lines}
        keepalive {keepalive};
        keepalive_requests 100000;
        keepalive_timeout 60s;
    }}
    server {{
        {listen}
{extra_server}        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


def haproxy_config(port, backends, workers, cores, balance, tls=None):
    servers = "\n".join(f"    server s{i} 127.0.0.1:{b}" for i, b in enumerate(backends))
    algo = "leastconn" if balance == "least_conn" else "roundrobin"
    cpu = ",".join(str(c) for c in cores)
    bind = f"bind 127.0.0.1:{port}"
    if tls:
        # prefer-client-ciphers: the client's order, as nginx (ssl_prefer_server_ciphers off) and
        # rustls do by default, so that all three pick the same cipher for the same client.
        bind += f" ssl crt {tls['pem']} alpn h2,http/1.1 ssl-min-ver TLSv1.2 prefer-client-ciphers"
    return f"""# written by loadtest/compare
global
    nbthread {workers}
    cpu-map auto:1/1-{workers} {cpu}
    maxconn 8000

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s

frontend bench
    {bind}
    default_backend bench

backend bench
    balance {algo}
{servers}
"""


def start_proxy(kind, backends, opts, tmp, balance="round_robin", label=None, tls=None, static_root=None,
                keepalive=64):
    """Starts one proxy pinned to the proxy cores and waits until it listens. Raises
    RuntimeError (with the end of its log) if it exits or never listens."""
    port = fresh_port()
    cores = opts.proxy_cores
    workers = opts.workers
    pin = ",".join(str(c) for c in cores)
    name = (label or kind).replace(" ", "-")
    path = os.path.join(tmp, f"{name}-{port}.conf")
    if kind == "ringlb":
        with open(path, "w") as f:
            f.write(ringlb_config(port, backends, workers, balance, tls=tls, static_root=static_root,
                                 keepalive=keepalive))
        cmd = ["taskset", "-c", pin, RINGLB, "-c", path]
        env = dict(os.environ, RINGLB_LOG="warn")
    elif kind == "nginx":
        with open(path, "w") as f:
            f.write(nginx_config(port, backends, workers, cores, balance, tmp, tls=tls, static_root=static_root,
                                 keepalive=keepalive))
        cmd = ["taskset", "-c", pin, "nginx", "-c", path, "-e", os.path.join(tmp, f"nginx-{port}.stderr.log")]
        env = None
    elif kind == "haproxy":
        if static_root:
            raise ValueError("HAProxy serves no files")
        with open(path, "w") as f:
            f.write(haproxy_config(port, backends, workers, cores, balance, tls=tls))
        cmd = ["taskset", "-c", pin, "haproxy", "-db", "-f", path]
        env = None
    else:
        raise ValueError(kind)
    logfile = os.path.join(tmp, f"{name}-{port}.log")
    logf = open(logfile, "w")
    p = spawn(cmd, stderr=logf, stdout=logf, env=env)
    t = Target(name, kind, port, p, label)
    t.cmd, t.config, t.logfile = cmd, path, logfile
    try:
        wait_listening(port, p, what=name, logfile=logfile)
    except RuntimeError:
        stop(p)
        raise
    time.sleep(0.2)  # let every worker come up (nginx forks after binding)
    return t

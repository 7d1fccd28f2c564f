"""The machine and the tree being measured, package installs, the private network namespace."""

import os
import platform
import shutil
import signal
import subprocess
import sys

from .host import RINGLB, RINGLOAD, ROOT, log

NETNS_ENV = "RINGLB_COMPARE_NETNS"


def install(pkgs):
    log(f"installing {' '.join(pkgs)} from the distribution's packages: "
        f"apt-get update && apt-get install -y {' '.join(pkgs)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y"] + pkgs, check=True, env=env, stdout=subprocess.DEVNULL)


def _first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        return None
    text = (r.stdout + r.stderr).strip()
    return text.splitlines()[0] if text else None


def git_state():
    """The commit measured (`git rev-parse --short HEAD`) and whether tracked files differed
    from it (`git status --porcelain --untracked-files=no` not empty); None where the tree is
    no git checkout (a copy on a benchmark host)."""
    def git(*args):
        try:
            r = subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True)
        except OSError:
            return None
        return r.stdout.strip() if r.returncode == 0 else None
    full = git("rev-parse", "HEAD")
    if not full:
        return {"commit": None, "commit_full": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short", "HEAD"), "commit_full": full,
            "dirty": None if status is None else bool(status)}


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1])
    git = git_state()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "os": platform.platform(),
        "memory_gib": round(mem / 1048576, 1),
        "loadavg_at_start": load,
        "nginx": _first_line(["nginx", "-v"]),
        "haproxy": _first_line(["haproxy", "-v"]),
        "h2load": _first_line(["h2load", "--version"]) if shutil.which("h2load") else None,
        "openssl": _first_line(["openssl", "version"]) if shutil.which("openssl") else None,
        "ringload": _first_line([RINGLOAD, "--version"]),
        "ringlb": _first_line([RINGLB, "--version"]),
        "valgrind": _first_line(["valgrind", "--version"]) if shutil.which("valgrind") else None,
        "rustc": _first_line(["rustc", "--version"]) if shutil.which("rustc") else None,
        "git_commit": git["commit_full"],
        "git_short": git["commit"],
        "git_dirty": git["dirty"],
        "io_uring_disabled": open("/proc/sys/kernel/io_uring_disabled").read().strip()
        if os.path.exists("/proc/sys/kernel/io_uring_disabled") else None,
    }


def enter_netns(script, argv):
    """Re-run `script` inside a private network namespace: no stale process can share a port,
    and the namespace's TCP accept counter counts only this benchmark's connections."""
    if os.environ.get(NETNS_ENV) or not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        log("unshare -n is not permitted here: running in the shared network namespace "
            "(accept counts then include other processes' connections)")
        return False
    env = dict(os.environ, **{NETNS_ENV: "1"})
    cmd = ["unshare", "-n", "--", sys.executable, os.path.abspath(script)] + argv
    log("re-running inside a private network namespace (unshare -n)")
    # Our own child: forward signals to it, then return its status.
    p = subprocess.Popen(cmd, env=env)

    def fwd(signum, _f):
        p.send_signal(signum)
    signal.signal(signal.SIGINT, fwd)
    signal.signal(signal.SIGTERM, fwd)
    sys.exit(p.wait())


def in_netns():
    return bool(os.environ.get(NETNS_ENV))


def netns_setup():
    if os.environ.get(NETNS_ENV):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        # The defaults of a fresh namespace, stated: loopback TIME_WAIT reuse, wide port range.
        for key, val in (("net/ipv4/ip_local_port_range", "1024 65000"), ("net/ipv4/tcp_tw_reuse", "1"),
                         ("net/core/somaxconn", "4096")):
            try:
                with open(f"/proc/sys/{key}", "w") as f:
                    f.write(val)
            except OSError:
                pass
        return True
    return False


def ringlb_driver(tmp):
    """Which I/O driver ringlb said it used (its logs are kept only on failure, so look now)."""
    found = set()
    for name in os.listdir(tmp) if os.path.isdir(tmp) else []:
        if name.startswith("ringlb") and name.endswith(".log"):
            with open(os.path.join(tmp, name)) as f:
                t = f.read()
            if "epoll" in t or "legacy" in t.lower():
                found.add("epoll (see its log)")
    return ", ".join(sorted(found)) or "io = \"auto\" (io_uring unless it logged a fallback)"

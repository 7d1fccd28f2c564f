"""Child processes, ports and /proc readings: everything compare does to the local machine
while it measures."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RINGLB = os.path.join(ROOT, "target", "release", "ringlb")
RINGLOAD = os.path.join(ROOT, "target", "release", "ringload")
CLK_TCK = os.sysconf("SC_CLK_TCK")

CHILDREN = []  # every Popen this script started (each in its own process group)
NICE = []  # ["nice", "-n", N] when --nice is given


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- process hygiene

def set_nice(n):
    NICE[:] = [] if n is None else ["nice", "-n", str(n)]


def spawn(cmd, **kw):
    """Start a child in its own process group so that cleanup can end it and its children."""
    cmd = NICE + cmd
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    CHILDREN.append(p)
    set_autogroup_nice(p.pid)
    return p


def set_autogroup_nice(pid):
    """With autogroup scheduling (kernel.sched_autogroup_enabled = 1) a process's niceness
    counts only inside its session's group; each child here leads its own session, so --nice
    is applied to that group too, or it would change nothing against other sessions' work."""
    if NICE:
        try:
            with open(f"/proc/{pid}/autogroup", "w") as f:
                f.write(NICE[2])
        except OSError:
            pass


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """End one child (and its process group), politely first."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)
    else:
        # The leader is gone; workers it left behind (nginx) may still be in its group.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if p in CHILDREN:
        CHILDREN.remove(p)


def cleanup():
    for p in list(CHILDREN):
        try:
            stop(p, timeout=3.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def on_signal(signum, _frame):
    log(f"signal {signum}: stopping every process this script started")
    cleanup()
    sys.exit(128 + signum)


def log_tail(path, lines=3):
    """The last non-empty lines of a child's log, for a failure message."""
    try:
        with open(path, errors="replace") as f:
            text = [l.strip() for l in f.read().splitlines() if l.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])


# ---------------------------------------------------------------- ports

def fresh_port():
    """A port nothing listens on: ask the kernel for a free one, then check no one answers."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if not answers(port):
            return port
    raise RuntimeError("no free port found")


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_listening(port, proc, timeout=15.0, what="server", logfile=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log_tail(logfile) if logfile else ""
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on {port}"
                               + (f": {tail}" if tail else ""))
        if answers(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


# ---------------------------------------------------------------- cores

def parse_cores(text):
    """"0,2-3" -> [0, 2, 3]."""
    out = []
    for part in str(text).split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def format_cores(cores):
    """[0, 1, 2, 3, 8] -> "0-3,8": the short form, as taskset and the layouts write it."""
    out, run = [], []
    for c in sorted(set(cores)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


# ---------------------------------------------------------------- /proc readings

def proc_ticks(pid):
    """utime+stime of a whole process in ticks. The process-level line sums every thread,
    including threads that have exited (a sum over /proc/PID/task/*/stat would miss those)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def task_ticks(pid):
    """utime+stime summed over /proc/PID/task/*/stat (living threads only): a cross-check."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                total += int(rest[11]) + int(rest[12])
            except (FileNotFoundError, ProcessLookupError):
                pass
    except FileNotFoundError:
        pass
    return total


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[1]) == pid:
                kids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return kids


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, PermissionError):
        pass
    return 0


def cpu_times():
    """Per-CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+)\s+(.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + v[4]
                total = sum(v[:8])
                out[int(m.group(1))] = (total - idle, total)
    return out


def passive_opens():
    """TCP passive opens (accepts) of this network namespace."""
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("PassiveOpens")])

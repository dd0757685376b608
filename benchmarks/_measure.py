"""Run one embedding in its own process and measure it (Linux; parent side, stdlib only).

Figures per run:
  fit_s        the child's own wall time from starting to load IN.npz to the end of
               fit_transform (imports and interpreter start excluded)
  wall_s       the parent's wall time for the whole child process (interpreter start and
               imports included)
  peak_mb      the child's peak resident set size as the kernel counts it for that process
               alone (VmHWM of /proc/self/status at its end, _child_common.peak_rss_kb;
               interpreter and imports included, helper processes not; not ru_maxrss, which
               carries over the forking parent's size)
  tree_peak_mb the largest sum of RSS over the child and all its descendants, polled every
               0.1 s from /proc: catches worker processes (joblib/loky) the first figure
               cannot see; shared pages count once per process, so it is an upper bound
  cpu_s        user + system CPU seconds of the child and the descendants it reaped
               (getrusage(RUSAGE_CHILDREN) before and after): far less sensitive than wall
               time to other work on a shared machine
  load_mean    mean 1-minute load average sampled during the run (the machine's cores are
               os.cpu_count(); a load above that means the run shared its cores)
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _ppid_map():
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(b")") + 2:].split()
        out[int(d)] = (int(rest[1]), int(rest[21]) * PAGE)  # ppid, rss bytes
    return out


def tree_rss(pid: int) -> int:
    m = _ppid_map()
    kids: dict[int, list[int]] = {}
    for p, (pp, _) in m.items():
        kids.setdefault(pp, []).append(p)
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        if p in m:
            total += m[p][1]
        stack.extend(kids.get(p, []))
    return total


def run_measured(cmd: list[str], log_path: str, timeout: float | None = None,
                 env: dict | None = None, interval: float = 0.1,
                 mem_cap_mb: float | None = None) -> dict:
    """Run cmd, polling its process tree's RSS; kill its process group on timeout or when
    the tree's RSS passes mem_cap_mb (so a run that would exhaust the machine is stopped)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    loads: list[float] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        peak = [0]
        capped = threading.Event()
        done = threading.Event()

        def poll():
            n = 0
            while not done.is_set():
                if n % 10 == 0:
                    loads.append(os.getloadavg()[0])
                n += 1
                try:
                    peak[0] = max(peak[0], tree_rss(proc.pid))
                except Exception:
                    pass
                if mem_cap_mb and peak[0] > mem_cap_mb * 2**20 and not capped.is_set():
                    capped.set()
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                done.wait(interval)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call started, by its id
            rc = proc.wait()
        done.set()
        th.join()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return dict(returncode=rc, timed_out=timed_out, mem_capped=capped.is_set(),
                wall_s=wall, tree_peak_mb=peak[0] / 2**20, cpu_s=cpu,
                load_mean=sum(loads) / len(loads) if loads else float("nan"))

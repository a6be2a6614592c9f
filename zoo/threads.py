"""How many CPU threads to compute with: the CPUs this process may really use, not the machine's count.

A container's CPU quota (cgroup ``cpu.max``, or v1's ``cpu.cfs_quota_us``) and the process's CPU affinity
both limit what a process gets; ``os.cpu_count()`` knows neither. Threads beyond the real share, and
OpenMP threads that spin while they wait, made fine-tuning up to 12x slower on a busy machine
(bench/NOTES.md). Pure standard library: the torch-free ONNX runtime uses it too.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_requested: int | None = None  # --threads of the running command


def use(threads: int | None = None) -> int:
    """Compute with ``threads`` (default: OMP_NUM_THREADS, else default_threads()) in this process: torch's
    pool, now or when torch loads, and onnxruntime sessions made without a count. Returns the count."""
    global _requested
    _requested = threads
    count = threads or _env_threads() or default_threads()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
    else:  # torch reads these when it loads
        os.environ["OMP_NUM_THREADS"] = str(count)
        passive_wait()
    return count


def requested() -> int | None:
    """The --threads the running command was given, if any."""
    return _requested


def passive_wait() -> None:
    """OpenMP threads that run out of work sleep instead of spinning, unless the user chose otherwise.
    Spinning threads take the CPU from the threads still working whenever other jobs share the cores:
    fine-tuning on a loaded 2-core machine ran 4-12x faster with it (bench/threads.py). Works only when set
    before torch loads OpenMP, so the CLI calls it first."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs in this process's affinity mask, capped by its cgroup's CPU quota (rounded up, as loky does)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def default_threads(processes: int = 1) -> int:
    """Threads per process when the user gives none: the usable CPUs shared among ``processes``."""
    return max(1, usable_cpus() // max(1, processes))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors, or None when unlimited."""
    quotas = []
    for directory in _cgroup_dirs(root, proc_cgroup):
        quotas.append(_v2_quota(directory / "cpu.max"))
        quotas.append(_v1_quota(directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us"))
    known = [q for q in quotas if q is not None]
    return min(known) if known else None


def _cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """The directories that may hold this process's CPU limits: its own cgroup (v2 '0::/path' or v1's
    'N:cpu,cpuacct:/path') up to the root; inside a container the root is its own cgroup."""
    dirs = [root, root / "cpu", root / "cpu,cpuacct"]
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return dirs
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if not path.startswith("/"):
            continue
        if controllers == "":  # v2: one hierarchy
            top = root
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            top = root / controllers
        else:
            continue
        here = top / path.lstrip("/")
        while here != top and top in here.parents:
            dirs.append(here)
            here = here.parent
    return dirs


def _v2_quota(path: Path) -> float | None:
    try:
        quota, _, period = path.read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100000)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_quota(quota_path: Path, period_path: Path) -> float | None:
    try:
        quota, period = int(quota_path.read_text()), int(period_path.read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None

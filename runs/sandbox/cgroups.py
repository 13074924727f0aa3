"""Per-run control groups: whole-tree caps on memory, processes and CPU, and CPU time.

Resource limits (setrlimit) are per process, so a snippet that forks can multiply
them; a control group caps the whole tree. Both layouts are handled: cgroup v2
(one unified hierarchy) and v1 (one hierarchy per controller, as on the machines we
develop on). Where neither is writable (not root, unprivileged container) `create`
returns None and the sandbox falls back to its own watchdog.

A group's CPU accounting counts every process that was ever in it, whether or not
anyone waited for it: the figure for a run whose processes were killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PARENT = "codecarbon-playground"
CPU_PERIOD_US = 100_000
# A group's CPU weight by cgroup version: (the lowest, the default).
CPU_WEIGHTS = {2: ("1", "100"), 1: ("2", "1024")}
# v1 hierarchies we use: caps (memory, pids, cpu) and accounting (cpuacct). On hosts
# that mount cpu and cpuacct together both names lead to the same directory.
V1_REQUIRED = ("memory", "pids")
V1_OPTIONAL = ("cpu", "cpuacct")


class RunCgroup:
    """One run's cgroup, in v1 (several directories) or v2 (one directory)."""

    def __init__(self, dirs: dict[str, Path], version: int, cpu_capped: bool = False):
        self.dirs = dirs
        self.version = version
        self.cpu_capped = cpu_capped

    def _read(self, controller: str, name: str) -> str:
        try:
            return (self.dirs[controller] / name).read_text()
        except (OSError, KeyError):
            return ""

    def _stat(self, controller: str, name: str, key: str) -> int:
        for line in self._read(controller, name).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
        return 0

    def add(self, pid: int) -> None:
        for directory in set(self.dirs.values()):
            (directory / "cgroup.procs").write_text(str(pid))

    def set_background(self, background: bool) -> None:
        """The group's CPU weight: the lowest while it waits as a standby, the default
        once taken for a run. A process's nice value orders it only among the tasks of
        its own group: against another run's group a niced standby would still take
        half a shared core."""
        path = self.cpu_weight_file()
        if path is not None and path.exists():
            with contextlib.suppress(OSError):
                path.write_text(CPU_WEIGHTS[self.version][0 if background else 1])

    def cpu_weight_file(self) -> Path | None:
        if self.version == 2:
            return self.dirs["memory"] / "cpu.weight"
        return self.dirs["cpu"] / "cpu.shares" if "cpu" in self.dirs else None

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in set(self.dirs.values()):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return found

    def kill_all(self) -> None:
        if self.version == 2 and (self.dirs["memory"] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.dirs["memory"] / "cgroup.kill").write_text("1")
        # A process may fork between listing and killing: repeat until nothing is left.
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def memory_bytes(self) -> int:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        raw = self._read("memory", name).strip()
        return int(raw) if raw.isdigit() else 0

    def cpu_seconds(self) -> float | None:
        """CPU time of every process ever in the group; None where not accounted."""
        if self.version == 2:
            if not (self.dirs["memory"] / "cpu.stat").exists():
                return None
            return self._stat("memory", "cpu.stat", "usage_usec") / 1e6
        raw = self._read("cpuacct", "cpuacct.usage").strip()
        return int(raw) / 1e9 if raw.isdigit() else None

    def open_cpu_counter(self) -> int | None:
        """A read-only descriptor on the group's CPU counter, for the sandbox's supervisor
        to read at each section (runs/sandbox/launcher.py: RunClock); None where the
        group does not account CPU time."""
        if self.cpu_seconds() is None:
            return None
        if self.version == 2:
            path = self.dirs["memory"] / "cpu.stat"
        else:
            path = self.dirs["cpuacct"] / "cpuacct.usage"
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def peak_memory_bytes(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        raw = self._read("memory", name).strip()
        return int(raw) if raw.isdigit() else 0

    def hit_memory_limit(self) -> bool:
        if self.version == 2:
            return self._stat("memory", "memory.events", "oom_kill") > 0
        return self._stat("memory", "memory.oom_control", "oom_kill") > 0

    def hit_process_limit(self) -> bool:
        name = "pids.events"
        return self._stat("pids", name, "max") > 0

    def destroy(self) -> None:
        self.kill_all()
        for directory in set(self.dirs.values()):
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # Processes just killed may still be leaving the group.
                    os.sched_yield()
                    self.kill_all()


def _quota_us(cpus: float) -> int:
    return max(int(cpus * CPU_PERIOD_US), 1000)


def _v2_available() -> bool:
    try:
        enabled = (ROOT / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
    return {"memory", "pids"} <= set(enabled) and os.access(ROOT, os.W_OK)


def _v1_writable(controller: str) -> bool:
    return (ROOT / controller / "cgroup.procs").exists() and os.access(ROOT / controller, os.W_OK)


def _v1_available() -> bool:
    return all(_v1_writable(c) for c in V1_REQUIRED)


def create(memory_bytes: int, max_processes: int, cpus: float) -> RunCgroup | None:
    """A fresh cgroup with the run's caps, or None where cgroups are not writable."""
    # The owner's pid in the name lets `sweep_orphans` tell a dead worker's cgroup.
    name = f"run-{os.getpid()}-{uuid.uuid4().hex}"
    group = None
    try:
        if _v2_available():
            directory = ROOT / f"{PARENT}-{name}"
            group = RunCgroup({"memory": directory, "pids": directory}, 2)
            directory.mkdir()
            (directory / "memory.max").write_text(str(memory_bytes))
            (directory / "pids.max").write_text(str(max_processes))
            if (directory / "cpu.max").exists():
                (directory / "cpu.max").write_text(f"{_quota_us(cpus)} {CPU_PERIOD_US}")
                group.cpu_capped = True
            # Without swap accounting there is no file to write, and nothing to cap.
            with contextlib.suppress(OSError):
                (directory / "memory.swap.max").write_text("0")
            return group
        if _v1_available():
            dirs: dict[str, Path] = {}
            group = RunCgroup(dirs, 1)
            # Only what we use: moving a process into each v1 hierarchy costs ~3 ms.
            for controller in V1_REQUIRED + V1_OPTIONAL:
                if controller in V1_REQUIRED or _v1_writable(controller):
                    directory = ROOT / controller / PARENT / name
                    directory.mkdir(parents=True, exist_ok=True)
                    dirs[controller] = directory
            (dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
            (dirs["pids"] / "pids.max").write_text(str(max_processes))
            if "cpu" in dirs:
                (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(_quota_us(cpus)))
                group.cpu_capped = True
            return group
    except OSError as exc:
        if group is not None:
            group.destroy()
        logger.warning("cgroups not usable (%s); falling back to the sandbox watchdog", exc)
    return None


def run_dirs() -> list[Path]:
    if _v2_available():
        return list(ROOT.glob(f"{PARENT}-run-*"))
    return list(ROOT.glob(f"*/{PARENT}/run-*"))


def sweep_orphans() -> int:
    """Kill what is left in the cgroups of workers that died; returns groups removed."""
    removed = 0
    by_run: dict[str, list[Path]] = {}
    for directory in run_dirs():
        name = directory.name.removeprefix(f"{PARENT}-")
        by_run.setdefault(name, []).append(directory)
    for name, dirs in by_run.items():
        match = re.fullmatch(r"run-(\d+)-[0-9a-f]+", name)
        owner = int(match[1]) if match else 0  # unknown layout: nobody owns it
        if owner == os.getpid() or (owner and _alive(owner)):
            continue  # a live worker's run: it cleans up after itself
        if len(dirs) == 1 and _v2_available():
            group = RunCgroup({"memory": dirs[0], "pids": dirs[0]}, 2)
        else:
            group = RunCgroup({d.parent.parent.name: d for d in dirs}, 1)
        group.destroy()
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""Run one Python snippet in isolation, under limits, and report what happened.

Layers, outermost first (see README "Sandbox"):
- an unprivileged account with no supplementary groups (when the server is root);
- bubblewrap: no network, own PID namespace, read-only /usr, nothing of the host's
  files but the interpreter, a size-limited private /tmp and /dev/shm, dies with us;
  where namespaces are not allowed we fall back to the layers below and say so;
- a per-run cgroup capping the whole tree's memory and processes (where writable);
- resource limits and a seccomp filter set by runs/launcher.py inside the sandbox;
- a watchdog here: wall-clock timeout, output cap, file count, memory when no cgroup.

Nothing here knows about the database or about energy: callers get `Tick`s while the
snippet runs and one `Outcome` at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings

from . import cgroups

logger = logging.getLogger(__name__)

LAUNCHER_SOURCE = (Path(__file__).parent / "launcher.py").read_text()
LAUNCHER_CONFINEMENT_FAILED = 125
SANDBOX_TMP = "/tmp"
SHM_BYTES = 16 * 1024 * 1024
OPEN_FILES = 256
WATCH_SECONDS = 0.05
PR_SET_CHILD_SUBREAPER = 36

BUBBLEWRAP = "bubblewrap"
RLIMITS = "rlimits"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run snippets on this host as configured."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_bytes: int
    max_processes: int
    output_bytes: int
    disk_bytes: int
    max_files: int

    @classmethod
    def from_settings(cls, timeout_s: float | None = None) -> Limits:
        return cls(
            timeout_s=timeout_s or settings.EXECUTION_TIMEOUT,
            memory_bytes=settings.SANDBOX_MEMORY_MB * 1024 * 1024,
            max_processes=settings.SANDBOX_MAX_PROCESSES,
            output_bytes=settings.SANDBOX_OUTPUT_BYTES,
            disk_bytes=settings.SANDBOX_DISK_MB * 1024 * 1024,
            max_files=settings.SANDBOX_MAX_FILES,
        )

    def describe(self, limit: str) -> str:
        """The message a user reads when `limit` stopped their snippet."""
        mib = 1024 * 1024
        return {
            "memory": f"Memory limit exceeded: the snippet and its processes may use "
            f"{self.memory_bytes // mib} MiB in all.",
            "processes": f"Process limit exceeded: at most {self.max_processes} "
            "processes and threads at once.",
            "output": f"Output limit exceeded: stdout and stderr are capped at "
            f"{self.output_bytes // 1024} KiB each.",
            "disk": f"Disk limit exceeded: the snippet may write {self.disk_bytes // mib} "
            "MiB of files.",
            "files": f"Disk limit exceeded: the snippet may create at most {self.max_files} files.",
        }[limit]


@dataclass(frozen=True)
class Tick:
    """What the sandbox knows about a running snippet, about twice a second."""

    elapsed_s: float
    cpu_s: float
    memory_bytes: int
    stdout: str
    stderr: str


@dataclass
class Outcome:
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_memory_bytes: int = 0
    memory_byte_seconds: float = 0.0
    timed_out: bool = False
    limit: str = ""  # which limit stopped the snippet: memory, processes, output, ...
    limit_message: str = ""
    isolation: str = ""
    error: str = ""  # our own failure, never the snippet's


@dataclass
class _Stream:
    cap: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def feed(self, chunk: bytes) -> bool:
        """Keep up to `cap` bytes; True once the snippet has written more than that."""
        room = self.cap - len(self.data)
        self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
        return self.truncated

    def text(self) -> str:
        # NUL cannot be stored in PostgreSQL text; show it as the replacement mark.
        return self.data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _account() -> tuple[int, int] | None:
    """(uid, gid) to run snippets as, or None to stay as we are (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(settings.SANDBOX_USER)
    except KeyError:
        raise SandboxUnavailable(
            f"Sandbox user {settings.SANDBOX_USER!r} does not exist; create it "
            "with `make setup` (useradd --system) or set SANDBOX_USER."
        ) from None
    if entry.pw_uid == 0:
        raise SandboxUnavailable("SANDBOX_USER must not be root.")
    return entry.pw_uid, entry.pw_gid


def _python() -> str:
    python = settings.SNIPPET_PYTHON
    if not os.access(python, os.X_OK):
        raise SandboxUnavailable(
            f"Snippet interpreter {python} not found; create it with "
            "`python manage.py snippetenv` or set SNIPPET_PYTHON."
        )
    return python


def _interpreter_root(python: str) -> str | None:
    """The directory to expose read-only for SNIPPET_PYTHON (None: it lives in /usr)."""
    path = Path(python)
    if path.is_relative_to("/usr"):
        return None
    return str(path.parent.parent)


def gpu_devices() -> list[str]:
    """NVIDIA device nodes to hand to snippets (none unless SANDBOX_GPU allows it)."""
    if not settings.SANDBOX_GPU:
        return []
    return sorted(str(p) for p in Path("/dev").glob("nvidia*") if p.is_char_device())


def _bwrap_command(python: str, limits: Limits) -> list[str]:
    command = [
        "bwrap",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
        "--size", str(limits.disk_bytes), "--tmpfs", SANDBOX_TMP,
        "--unshare-all",
        "--die-with-parent",
        # The launcher is PID 1 and sets its own parent-death signal: bubblewrap's
        # reaper loses its one when it changes credentials, and survived its parent.
        "--as-pid-1",
        "--new-session",
        "--hostname", "sandbox",
        "--chdir", SANDBOX_TMP,
    ]  # fmt: skip
    root = _interpreter_root(python)
    if root:
        command += ["--ro-bind", root, root]
    return [*command, "--"]


@functools.cache
def isolation() -> str:
    """The isolation this host gives snippets, probed once per process."""
    mode = settings.SANDBOX_MODE
    if mode == RLIMITS:
        return RLIMITS
    problem = ""
    if shutil.which("bwrap") is None:
        problem = "bubblewrap is not installed"
    else:
        account = _account()
        python = _python()
        probe = [*_bwrap_command(python, Limits.from_settings()), python, "-I", "-c", "pass"]
        result = subprocess.run(
            probe,
            capture_output=True,
            timeout=30,
            env=_environment(),
            **_drop_privileges(account),
        )
        if result.returncode != 0:
            problem = result.stderr.decode(errors="replace").strip() or "bubblewrap failed"
    if not problem:
        return BUBBLEWRAP
    if mode == BUBBLEWRAP:
        raise SandboxUnavailable(f"SANDBOX_MODE=bubblewrap but {problem}")
    logger.warning("Sandbox falls back to resource limits + seccomp: %s", problem)
    return RLIMITS


def _environment(home: str = SANDBOX_TMP) -> dict[str, str]:
    # Built from nothing: the server's environment (secrets, database URL) never leaks.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "MPLBACKEND": "Agg",
    }


def _drop_privileges(account: tuple[int, int] | None) -> dict:
    if account is None:
        return {}
    uid, gid = account
    # extra_groups=[] matters: without it the child keeps root's supplementary groups.
    return {"user": uid, "group": gid, "extra_groups": []}


def _exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is not available."""
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(444, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return max(version, 0)


def _landlock_paths(python: str, workdir: str) -> tuple[str, str]:
    """Readable and writable paths for the launcher's Landlock rules."""
    readable = ["/usr", "/lib", "/lib64", "/bin", "/proc", "/dev"]
    root = _interpreter_root(python)
    if root:
        readable.append(root)
    devices = gpu_devices()
    if devices:
        readable.append("/sys")
    writable = [workdir, "/dev/null", "/dev/shm", *devices]
    return os.pathsep.join(readable), os.pathsep.join(writable)


@functools.cache
def _become_subreaper() -> None:
    # Orphaned grandchildren (a daemonised process in rlimits mode) are re-parented to
    # us instead of init, so the sweep after a run finds and reaps them.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def run(
    code: str,
    limits: Limits,
    on_tick: Callable[[Tick], None] | None = None,
    tick_seconds: float = 0.5,
) -> Outcome:
    """Run `code` to completion or to a limit; never raises for the snippet's faults."""
    mode = isolation()
    account = _account()
    python = _python()
    _become_subreaper()
    group = cgroups.create(limits.memory_bytes, limits.max_processes)
    launcher = [
        python,
        "-I",
        "-u",
        "-c",
        LAUNCHER_SOURCE,
        str(limits.disk_bytes),
        # RLIMIT_NPROC counts every process of the account: a backstop only.
        str(limits.max_processes * 4 if account else 0),
        # Per-process address space when no cgroup caps the tree.
        "0" if group else str(limits.memory_bytes),
        str(OPEN_FILES),
    ]
    landlock = landlock_abi() > 0
    if mode == BUBBLEWRAP:
        workdir = None  # the sandbox's own tmpfs /tmp
        command = _bwrap_command(python, limits) + launcher
        cwd = "/"
    else:
        workdir = tempfile.mkdtemp(prefix="ccp-run-")
        if account:
            os.chown(workdir, *account)
        command = launcher
        cwd = workdir
    # Inside bubblewrap the filesystem view is already minimal; Landlock is a second wall.
    command += list(_landlock_paths(python, workdir or SANDBOX_TMP)) if landlock else ["", ""]
    watch = _Watch(limits, group, mode, workdir, landlock)
    try:
        return watch.run(command, cwd, code.encode(), account, on_tick, tick_seconds)
    finally:
        watch.cleanup(account)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


class _Watch:
    """Starts the snippet, feeds it its code, watches it, and kills its whole tree."""

    def __init__(self, limits: Limits, group, mode: str, workdir: str | None, landlock: bool):
        self.limits = limits
        self.landlock = landlock
        self.group = group
        self.mode = mode
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, float] = {}  # pid -> create_time, for the final sweep
        self.init_pid: int | None = None
        self.outcome = Outcome(isolation=self.describe_isolation())

    def describe_isolation(self) -> str:
        parts = [self.mode]
        if self.group:
            parts.append(f"cgroup-v{self.group.version}")
        parts.append("seccomp")
        if self.landlock:
            parts.append("landlock")
        return "+".join(parts)

    def run(self, command, cwd, source: bytes, account, on_tick, tick_seconds) -> Outcome:
        outcome = self.outcome
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=_environment(self.workdir or SANDBOX_TMP),
                start_new_session=True,
                **_drop_privileges(account),
            )
        except OSError as exc:
            outcome.error = f"Could not start the sandbox: {exc}"
            return outcome
        if self.group:
            # The launcher reads the code before it runs anything, so moving it into
            # the cgroup before sending the code puts every process of the snippet
            # inside. The move (~3 ms per hierarchy) overlaps the interpreter's start.
            launcher = self._wait_for_sandbox_init() if self.mode == BUBBLEWRAP else self.proc.pid
            if launcher:
                self.group.add(launcher)
        try:
            self.proc.stdin.write(source)
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died before reading; its stderr says why
        self._watch(started, on_tick, tick_seconds)
        return outcome

    def _watch(self, started: float, on_tick, tick_seconds: float) -> None:
        outcome, limits, proc = self.outcome, self.limits, self.proc
        streams = {
            proc.stdout.fileno(): _Stream(limits.output_bytes),
            proc.stderr.fileno(): _Stream(limits.output_bytes),
        }
        stdout, stderr = streams.values()
        selector = selectors.DefaultSelector()
        for fd in streams:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        deadline = started + limits.timeout_s
        next_tick = started + tick_seconds
        next_check = started + WATCH_SECONDS
        last_check = started
        memory = 0
        exited = False
        while not exited:
            now = time.monotonic()
            if now >= deadline:
                outcome.timed_out = True
                break
            if now >= next_check:
                memory = self._memory_bytes()
                outcome.memory_byte_seconds += memory * (now - last_check)
                outcome.peak_memory_bytes = max(outcome.peak_memory_bytes, memory)
                last_check = now
                next_check = now + WATCH_SECONDS
                outcome.limit = self._limit_reached(memory)
                # Once the snippet's main process is gone the run is over, even if a
                # straggler still holds the pipes open.
                exited = outcome.limit != "" or self._exited()
                if exited:
                    break
            if on_tick and now >= next_tick:
                next_tick = now + tick_seconds
                on_tick(
                    Tick(now - started, self._cpu_seconds(), memory, stdout.text(), stderr.text())
                )
            timeout = max(0.0, min(deadline, next_check, next_tick) - now)
            if not selector.get_map():
                exited = self._exited()
                time.sleep(0 if exited else timeout)
                continue
            for key, _ in selector.select(timeout):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                elif streams[key.fd].feed(chunk):
                    outcome.limit = "output"
                    exited = True
        end = time.monotonic()
        outcome.memory_byte_seconds += memory * (end - last_check)
        self.kill()
        # Drain what the snippet wrote before it stopped (pipes may still hold data).
        for fd, stream in streams.items():
            if fd in selector.get_map():
                self._drain(fd, stream)
        selector.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        outcome.wall_s = end - started
        outcome.exit_code = proc.returncode
        # Every process of the tree that was waited for, down to the last grandchild.
        outcome.cpu_s = usage.ru_utime + usage.ru_stime
        if self.group:
            outcome.peak_memory_bytes = max(
                outcome.peak_memory_bytes, self.group.peak_memory_bytes()
            )
        outcome.peak_memory_bytes = max(outcome.peak_memory_bytes, usage.ru_maxrss * 1024)
        if outcome.memory_byte_seconds == 0:
            outcome.memory_byte_seconds = outcome.peak_memory_bytes * outcome.wall_s
        if not outcome.limit and not outcome.timed_out:
            outcome.limit = self._limit_after_exit(stderr)
        if proc.returncode == LAUNCHER_CONFINEMENT_FAILED and b"sandbox: " in stderr.data:
            outcome.error = stderr.text().strip()
        elif self.mode == BUBBLEWRAP and b"bwrap: " in stderr.data[:200]:
            outcome.error = f"The sandbox failed to start: {stderr.text().strip()}"
        if outcome.limit:
            outcome.limit_message = limits.describe(outcome.limit)
        outcome.stdout, outcome.stderr = stdout.text(), stderr.text()
        outcome.stdout_truncated, outcome.stderr_truncated = stdout.truncated, stderr.truncated

    def _exited(self) -> bool:
        # WNOWAIT: leave it a zombie for wait4 below, which collects its rusage.
        try:
            return (
                os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
            )
        except ChildProcessError:
            return True

    @staticmethod
    def _drain(fd: int, stream: _Stream) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            stream.feed(chunk)

    def _members(self) -> list[psutil.Process]:
        """The snippet's processes; cheap with a cgroup, a /proc scan without one."""
        if self.group:
            members = [psutil.Process(pid) for pid in self.group.pids() if _exists(pid)]
        else:
            try:
                root = psutil.Process(self.proc.pid)
                members = [root, *root.children(recursive=True)]
            except psutil.Error:
                return []
        for p in members:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(p.pid, p.create_time())
        return members

    def _memory_bytes(self) -> int:
        if self.group:
            return self.group.memory_bytes()
        total = 0
        for p in self._members():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _cpu_seconds(self) -> float:
        """CPU time so far, for live samples (the final figure comes from wait4)."""
        total = 0.0
        for p in self._members():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def _wait_for_sandbox_init(self) -> int | None:
        deadline = time.monotonic() + 5
        while self._sandbox_init() is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return None
            time.sleep(0.0002)
        return self.init_pid

    def _sandbox_init(self) -> int | None:
        """PID (on the host) of the launcher, PID 1 of the sandbox's namespace."""
        if self.init_pid is None:
            path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
            with contextlib.suppress(OSError, ValueError):
                children = Path(path).read_text().split()
                self.init_pid = int(children[0]) if children else None
        return self.init_pid

    def _limit_reached(self, memory: int) -> str:
        limits = self.limits
        if self.group:
            if self.group.hit_process_limit():
                return "processes"
            if self.group.hit_memory_limit():
                return "memory"
        elif memory > limits.memory_bytes:
            return "memory"
        usage = self._disk_usage()
        if usage is not None:
            files, size = usage
            if files > limits.max_files:
                return "files"
            if size > limits.disk_bytes:
                return "disk"
        return ""

    def _limit_after_exit(self, stderr: _Stream) -> str:
        if self.group:
            if self.group.hit_memory_limit():
                return "memory"
            if self.group.hit_process_limit():
                return "processes"
        tail = bytes(stderr.data[-300:])
        if self.outcome.exit_code and b"\nMemoryError" in tail:
            return "memory"
        if self.outcome.exit_code and (
            b"No space left on device" in tail or b"File too large" in tail
        ):
            return "disk"
        return ""

    def _disk_usage(self) -> tuple[int, int] | None:
        """(files, bytes) the snippet has written."""
        if self.mode == BUBBLEWRAP:
            # The private /tmp, seen through the sandbox's root; its size is capped by
            # tmpfs, but the number of files is not.
            pid = self._sandbox_init()
            try:
                st = os.statvfs(f"/proc/{pid}/root{SANDBOX_TMP}")
            except OSError:
                return None
            if st.f_blocks * st.f_frsize != self.limits.disk_bytes:
                return None  # not (yet) the sandbox's own /tmp
            return st.f_files - st.f_ffree, (st.f_blocks - st.f_bfree) * st.f_frsize
        files = size = 0
        stack = [self.workdir]
        while stack and files <= self.limits.max_files:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        files += 1
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            size += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                pass
        return files, size

    def kill(self) -> None:
        """Kill every process the snippet started, wherever it went."""
        if self.group:
            self.group.kill_all()
        if self.mode == BUBBLEWRAP and self._sandbox_init():
            # PID 1 of a namespace takes every process in it along when it dies.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        elif not self.group:
            for p in self._members():
                with contextlib.suppress(psutil.Error):
                    p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def cleanup(self, account) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.kill()
            self.proc.wait()
        if self.group:
            self.group.destroy()
        if self.mode != BUBBLEWRAP:
            # Without a PID namespace a daemonised process can outlive the run.
            self._sweep_orphans(account)
        for pipe in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            pipe.close()

    def _sweep_orphans(self, account) -> None:
        # Daemonised leftovers were re-parented to us (we are a subreaper): kill and
        # reap those that belong to the snippet, so nothing runs on or stays a zombie.
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return
        for child in children:
            try:
                ours = self.seen.get(child.pid) == child.create_time()
                if account:
                    ours = ours or child.uids().real == account[0]
                if not ours:
                    continue
                child.kill()
                os.waitpid(child.pid, 0)
            except (psutil.Error, ChildProcessError):
                pass

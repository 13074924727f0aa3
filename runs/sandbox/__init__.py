"""Run one Python snippet in isolation, under limits, and report what happened.

Layers, outermost first (see README "Sandbox"):
- an unprivileged account with no supplementary groups (when the server is root);
- bubblewrap: no network, own PID namespace, read-only /usr, nothing of the host's
  files but the interpreter, a size-limited private /tmp and /dev/shm, dies with us;
  where namespaces are not allowed we fall back to the layers below and say so;
- a per-run cgroup capping the whole tree's memory and processes (where writable);
- resource limits and a seccomp filter set by runs/sandbox/launcher.py inside the sandbox;
- a watchdog here: wall-clock timeout, output cap, file count, memory when no cgroup.

Nothing here knows about the database or about energy: callers get `Tick`s while the
snippet runs and one `Outcome` at the end.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import dataclasses
import functools
import logging
import os
import pwd
import queue
import select
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings

from . import cgroups, launcher

logger = logging.getLogger(__name__)

LAUNCHER_SOURCE = (Path(__file__).parent / "launcher.py").read_text()
SANDBOX_TMP = "/tmp"
SANDBOX_SHM = "/dev/shm"
SHM_BYTES = 16 * 1024 * 1024
OPEN_FILES = 256
WATCH_SECONDS = 0.05
FIRST_TICK_SECONDS = 0.05
# How long bubblewrap may take to show the launcher, and the supervisor to end a run.
INIT_WAIT_SECONDS = 5
STOP_GRACE_SECONDS = 0.5
EXIT_POLL_SECONDS = 0.0005
PR_SET_CHILD_SUBREAPER = 36
# What the supervisor reports (its measurements of the snippet included): bounded.
REPORT_BYTES = 256 * 1024

TIMEOUT = "timeout"  # how Limits.describe names the wall-clock limit
BUBBLEWRAP = "bubblewrap"
RLIMITS = "rlimits"
# Where a run's CPU time comes from (Outcome.cpu_source): the kernel's accounting of
# the run's cgroup, or, without one, the supervisor's count of the processes it reaped.
CPU_FROM_CGROUP = "cgroup"
CPU_FROM_SUPERVISOR = "supervisor"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run snippets on this host as configured."""


class Abandoned(Exception):
    """The caller refused the run once its code was in the sandbox (`on_start`)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_bytes: int
    max_processes: int
    output_bytes: int
    disk_bytes: int
    max_files: int

    @classmethod
    def from_settings(cls, timeout_s: float) -> Limits:
        """The configured limits, with this run's own wall-clock timeout."""
        return cls(
            timeout_s=timeout_s,
            memory_bytes=settings.SANDBOX_MEMORY_MB * 1024 * 1024,
            max_processes=settings.SANDBOX_MAX_PROCESSES,
            output_bytes=settings.SANDBOX_OUTPUT_BYTES,
            disk_bytes=settings.SANDBOX_DISK_MB * 1024 * 1024,
            max_files=settings.SANDBOX_MAX_FILES,
        )

    def describe(self, limit: str, line: int | None = None) -> str:
        """The message a user reads when `limit` (or the timeout) stopped their snippet,
        at `line` of it if known."""
        mib = 1024 * 1024
        at = f" at line {line}" if line else ""
        message = {
            TIMEOUT: f"Timed out after {self.timeout_s:g} s{at}; every process it started "
            "was stopped.",
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
        if at and limit != TIMEOUT:
            message = message.replace(" exceeded:", f" exceeded{at}:", 1)
        return message


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
    # CPU the interpreter spent starting, before the code arrived: shown, not charged.
    startup_cpu_s: float = 0.0
    cpu_source: str = ""  # CPU_FROM_CGROUP or CPU_FROM_SUPERVISOR
    python_version: str = ""
    # What the supervisor measured of the snippet (sections, the line profile), as it
    # reported it: runs.figures.breakdown reads it and checks it against the figures above.
    measurements: str = ""
    # The line of main.py the snippet was on when it ended or was stopped.
    last_line: int | None = None


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

    def text(self, final: bool = True) -> str:
        """The output as text; while it runs (`final=False`) without a character cut
        in two at its end, so that each text is the start of the next (progress is
        appended: runs.models.OutputChunk)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # NUL cannot be stored in PostgreSQL text; show it as the replacement mark.
        return decoder.decode(self.data, final=final).replace("\x00", "\ufffd")


def _account() -> tuple[int, int] | None:
    """(uid, gid) to run snippets as, or None to stay as we are (not root)."""
    if os.geteuid() != 0:
        return None
    return _account_of(settings.SANDBOX_USER)


@functools.cache  # read for every run: /etc/passwd is not read again for each
def _account_of(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SandboxUnavailable(
            f"Sandbox user {user!r} does not exist; create it "
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


# What snippets see of /usr: programs, shared libraries and shared data; not an
# operator's /usr/local or /usr/etc, nor the administrator's /usr/sbin.
SYSTEM_DIRS = ("/usr/bin", "/usr/lib", "/usr/lib64", "/usr/share")
# /sys as the CUDA driver and NVML read it: PCI devices, the driver's module, CPU and
# NUMA topology.
GPU_SYS_DIRS = ("/sys/bus/pci", "/sys/module/nvidia", "/sys/devices/system")


@functools.cache
def _interpreter_dirs(python: str) -> tuple[str, ...]:
    """Directories to expose read-only for SNIPPET_PYTHON beyond SYSTEM_DIRS."""
    dirs = []
    path = Path(python)
    if not path.is_relative_to("/usr"):
        dirs.append(str(path.parent.parent))  # its virtual environment (or install)
    real = Path(os.path.realpath(python))
    if not any(real.is_relative_to(d) for d in SYSTEM_DIRS):
        # A base interpreter outside the system's (e.g. /usr/local in python images).
        prefix = real.parent.parent
        dirs += [str(prefix / "bin"), str(prefix / "lib")]
    return tuple(dict.fromkeys(dirs))


@functools.cache
def python_version(python: str) -> str:
    """The snippet interpreter's version ("3.11.2"), asked once per process."""
    try:
        result = subprocess.run(
            [python, "-I", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def gpu_devices() -> list[str]:
    """NVIDIA device nodes to hand to snippets (none unless SANDBOX_GPU allows it)."""
    if not settings.SANDBOX_GPU:
        return []
    return list(_nvidia_device_nodes())


@functools.cache  # read for every run: the driver's nodes stay for the process's life
def _nvidia_device_nodes() -> tuple[str, ...]:
    return tuple(sorted(str(p) for p in Path("/dev").glob("nvidia*") if p.is_char_device()))


@functools.cache
def gpu_library_dirs() -> tuple[str, ...]:
    """Where the NVIDIA driver's libraries live: the sandbox has no /etc/ld.so.cache,
    so they are bound in and named in LD_LIBRARY_PATH."""
    if not gpu_devices():
        return ()
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    dirs = []
    for line in listing.stdout.splitlines():
        name, _, path = line.partition("=>")
        if name.strip().startswith(("libcuda.so", "libnvidia-ml.so")) and "x86-64" in name:
            dirs.append(os.path.dirname(os.path.realpath(path.strip())))
    return tuple(dict.fromkeys(dirs))


def _gpu_pci_dirs() -> list[str]:
    """The sysfs directories of the NVIDIA PCI devices (vendor 0x10de)."""
    found = []
    for device in Path("/sys/bus/pci/devices").glob("*"):
        with contextlib.suppress(OSError):
            if (device / "vendor").read_text().strip() == "0x10de":
                found.append(os.path.realpath(device))
    return found


def _gpu_bwrap_arguments() -> list[str]:
    devices = gpu_devices()
    if not devices:
        return []
    arguments = []
    for device in devices:
        arguments += ["--dev-bind", device, device]
    for directory in [*GPU_SYS_DIRS, *_gpu_pci_dirs(), *gpu_library_dirs()]:
        arguments += ["--ro-bind-try", directory, directory]
    return arguments


def _bwrap_command(python: str, limits: Limits) -> list[str]:
    # Found on the server's PATH: the sandbox's own PATH is not the server's.
    command = [shutil.which("bwrap") or "bwrap"]
    for directory in SYSTEM_DIRS:
        command += ["--ro-bind-try", directory, directory]
    command += [
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(SHM_BYTES), "--tmpfs", SANDBOX_SHM,
        "--size", str(limits.disk_bytes), "--tmpfs", SANDBOX_TMP,
        "--unshare-all",
        # No user namespaces inside: the launcher's seccomp filter refuses every other
        # kind of namespace too.
        "--unshare-user", "--disable-userns",
        "--die-with-parent",
        # The launcher is PID 1 and sets its own parent-death signal: bubblewrap's
        # reaper loses its one when it changes credentials, and survived its parent.
        "--as-pid-1",
        "--new-session",
        "--hostname", "sandbox",
        "--chdir", SANDBOX_TMP,
    ]  # fmt: skip
    for directory in _interpreter_dirs(python):
        command += ["--ro-bind", directory, directory]
    return [*command, *_gpu_bwrap_arguments(), "--"]


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
        limits = Limits.from_settings(settings.EXECUTION_TIMEOUT)
        probe = [*_bwrap_command(python, limits), python, "-I", "-c", "pass"]
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
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "MPLBACKEND": "Agg",
    }
    if gpu_library_dirs():
        environment["LD_LIBRARY_PATH"] = os.pathsep.join(gpu_library_dirs())
    return environment


def _drop_privileges(account: tuple[int, int] | None) -> dict:
    if account is None:
        return {}
    uid, gid = account
    # extra_groups=[] matters: without it the child keeps root's supplementary groups.
    return {"user": uid, "group": gid, "extra_groups": []}


def _exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _children_of(pid: int) -> list[int]:
    """The children of process `pid`'s main thread."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except (OSError, ValueError):
        return []


def _own_children() -> list[int]:
    """This process's children, from each of its threads' list (no /proc scan)."""
    found = []
    for children in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(pid) for pid in children.read_text().split()]
    return found


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is not available."""
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(444, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return max(version, 0)


def _landlock_paths(python: str, workdir: str) -> tuple[str, str]:
    """Readable and writable paths for the launcher's Landlock rules."""
    readable = [*SYSTEM_DIRS, "/lib", "/lib64", "/bin", "/proc", "/dev"]
    readable += _interpreter_dirs(python)
    writable = [workdir, "/dev/null", "/dev/shm"]
    devices = gpu_devices()
    if devices:
        readable += [*GPU_SYS_DIRS, *_gpu_pci_dirs(), *gpu_library_dirs()]
        # The CUDA driver writes to the process's own /proc entries: without this
        # cuInit fails (error 304) while NVML works. Ownership still guards the rest.
        writable += [*devices, "/proc"]
    return os.pathsep.join(readable), os.pathsep.join(writable)


def _tasks_of_this_user() -> int:
    """Processes and threads of our own uid: what RLIMIT_NPROC counts."""
    uid = os.getuid()
    total = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        with contextlib.suppress(TypeError, AttributeError):
            if p.info["uids"].real == uid:
                total += p.info["num_threads"]
    return total


def _process_cap(limits: Limits, account, group) -> int:
    """RLIMIT_NPROC for the snippet (0: none). It counts every process of the account."""
    if account:
        return limits.max_processes * 4  # a backstop behind the cgroup's exact cap
    if group:
        return 0
    # A server without root shares its uid with the snippet: the snippet may start
    # max_processes beyond what that uid runs now.
    return _tasks_of_this_user() + limits.max_processes


def launcher_arguments(
    python: str,
    limits: Limits,
    *,
    processes: int = 0,
    address_space: int = 0,
    unix_sockets: bool = True,
    report_fd: int,
    cpu_accounted: bool = False,
    landlock: tuple[str, str] = ("", ""),
) -> list[str]:
    """The launcher's command line (see runs/sandbox/launcher.py for what each means)."""
    return [
        python,
        "-I",
        "-u",
        "-c",
        LAUNCHER_SOURCE,
        str(limits.disk_bytes),
        str(processes),
        str(address_space),
        str(OPEN_FILES),
        "1" if unix_sockets else "0",
        str(report_fd),
        "1" if cpu_accounted else "0",
        str(round(settings.PROFILE_INTERVAL_MS * 1000)),
        *landlock,
    ]


_subreaper_of: dict[str, int] = {}


def _become_subreaper() -> None:
    # Orphans whose launcher was killed are re-parented to us instead of init, so the
    # sweep after a run finds and reaps them. Per process: fork does not inherit it.
    if _subreaper_of.get("pid") != os.getpid():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _subreaper_of["pid"] = os.getpid()


def run(
    code: str,
    limits: Limits,
    on_tick: Callable[[Tick], None] | None = None,
    tick_seconds: float = 0.5,
) -> Outcome:
    """Run `code` to completion or to a limit; never raises for the snippet's faults.

    In the sandbox prepared ahead for this process (`prepare_standby`) when there is one
    with these limits, else in a new one."""
    with executed(code, limits, on_tick, tick_seconds) as outcome:
        return outcome


@contextlib.contextmanager
def executed(
    code: str,
    limits: Limits,
    on_tick: Callable[[Tick], None] | None = None,
    tick_seconds: float = 0.5,
    on_start: Callable[[], bool] | None = None,
) -> Iterator[Outcome]:
    """`run`, with the outcome in hand as soon as the snippet's processes are gone: the
    sandbox's own teardown (bubblewrap's exit, the cgroup) waits until the block ends,
    so a worker can store and answer first.

    `on_start` is called once the code is in the sandbox (or, where the sandbox failed,
    instead of sending it), so that the caller's own work overlaps the snippet's start;
    returning False ends the sandbox at once and raises Abandoned."""
    watch = _take_standby(limits) or _launch(limits)
    try:
        yield watch.execute(code.encode(), on_tick, tick_seconds, on_start)
    finally:
        watch.cleanup()


# The next runs' sandboxes, started ahead, oldest first: their interpreters are up and
# waiting for code. More than one, so that a run arriving right after another finds
# one whose interpreter has finished starting (starting takes ~40 ms on a busy host).
_standbys: list[tuple[tuple, _Watch]] = []
# Notified when one is added, and when the preparer has nothing left to start.
_standbys_changed = threading.Condition()
# Standby sandboxes start at the lowest priority, so that starting them never slows
# the requests and the run of the moment; a run's own is raised back when it is taken.
STANDBY_NICE = 19


def _standby_key(limits: Limits) -> tuple:
    # Everything a sandbox is made of but the timeout, which the worker keeps itself.
    return (
        dataclasses.replace(limits, timeout_s=0),
        isolation(),
        _account(),
        _python(),
        settings.SANDBOX_CPUS,
        settings.PROFILE_INTERVAL_MS,
        tuple(gpu_devices()),
        os.getpid(),
    )


def prepare_standby(limits: Limits, background: bool = False) -> None:
    """Keep SANDBOX_STANDBY sandboxes with `limits` started ahead, so that a run pays
    only for its own code. Every run still gets a sandbox nobody used: each is used
    once, then ended.

    In the background, the worker is free to fetch its next run meanwhile; a run that
    finds none ready waits for the one being started (sooner than starting its own)."""
    if background:
        _preparer.submit(limits)
    else:
        _top_up(limits)


def _top_up(limits: Limits) -> None:
    key = _standby_key(limits)
    with _standbys_changed:
        stale = [watch for k, watch in _standbys if k != key or watch._exited()]
        _standbys[:] = [(k, watch) for k, watch in _standbys if watch not in stale]
        missing = settings.SANDBOX_STANDBY - len(_standbys)
    for watch in stale:
        watch.cleanup()
    for _ in range(missing):
        try:
            watch = _launch(limits, nice=STANDBY_NICE)
        except Exception:
            # A run will meet the same problem in its own sandbox, and say so.
            logger.exception("could not prepare the next run's sandbox")
            return
        if watch.outcome.error:
            watch.cleanup()
            return
        with _standbys_changed:
            _standbys.append((key, watch))
            _standbys_changed.notify_all()


class _Preparer:
    """One thread for the life of the process that starts standby sandboxes. Not a
    thread per sandbox: bubblewrap dies with the thread that started it
    (--die-with-parent is PR_SET_PDEATHSIG, which follows the thread, not the process)."""

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue[Limits] = queue.SimpleQueue()
        self.idle = threading.Event()
        self.idle.set()
        self.thread: threading.Thread | None = None

    def submit(self, limits: Limits) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._serve, name="sandbox-standby", daemon=True)
            self.thread.start()
        self.idle.clear()
        self.requests.put(limits)

    def _serve(self) -> None:
        while True:
            limits = self.requests.get()
            try:
                _top_up(limits)
            finally:
                if self.requests.empty():
                    with _standbys_changed:
                        self.idle.set()
                        _standbys_changed.notify_all()

    def wait(self) -> None:
        self.idle.wait()


_preparer = _Preparer()


def discard_standby() -> None:
    """End every sandbox started ahead (settings changed, or the worker leaves)."""
    _preparer.wait()
    with _standbys_changed:
        watches = [watch for _, watch in _standbys]
        _standbys.clear()
    for watch in watches:
        watch.cleanup()


def _take_standby(limits: Limits) -> _Watch | None:
    """The oldest sandbox started ahead with these limits, taken out of the pool; if
    none is there but one is being started, that one (sooner than starting another)."""
    key = _standby_key(limits)
    deadline = time.monotonic() + INIT_WAIT_SECONDS
    useless = []  # started under other settings, or died waiting
    with _standbys_changed:
        while True:
            while _standbys and (_standbys[0][0] != key or _standbys[0][1]._exited()):
                useless.append(_standbys.pop(0)[1])
            if _standbys:
                watch = _standbys.pop(0)[1]
                break
            remaining = deadline - time.monotonic()
            if _preparer.idle.is_set() or remaining <= 0:
                watch = None
                break
            _standbys_changed.wait(remaining)
    for stale in useless:
        stale.cleanup()
    if watch is not None:
        watch.limits = limits  # this run's own timeout
        watch.raise_priority()
    return watch


def _launch(limits: Limits, nice: int = 0) -> _Watch:
    """A new sandbox, started and confined, its interpreter waiting for the code;
    `nice` lowers its priority until it is taken (only where we can raise it back)."""
    mode = isolation()
    account = _account()
    python = _python()
    _become_subreaper()
    group = cgroups.create(limits.memory_bytes, limits.max_processes, settings.SANDBOX_CPUS)
    landlock = landlock_abi() > 0
    if mode == BUBBLEWRAP:
        workdir = None  # the sandbox's own tmpfs /tmp
    else:
        workdir = tempfile.mkdtemp(prefix="ccp-run-")
        if account:
            os.chown(workdir, *account)
    report_read, report_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    launcher = launcher_arguments(
        python,
        limits,
        processes=_process_cap(limits, account, group),
        # Per-process address space when no cgroup caps the tree.
        address_space=0 if group else limits.memory_bytes,
        # Inside bubblewrap no host socket is reachable: AF_UNIX stays for local IPC.
        unix_sockets=mode == BUBBLEWRAP,
        report_fd=report_write,
        # Where a cgroup counts every process, that count is the figure, and a snippet
        # may handle SIGCHLD as it likes; elsewhere the launcher refuses it.
        cpu_accounted=group is not None and group.cpu_seconds() is not None,
        # Inside bubblewrap the filesystem view is already minimal; Landlock is a second
        # wall there and the only one in the fallback.
        landlock=_landlock_paths(python, workdir or SANDBOX_TMP) if landlock else ("", ""),
    )
    command = _bwrap_command(python, limits) + launcher if mode == BUBBLEWRAP else launcher
    watch = _Watch(
        limits=limits,
        group=group,
        mode=mode,
        workdir=workdir,
        landlock=landlock,
        account=account,
        report=(report_read, report_write),
    )
    nice = nice if account else 0
    if nice:
        if group:
            group.set_background(True)  # before anything runs in it
        # From the first instruction: bubblewrap builds the sandbox (~5 ms of CPU)
        # before the launcher can be moved into its cgroup.
        if nice_command := shutil.which("nice"):
            command = [nice_command, "-n", str(nice), *command]
    watch.start(command, nice)
    return watch


def _started(on_start: Callable[[], bool] | None) -> None:
    if on_start is not None and not on_start():
        raise Abandoned()  # the sandbox is ended on the way out (`executed`)


@dataclass
class _Report:
    """What the supervisor said at the end (and what bubblewrap's exit adds)."""

    status: int = 0  # the snippet's wait status
    tree_cpu: float | None = None  # its processes' CPU as the supervisor counted them
    supervisor_work: float = 0.0  # the supervisor's own CPU since its start-up
    everything_cpu: float = 0.0  # all bubblewrap waited for, start-up included


def _seconds(text: str) -> float:
    try:
        return max(float(text), 0.0)
    except ValueError:
        return 0.0


def _drain(fd: int, cap: int = REPORT_BYTES) -> bytes:
    """What a pipe holds now, up to `cap` bytes (it never blocks)."""
    data = b""
    with contextlib.suppress(BlockingIOError):
        while len(data) < cap and (chunk := os.read(fd, 65536)):
            data += chunk
    return data[:cap]


class _Watch:
    """Starts the snippet, feeds it its code, watches it, and ends its whole tree."""

    def __init__(self, *, limits, group, mode, workdir, landlock, account, report):
        self.limits = limits
        self.group = group
        self.mode = mode
        self.workdir = workdir
        self.landlock = landlock
        self.account = account
        self.report_read, self.report_write = report
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, float] = {}  # pid -> create_time, for the final sweep
        self.init_pid: int | None = None
        self.started_at = time.time()
        self.cpu_before_code = 0.0  # the tree's CPU when the code was sent (live samples)
        # The cgroup's CPU accounting when the code was sent, with every process of the
        # sandbox waiting (None: no cgroup counts it).
        self.accounted_at_code: float | None = None
        self.report = b""  # what the supervisor reported so far
        # The supervisor has reported the end: every process of the snippet is gone.
        self.reported = False
        self.nice = 0  # the priority it waits at, until taken for a run
        self.outcome = Outcome(
            isolation=self.describe_isolation(), python_version=python_version(_python())
        )

    def describe_isolation(self) -> str:
        parts = [self.mode]
        if self.group:
            parts.append(f"cgroup-v{self.group.version}")
        parts.append("seccomp")
        if self.landlock:
            parts.append("landlock")
        if not (self.group and self.group.cpu_capped):
            parts.append("no-cpu-cap")
        return "+".join(parts)

    @property
    def supervisor(self) -> int | None:
        """The launcher's process on the host (PID 1 of bubblewrap's namespace)."""
        return self._sandbox_init() if self.mode == BUBBLEWRAP else self.proc.pid

    def start(self, command: list[str], nice: int = 0) -> None:
        """Start the sandbox and confine it (at priority `nice` until
        `raise_priority`); a failure is kept on the outcome."""
        outcome = self.outcome
        try:
            _sandboxes_starting.acquire()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir or "/",
                env=_environment(self.workdir or SANDBOX_TMP),
                start_new_session=True,
                pass_fds=(self.report_write,),
                **_drop_privileges(self.account),
            )
        except OSError as exc:
            outcome.error = f"Could not start the sandbox: {exc}"
            return
        else:
            _live_sandboxes.add(self.proc.pid)
        finally:
            _sandboxes_starting.release()
            os.close(self.report_write)
        problem = self._confine()
        if problem:
            self.kill()
            self._wait_sandbox()
            outcome.error = f"The sandbox could not be confined ({problem}); the code was not run."
            return
        if nice:
            self._set_priority(nice)
        try:
            self.proc.stdin.write(launcher.GO)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died starting; its stderr says why

    def _set_priority(self, nice: int) -> None:
        self.nice = nice
        if self.group:
            self.group.set_background(nice > 0)
        # The launcher and the snippet's process, which it forks and which inherits
        # its priority, are single-threaded until the code comes.
        supervisor = self.supervisor
        if supervisor is None:
            return
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, supervisor, nice)
        # After the supervisor's: a process it forks meanwhile is listed here. And
        # bubblewrap's own, which waits for the launcher and exits after it.
        others = (set(_children_of(supervisor)) | {self.proc.pid}) - {supervisor}
        for pid in others:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, nice)

    def raise_priority(self) -> None:
        """Back to the normal priority, before the code is sent."""
        if self.nice:
            self._set_priority(0)

    def execute(self, source: bytes, on_tick, tick_seconds: float, on_start=None) -> Outcome:
        """Send the code and watch it to the end. Every figure counts from here."""
        outcome = self.outcome
        if outcome.error:
            _started(on_start)
            return outcome  # fail closed: the code never goes to an incomplete sandbox
        self._wait_until_ready()
        self.accounted_at_code = self.group.cpu_seconds() if self.group else None
        if self.accounted_at_code is not None:
            self.cpu_before_code = self.accounted_at_code  # what _cpu_seconds reads
        else:
            self.cpu_before_code = self._cpu_seconds()
        started = time.monotonic()
        try:
            self.proc.stdin.write(source)
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died before reading; its stderr says why
        _started(on_start)
        self._watch(started, on_tick, tick_seconds)
        return outcome

    def _wait_until_ready(self) -> None:
        """Until both processes of the sandbox wait (the supervisor for the snippet,
        the snippet's process for its code): from then on, everything the cgroup
        counts is the run's. A standby has long been ready."""
        deadline = time.monotonic() + INIT_WAIT_SECONDS
        while not self._ready() and time.monotonic() < deadline and not self._exited():
            select.select([self.report_read], [], [], min(deadline - time.monotonic(), 0.05))
            self._report()

    def _ready(self) -> bool:
        said = {line.split(b" ", 1)[0] for line in self.report.split(b"\n")}
        return {launcher.STARTUP.encode(), launcher.READY.encode()} <= said

    def _confine(self) -> str:
        """Move the launcher into the run's cgroup; what failed, or ''."""
        if not self.group:
            return ""
        # The launcher forks the snippet's process only once told (launcher.GO), so
        # moving it into the cgroup first puts every process of the snippet inside.
        # The move (one write per v1 hierarchy; one of them often waits 5-20 ms for
        # the kernel) overlaps the interpreter's start.
        launcher = self.supervisor
        if launcher is None:
            return "its first process did not appear in time to be moved into its cgroup"
        try:
            self.group.add(launcher)
        except OSError as exc:
            return f"could not move it into its cgroup: {exc.strerror or exc}"
        return ""

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
        # The supervisor's report ends the run the moment it comes, before bubblewrap
        # has exited (it and the launcher hold the output pipes open until then).
        selector.register(self.report_read, selectors.EVENT_READ)
        deadline = started + limits.timeout_s
        # The first tick comes early: a snippet's first output shows at once.
        next_tick = started + min(tick_seconds, FIRST_TICK_SECONDS)
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
                cpu = max(self._cpu_seconds() - self.cpu_before_code, 0.0)
                on_tick(Tick(now - started, cpu, memory, stdout.text(False), stderr.text(False)))
            timeout = max(0.0, min(deadline, next_check, next_tick) - now)
            if not any(fd in selector.get_map() for fd in streams):
                # Both pipes closed: the sandbox is exiting; bubblewrap follows its
                # launcher within a millisecond or so.
                exited = self._exited()
                time.sleep(0 if exited else min(timeout, EXIT_POLL_SECONDS))
                continue
            for key, _ in selector.select(timeout):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.fd == self.report_read:
                    exited = self._read_report(chunk)
                elif streams[key.fd].feed(chunk):
                    outcome.limit = "output"
                    exited = True
        end = time.monotonic()
        outcome.memory_byte_seconds += memory * (end - last_check)
        if not self.reported and not self._exited():
            self.stop()
        # Drain what the snippet wrote before it stopped (pipes may still hold data).
        for fd, stream in streams.items():
            if fd in selector.get_map():
                self._drain(fd, stream)
        selector.close()
        self._post_mortem(end - started, stdout, stderr)

    def _read_report(self, chunk: bytes) -> bool:
        """Keep what the supervisor reported; True once it has reported the end."""
        self.report = (self.report + chunk)[:REPORT_BYTES]
        self.reported = b"\n" + launcher.END.encode() + b" " in b"\n" + self.report
        return self.reported

    def _post_mortem(self, wall_s: float, stdout: _Stream, stderr: _Stream) -> None:
        """Once the tree is gone: its status, CPU, memory, and how the run ended."""
        outcome, limits = self.outcome, self.limits
        # With a cgroup, everything left to know is known once the supervisor has
        # reported; without one, bubblewrap's wait status carries the peak memory.
        report = self._reap(wait=not (self.reported and self.group))
        outcome.wall_s = wall_s
        outcome.exit_code = os.waitstatus_to_exitcode(report.status)
        outcome.cpu_s, outcome.cpu_source = self._cpu_of_the_run(report)
        if self.group:
            outcome.peak_memory_bytes = max(
                outcome.peak_memory_bytes, self.group.peak_memory_bytes()
            )
        if outcome.memory_byte_seconds == 0:
            outcome.memory_byte_seconds = outcome.peak_memory_bytes * outcome.wall_s
        if not outcome.limit and not outcome.timed_out:
            outcome.limit = self._limit_after_exit(stderr)
        if outcome.exit_code == launcher.CONFINEMENT_FAILED and b"sandbox: " in stderr.data:
            outcome.error = stderr.text().strip()
        elif self.mode == BUBBLEWRAP and b"bwrap: " in stderr.data[:200]:
            outcome.error = f"The sandbox failed to start: {stderr.text().strip()}"
        if outcome.limit or outcome.timed_out:
            outcome.limit_message = limits.describe(outcome.limit or TIMEOUT, outcome.last_line)
        outcome.stdout, outcome.stderr = stdout.text(), stderr.text()
        outcome.stdout_truncated, outcome.stderr_truncated = stdout.truncated, stderr.truncated

    def _cpu_of_the_run(self, report: _Report) -> tuple[float, str]:
        """The CPU time of the snippet's processes, and where it comes from.

        A cgroup counts every process ever in it, whatever the snippet did with its
        signals (a process that ignores SIGCHLD has its children's CPU time discarded
        by the kernel, out of any wait's sight): from the code's arrival, less the
        supervisor's own work. Without one, the supervisor's count of what it reaped
        (the launcher refuses SIGCHLD's handling there), or, should it have been killed
        before it could count, what bubblewrap waited for, less the start-up."""
        accounted = self.group.cpu_seconds() if self.group else None
        if accounted is not None and self.accounted_at_code is not None:
            work = accounted - self.accounted_at_code - report.supervisor_work
            return max(work, 0.0), CPU_FROM_CGROUP
        if report.tree_cpu is not None:
            return report.tree_cpu, CPU_FROM_SUPERVISOR
        most = max(report.everything_cpu, accounted or 0.0)
        source = CPU_FROM_CGROUP if accounted else CPU_FROM_SUPERVISOR
        return max(most - self.outcome.startup_cpu_s, 0.0), source

    def _reap(self, wait: bool = True) -> _Report:
        """What the supervisor reported, and (with `wait` only: waiting for the sandbox
        to exit, which `cleanup` does otherwise) all the CPU bubblewrap waited for,
        start-up included."""
        status, everything = self._wait_sandbox() if wait else (0, 0.0)
        result = _Report(status=status, everything_cpu=everything)
        prepared = supervisor_startup = 0.0  # the CPU of each process before the code
        measurements = []
        # Not splitlines(): a section name may hold any other line break.
        for line in self._report().split("\n"):
            word, _, rest = line.partition(" ")
            if word == launcher.STARTUP:
                supervisor_startup = _seconds(rest)
            elif word == launcher.PREPARED:
                prepared = _seconds(rest)
            elif word == launcher.END and len(rest.split()) == 3:
                # The supervisor's word, once it has reaped every process of the
                # snippet: their status and CPU time (its own, the sandbox's machinery,
                # is the third figure and not the snippet's).
                status, tree, own = rest.split()
                result.status = int(status)
                result.tree_cpu = max(float(tree) - prepared, 0.0)
                result.supervisor_work = max(_seconds(own) - supervisor_startup, 0.0)
            elif line.startswith(launcher.LAST_LINE + "\t"):
                number = line.split("\t")[1]
                self.outcome.last_line = int(number) if number.isdigit() else None
            elif "\t" in line:
                measurements.append(line)
        self.outcome.startup_cpu_s = supervisor_startup + prepared
        self.outcome.measurements = "\n".join(measurements)
        return result

    def _wait_sandbox(self) -> tuple[int, float]:
        """Wait for bubblewrap (or the launcher) to exit: its wait status, and the CPU
        of everything it waited for."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        # Everything bubblewrap waited for, the launcher's start-up included.
        everything = usage.ru_utime + usage.ru_stime
        self.outcome.peak_memory_bytes = max(self.outcome.peak_memory_bytes, usage.ru_maxrss * 1024)
        # If bubblewrap died before its child, that child (the launcher) is ours now.
        if self.mode == BUBBLEWRAP and self.init_pid:
            everything += self._reap_adopted(self.init_pid)
        return status, everything

    def _report(self) -> str:
        self.report = (self.report + _drain(self.report_read))[:REPORT_BYTES]
        return self.report.decode("utf-8", errors="replace")

    def _reap_adopted(self, pid: int) -> float:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                found, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                return 0.0  # not ours: bubblewrap reaped it
            if found:
                return usage.ru_utime + usage.ru_stime
            time.sleep(0.001)
        return 0.0

    def _exited(self) -> bool:
        # WNOWAIT: leave it a zombie for wait4, which collects its rusage.
        try:
            return (
                os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
            )
        except ChildProcessError:
            return True

    def _wait_exit(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self._exited():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
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
        """CPU time so far, for live samples (the final figure comes after the end)."""
        accounted = self.group.cpu_seconds() if self.group else None
        if accounted is not None:
            return accounted
        total = 0.0
        for p in self._members():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def _sandbox_init(self) -> int | None:
        """PID (on the host) of the launcher, PID 1 of the sandbox's namespace."""
        deadline = time.monotonic() + INIT_WAIT_SECONDS
        while self.init_pid is None:
            children = _children_of(self.proc.pid)
            self.init_pid = children[0] if children else None
            if self.init_pid or time.monotonic() > deadline or self._exited():
                break
            time.sleep(0.0002)
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
            # The private /tmp and /dev/shm, seen through the sandbox's root: tmpfs caps
            # each one's size, but neither the number of files nor the two together.
            pid = self._sandbox_init()
            files = size = 0
            for mount, capacity in (
                (SANDBOX_TMP, self.limits.disk_bytes),
                (SANDBOX_SHM, SHM_BYTES),
            ):
                try:
                    st = os.statvfs(f"/proc/{pid}/root{mount}")
                except OSError:
                    return None
                if st.f_blocks * st.f_frsize != capacity:
                    return None  # not (yet) the sandbox's own
                files += st.f_files - st.f_ffree
                size += (st.f_blocks - st.f_bfree) * st.f_frsize
            return files, size
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

    def stop(self) -> None:
        """End the run at a limit: ask the supervisor, which kills and reaps the whole
        tree and reports its CPU time; kill everything ourselves if it does not answer."""
        supervisor = self.supervisor
        if supervisor:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(supervisor, signal.SIGUSR1)
            if self._wait_exit(STOP_GRACE_SECONDS):
                return
        self.kill()

    def kill(self) -> None:
        """Kill every process the snippet started, wherever it went."""
        if self.group:
            self.group.kill_all()
        if self.mode == BUBBLEWRAP and self._sandbox_init():
            # PID 1 of a namespace takes every process in it along when it dies, and
            # bubblewrap then reaps it and exits: give it the moment that takes, so
            # the launcher is not left a zombie.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
            if self._wait_exit(STOP_GRACE_SECONDS):
                return
        elif not self.group:
            for p in self._members():
                with contextlib.suppress(psutil.Error):
                    p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            # After a reported end the sandbox is on its way out: let it go, unless
            # it takes too long.
            if not (self.reported and self._wait_exit(STOP_GRACE_SECONDS)):
                self.kill()
            self._wait_sandbox()
        os.close(self.report_read)
        if self.group:
            self.group.destroy()
        if self.proc is not None:
            _live_sandboxes.discard(self.proc.pid)
        self._sweep_orphans()
        for pipe in (self.proc.stdout, self.proc.stderr, self.proc.stdin) if self.proc else ():
            pipe.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _sweep_orphans(self) -> None:
        # What a killed launcher left was re-parented to us (we are a subreaper): kill
        # and reap those that belong to the run, so nothing runs on or stays a zombie.
        # A worker runs one snippet at a time, so a child of ours that appeared since
        # the run started, and is not one we started ourselves (the sandboxes started
        # ahead for the next runs), is the run's.
        with _sandboxes_starting:
            for pid in _own_children():
                if pid in _live_sandboxes:
                    continue
                try:
                    child = psutil.Process(pid)
                    ours = self.seen.get(child.pid) == child.create_time()
                    ours = ours or child.pid == self.init_pid
                    if self.account:
                        ours = ours or child.uids().real == self.account[0]
                    else:
                        ours = ours or child.create_time() >= self.started_at - 0.01
                    if not ours or child.pid == (self.proc.pid if self.proc else None):
                        continue
                    child.kill()
                    os.waitpid(child.pid, 0)
                except (psutil.Error, ChildProcessError):
                    pass


# The sandboxes of this process not yet ended (their first process's pid), and a lock
# held while one starts: the sweep after a run must not take another's for an orphan.
_live_sandboxes: set[int] = set()
_sandboxes_starting = threading.Lock()

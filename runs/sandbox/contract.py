"""What a caller gives the sandbox and gets back: limits, ticks, the outcome, errors."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .launcher import NOTE

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
CANCELLED = "cancelled"  # Outcome.limit of a run its author stopped
BUBBLEWRAP = "bubblewrap"
RLIMITS = "rlimits"
# Where a run's CPU time comes from (Outcome.cpu_source): the kernel's accounting of
# the run's cgroup, or, without one, the supervisor's count of the processes it reaped.
CPU_FROM_CGROUP = "cgroup"
CPU_FROM_SUPERVISOR = "supervisor"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run snippets on this host as configured."""


class Abandoned(Exception):
    """The caller refused the run once its code was in the sandbox (`Observer.started`)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_bytes: int
    max_processes: int
    output_bytes: int
    disk_bytes: int
    max_files: int
    # The interpreter of the run's environment (runs.sandbox.environments); "": the
    # default environment's.
    python: str = ""
    # Whether the line profile samples the snippet (every PROFILE_INTERVAL_MS of CPU).
    profile: bool = True

    @classmethod
    def from_settings(cls, timeout_s: float, python: str = "", profile: bool = True) -> Limits:
        """The configured limits, with this run's own wall-clock timeout, in the
        environment whose interpreter is `python`."""
        return cls(
            python=python,
            profile=profile,
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
            CANCELLED: f"Stopped on request{at}; every process it started was stopped, and "
            "what it printed and used until then is kept.",
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
        if at and limit not in (TIMEOUT, CANCELLED):
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


class Observer:
    """Who follows a run from outside its sandbox, through one narrow door: told once
    the code is in (and may refuse the run then: `started` returns False), told every
    `tick_seconds` how it goes, and asked, as often, whether its author wants it
    stopped. This one follows nothing; callers subclass it."""

    tick_seconds = 0.5

    def started(self) -> bool:
        return True

    def tick(self, tick: Tick) -> None:
        pass

    def stop_requested(self) -> bool:
        return False


NOBODY = Observer()


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
    # The process died in the line profile's sampler, not in the snippet's code
    # (launcher.PROFILE_CRASHED): how it ended says nothing of the snippet.
    sampler_crashed: bool = False

    def note(self, note: str) -> None:
        """Add one of the launcher's notes to what the supervisor measured: one its
        worker knows of, such as a first attempt's end (runs.figures.breakdown)."""
        self.measurements = "\n".join(filter(None, [self.measurements, f"{NOTE}\t{note}"]))


@dataclass
class OutputStream:
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

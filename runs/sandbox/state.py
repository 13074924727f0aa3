"""One sandbox as its parts see it: its processes, cgroup, pipes and outcome, and what
every part asks of them (has it exited, which process is the supervisor, which are the
snippet's). `watch.Watch` is one; `usage.Usage` and `teardown.Teardown` read and end
it, each given the sandbox it works on."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from typing import IO

import psutil

from .cgroups import RunCgroup
from .contract import BUBBLEWRAP, INIT_WAIT_SECONDS, REPORT_BYTES, Limits, Outcome
from .host import children_of, pid_exists, python_version


def drain(fd: int, cap: int = REPORT_BYTES) -> bytes:
    """What a pipe holds now, up to `cap` bytes (it never blocks)."""
    data = b""
    with contextlib.suppress(BlockingIOError):
        while len(data) < cap and (chunk := os.read(fd, 65536)):
            data += chunk
    return data[:cap]


class Sandbox:
    """What a sandbox is made of, from its start to its end."""

    def __init__(
        self,
        *,
        python: str,
        limits: Limits,
        group: RunCgroup | None,
        mode: str,
        workdir: str | None,
        landlock: bool,
        account: tuple[int, int] | None,
        report: tuple[int, int],
        counter: int | None = None,
    ):
        self.python = python
        self.limits = limits
        self.group = group
        self.mode = mode
        self.workdir = workdir
        self.landlock = landlock
        self.account = account
        self.report_read, self.report_write = report
        self.counter = counter  # the cgroup's CPU counter, passed to the supervisor
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, float] = {}  # pid -> create_time, for the final sweep
        self.init_pid: int | None = None
        self.started_at = time.time()
        self.cpu_before_code = 0.0  # the tree's CPU when the code was sent (live samples)
        # The cgroup's CPU accounting when the code was sent, with every process of the
        # sandbox waiting (None: no cgroup counts it).
        self.accounted_at_code: float | None = None
        self.report = b""  # what the supervisor reported so far
        self._input = memoryview(b"")  # code and input not yet in the pipe (execute)
        # The supervisor has reported the end: every process of the snippet is gone.
        self.reported = False
        self.nice = 0  # the priority it waits at, until taken for a run
        self.outcome = Outcome(
            isolation=self.describe_isolation(), python_version=python_version(python)
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
        return self.sandbox_init() if self.mode == BUBBLEWRAP else self.process.pid

    def members(self) -> list[psutil.Process]:
        """The snippet's processes; cheap with a cgroup, a /proc scan without one."""
        if self.group:
            members = [psutil.Process(pid) for pid in self.group.pids() if pid_exists(pid)]
        else:
            try:
                root = psutil.Process(self.process.pid)
                members = [root, *root.children(recursive=True)]
            except psutil.Error:
                return []
        for p in members:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(p.pid, p.create_time())
        return members

    def sandbox_init(self) -> int | None:
        """PID (on the host) of the launcher, PID 1 of the sandbox's namespace."""
        deadline = time.monotonic() + INIT_WAIT_SECONDS
        while self.init_pid is None:
            children = children_of(self.process.pid)
            self.init_pid = children[0] if children else None
            if self.init_pid or time.monotonic() > deadline or self.exited():
                break
            time.sleep(0.0002)
        return self.init_pid

    def report_text(self) -> str:
        self.report = (self.report + drain(self.report_read))[:REPORT_BYTES]
        return self.report.decode("utf-8", errors="replace")

    def exited(self) -> bool:
        # WNOWAIT: leave it a zombie for wait4, which collects its rusage.
        try:
            return (
                os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
                is not None
            )
        except ChildProcessError:
            return True

    def wait_exit(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.exited():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """bubblewrap's process (the launcher's without it), once started."""
        assert self.proc is not None, "the sandbox has not started"
        return self.proc

    @property
    def stdin_pipe(self) -> IO[bytes]:
        """Where the code and the snippet's input go (opened by `start`)."""
        return _opened(self.process.stdin)

    @property
    def stdout_pipe(self) -> IO[bytes]:
        return _opened(self.process.stdout)

    @property
    def stderr_pipe(self) -> IO[bytes]:
        return _opened(self.process.stderr)


def _opened(pipe: IO[bytes] | None) -> IO[bytes]:
    assert pipe is not None, "the sandbox's pipes are opened with it"
    return pipe

"""Ending a sandbox: reaping its processes, reading what its supervisor reported, and
leaving nothing behind (processes, cgroups, files): one part of a sandbox
(state.Sandbox)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass

import psutil

from . import launcher
from .contract import BUBBLEWRAP, STOP_GRACE_SECONDS
from .host import own_children
from .state import Sandbox


@dataclass
class Report:
    """What the supervisor said at the end (and what bubblewrap's exit adds)."""

    status: int = 0  # the snippet's wait status
    # Its processes' CPU as the supervisor counted them, with the supervisor's own work
    # for the run (reaping, measuring: whatever the snippet made it do) since the code.
    tree_cpu: float | None = None
    everything_cpu: float = 0.0  # all bubblewrap waited for, start-up included


def _seconds(text: str) -> float:
    try:
        return max(float(text), 0.0)
    except ValueError:
        return 0.0


class Teardown:
    """How a sandbox's tree ends, what its supervisor reported, and leaving nothing."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    def reap(self, wait: bool = True) -> Report:
        """What the supervisor reported, and (with `wait` only: waiting for the sandbox
        to exit, which `cleanup` does otherwise) all the CPU bubblewrap waited for,
        start-up included."""
        status, everything = self.wait_sandbox() if wait else (0, 0.0)
        result = Report(status=status, everything_cpu=everything)
        prepared = supervisor_startup = 0.0  # the CPU of each process before the code
        measurements = []
        # Not splitlines(): a section name may hold any other line break.
        for line in self.sandbox.report_text().split("\n"):
            word, _, rest = line.partition(" ")
            if word == launcher.STARTUP:
                supervisor_startup = _seconds(rest)
            elif word == launcher.PREPARED:
                prepared = _seconds(rest)
            elif word == launcher.END and len(rest.split()) == 3:
                # The supervisor's word, once it has reaped every process of the
                # snippet: their status and CPU time, and its own: what it did after
                # its start-up it did for the run (a snippet can make it busy).
                said, tree, own = rest.split()
                result.status = int(said)
                result.tree_cpu = max(float(tree) - prepared, 0.0) + max(
                    _seconds(own) - supervisor_startup, 0.0
                )
            elif line.startswith(launcher.LAST_LINE + "\t"):
                number = line.split("\t")[1]
                self.sandbox.outcome.last_line = int(number) if number.isdigit() else None
            elif line == f"{launcher.NOTE}\t{launcher.PROFILE_CRASHED}":
                self.sandbox.outcome.sampler_crashed = True  # its worker's to say more
            elif "\t" in line:
                measurements.append(line)
        self.sandbox.outcome.startup_cpu_s = supervisor_startup + prepared
        self.sandbox.outcome.measurements = "\n".join(measurements)
        return result

    def wait_sandbox(self) -> tuple[int, float]:
        """Wait for bubblewrap (or the launcher) to exit: its wait status, and the CPU
        of everything it waited for."""
        _, status, usage = os.wait4(self.sandbox.process.pid, 0)
        self.sandbox.process.returncode = os.waitstatus_to_exitcode(status)
        # Everything bubblewrap waited for, the launcher's start-up included.
        everything = usage.ru_utime + usage.ru_stime
        self.sandbox.outcome.peak_memory_bytes = max(
            self.sandbox.outcome.peak_memory_bytes, usage.ru_maxrss * 1024
        )
        # If bubblewrap died before its child, that child (the launcher) is ours now.
        if self.sandbox.mode == BUBBLEWRAP and self.sandbox.init_pid:
            everything += self.reap_adopted(self.sandbox.init_pid)
        return status, everything

    def reap_adopted(self, pid: int) -> float:
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

    def stop(self) -> None:
        """End the run at a limit: ask the supervisor, which kills and reaps the whole
        tree and reports its CPU time; kill everything ourselves if it does not answer."""
        supervisor = self.sandbox.supervisor
        if supervisor:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(supervisor, signal.SIGUSR1)
            if self.sandbox.wait_exit(STOP_GRACE_SECONDS):
                return
        self.kill()

    def kill(self) -> None:
        """Kill every process the snippet started, wherever it went."""
        if self.sandbox.group:
            self.sandbox.group.kill_all()
        init = self.sandbox.sandbox_init() if self.sandbox.mode == BUBBLEWRAP else None
        if init:
            # PID 1 of a namespace takes every process in it along when it dies, and
            # bubblewrap then reaps it and exits: give it the moment that takes, so
            # the launcher is not left a zombie.
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
            if self.sandbox.wait_exit(STOP_GRACE_SECONDS):
                return
        elif not self.sandbox.group:
            for p in self.sandbox.members():
                with contextlib.suppress(psutil.Error):
                    p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.sandbox.process.pid, signal.SIGKILL)

    def cleanup(self) -> None:
        if self.sandbox.proc is not None and self.sandbox.proc.returncode is None:
            # After a reported end the sandbox is on its way out: let it go, unless
            # it takes too long.
            if not (self.sandbox.reported and self.sandbox.wait_exit(STOP_GRACE_SECONDS)):
                self.kill()
            self.wait_sandbox()
        os.close(self.sandbox.report_read)
        if self.sandbox.group:
            self.sandbox.group.destroy()
        if self.sandbox.proc is not None:
            live_sandboxes.discard(self.sandbox.proc.pid)
        self.sweep_orphans()
        proc = self.sandbox.proc
        for pipe in (proc.stdout, proc.stderr, proc.stdin) if proc else ():
            if pipe:
                pipe.close()
        if self.sandbox.workdir:
            shutil.rmtree(self.sandbox.workdir, ignore_errors=True)

    def sweep_orphans(self) -> None:
        # What a killed launcher left was re-parented to us (we are a subreaper): kill
        # and reap those that belong to the run, so nothing runs on or stays a zombie.
        # A worker runs one snippet at a time, so a child of ours that appeared since
        # the run started, and is not one we started ourselves (the sandboxes started
        # ahead for the next runs), is the run's.
        with sandboxes_starting:
            for pid in own_children():
                if pid in live_sandboxes:
                    continue
                try:
                    child = psutil.Process(pid)
                    ours = self.sandbox.seen.get(child.pid) == child.create_time()
                    ours = ours or child.pid == self.sandbox.init_pid
                    if self.sandbox.account:
                        ours = ours or child.uids().real == self.sandbox.account[0]
                    else:
                        ours = ours or child.create_time() >= self.sandbox.started_at - 0.01
                    if not ours or child.pid == (
                        self.sandbox.proc.pid if self.sandbox.proc else None
                    ):
                        continue
                    child.kill()
                    os.waitpid(child.pid, 0)
                except (psutil.Error, ChildProcessError):
                    pass


# The sandboxes of this process not yet ended (their first process's pid), and a lock
# held while one starts: the sweep after a run must not take another's for an orphan.
live_sandboxes: set[int] = set()
sandboxes_starting = threading.Lock()

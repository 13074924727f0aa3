"""A sandbox from its start to its end: started and confined (`launch`), fed its code,
watched against its limits, and ended (`Watch`, with its readings in `usage` and its
ending in `teardown`)."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import shutil
import subprocess
import tempfile
import time

from django.conf import settings

from . import cgroups, launcher
from .command import (
    bwrap_command,
    drop_privileges,
    isolation,
    landlock_paths,
    launcher_arguments,
    process_cap,
    sandbox_environment,
)
from .contract import (
    BUBBLEWRAP,
    CANCELLED,
    CPU_FROM_CGROUP,
    CPU_FROM_SUPERVISOR,
    EXIT_POLL_SECONDS,
    FIRST_TICK_SECONDS,
    INIT_WAIT_SECONDS,
    NOBODY,
    REPORT_BYTES,
    SANDBOX_TMP,
    TIMEOUT,
    WATCH_SECONDS,
    Abandoned,
    Limits,
    Observer,
    Outcome,
    OutputStream,
    Tick,
)
from .host import become_subreaper, children_of, default_python, landlock_abi, sandbox_account
from .state import Sandbox
from .teardown import Report, Teardown, live_sandboxes, sandboxes_starting
from .usage import Usage


def launch(limits: Limits, nice: int = 0) -> Watch:
    """A new sandbox, started and confined, its interpreter waiting for the code;
    `nice` lowers its priority until it is taken (only where we can raise it back)."""
    mode = isolation()
    account = sandbox_account()
    python = limits.python or default_python()
    become_subreaper()
    group = cgroups.create(limits.memory_bytes, limits.max_processes, settings.SANDBOX_CPUS)
    landlock = landlock_abi() > 0
    if mode == BUBBLEWRAP:
        workdir = None  # the sandbox's own tmpfs /tmp
    else:
        workdir = tempfile.mkdtemp(prefix="ccp-run-")
        if account:
            os.chown(workdir, *account)
    report_read, report_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    # Where a cgroup counts every process, the supervisor reads its counter at each
    # section, and a snippet may handle SIGCHLD as it likes; elsewhere the supervisor
    # counts the processes itself, and the launcher refuses SIGCHLD's handling.
    counter = group.open_cpu_counter() if group else None
    launcher = launcher_arguments(
        python,
        limits,
        processes=process_cap(limits, account, group),
        # Per-process address space when no cgroup caps the tree.
        address_space=0 if group else limits.memory_bytes,
        # Inside bubblewrap no host socket is reachable: AF_UNIX stays for local IPC.
        unix_sockets=mode == BUBBLEWRAP,
        report_fd=report_write,
        cpu_counter_fd=counter,
        # Inside bubblewrap the filesystem view is already minimal; Landlock is a second
        # wall there and the only one in the fallback.
        landlock=landlock_paths(python, workdir or SANDBOX_TMP) if landlock else ("", ""),
    )
    command = bwrap_command(python, limits) + launcher if mode == BUBBLEWRAP else launcher
    watch = Watch(
        python=python,
        limits=limits,
        group=group,
        mode=mode,
        workdir=workdir,
        landlock=landlock,
        account=account,
        report=(report_read, report_write),
        counter=counter,
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


def _started(observer: Observer) -> None:
    if not observer.started():
        raise Abandoned()  # the sandbox is ended on the way out (`executed`)


class Watch(Sandbox):
    """Starts the snippet, feeds it its code, watches it, and ends its whole tree: what
    it uses is `usage`'s to read, its end `teardown`'s."""

    def __init__(self, **parts) -> None:
        super().__init__(**parts)
        self.usage = Usage(self)
        self.teardown = Teardown(self)

    def stop(self) -> None:
        self.teardown.stop()

    def kill(self) -> None:
        self.teardown.kill()

    def cleanup(self) -> None:
        self.teardown.cleanup()

    def start(self, command: list[str], nice: int = 0) -> None:
        """Start the sandbox and confine it (at priority `nice` until
        `raise_priority`); a failure is kept on the outcome."""
        outcome = self.outcome
        try:
            sandboxes_starting.acquire()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir or "/",
                env=sandbox_environment(self.python, self.workdir or SANDBOX_TMP),
                start_new_session=True,
                pass_fds=tuple(fd for fd in (self.report_write, self.counter) if fd is not None),
                **drop_privileges(self.account),
            )
        except OSError as exc:
            outcome.error = f"Could not start the sandbox: {exc}"
            return
        else:
            live_sandboxes.add(self.process.pid)
        finally:
            sandboxes_starting.release()
            os.close(self.report_write)
            if self.counter is not None:
                os.close(self.counter)
        problem = self._confine()
        if problem:
            self.kill()
            self.teardown.wait_sandbox()
            outcome.error = f"The sandbox could not be confined ({problem}); the code was not run."
            return
        if nice:
            self._set_priority(nice)
        try:
            self.stdin_pipe.write(launcher.GO)
            self.stdin_pipe.flush()
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
        others = (set(children_of(supervisor)) | {self.process.pid}) - {supervisor}
        for pid in others:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, nice)

    def raise_priority(self) -> None:
        """Back to the normal priority, before the code is sent."""
        if self.nice:
            self._set_priority(0)

    def execute(self, source: bytes, observer: Observer = NOBODY, stdin: bytes = b"") -> Outcome:
        """Send the code (and what the snippet reads on its standard input) and watch it
        to the end. Every figure counts from here."""
        outcome = self.outcome
        if outcome.error:
            _started(observer)
            return outcome  # fail closed: the code never goes to an incomplete sandbox
        self._wait_until_ready()
        self.accounted_at_code = self.group.cpu_seconds() if self.group else None
        if self.accounted_at_code is not None:
            self.cpu_before_code = self.accounted_at_code  # what _cpu_seconds reads
        else:
            self.cpu_before_code = self.usage.cpu_seconds()
        started = time.monotonic()
        # The snippet's process reads the code at once; its input waits in the pipe for
        # the snippet to read it. Whatever the pipe cannot hold yet is sent as the
        # snippet reads, by the watch: never a write that waits on the snippet.
        self._input = memoryview(launcher.frame(source, stdin))
        os.set_blocking(self.stdin_pipe.fileno(), False)
        if self._send_input():
            self.stdin_pipe.close()
        _started(observer)
        self._watch(started, observer)
        return outcome

    def _send_input(self) -> bool:
        """Write what the pipe takes of the code and input; True once nothing is left
        to send (all of it sent, or the sandbox gone: its stderr says why)."""
        fd = self.stdin_pipe.fileno()
        try:
            while self._input:
                self._input = self._input[os.write(fd, self._input) :]
        except BlockingIOError:
            return False
        except OSError:
            self._input = memoryview(b"")
        return True

    def _wait_until_ready(self) -> None:
        """Until both processes of the sandbox wait (the supervisor for the snippet,
        the snippet's process for its code): from then on, everything the cgroup
        counts is the run's. A standby has long been ready."""
        deadline = time.monotonic() + INIT_WAIT_SECONDS
        while not self._ready() and time.monotonic() < deadline and not self.exited():
            select.select([self.report_read], [], [], min(deadline - time.monotonic(), 0.05))
            self.report_text()

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

    def _watch(self, started: float, observer: Observer) -> None:
        outcome, limits = self.outcome, self.limits
        streams = {
            self.stdout_pipe.fileno(): OutputStream(limits.output_bytes),
            self.stderr_pipe.fileno(): OutputStream(limits.output_bytes),
        }
        stdout, stderr = streams.values()
        selector = selectors.DefaultSelector()
        for fd in streams:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        # The supervisor's report ends the run the moment it comes, before bubblewrap
        # has exited (it and the launcher hold the output pipes open until then).
        selector.register(self.report_read, selectors.EVENT_READ)
        sending = not self.stdin_pipe.closed  # the input the pipe could not hold at once
        if sending:
            selector.register(self.stdin_pipe.fileno(), selectors.EVENT_WRITE)
        deadline = started + limits.timeout_s
        # The first tick comes early: a snippet's first output shows at once.
        tick_seconds = observer.tick_seconds
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
            if observer.stop_requested():
                outcome.limit = CANCELLED  # at most WATCH_SECONDS after it was asked
                break
            if now >= next_check:
                memory = self.usage.memory_bytes()
                outcome.memory_byte_seconds += memory * (now - last_check)
                outcome.peak_memory_bytes = max(outcome.peak_memory_bytes, memory)
                last_check = now
                next_check = now + WATCH_SECONDS
                outcome.limit = self.usage.limit_reached(memory)
                # Once the snippet's main process is gone the run is over, even if a
                # straggler still holds the pipes open.
                exited = outcome.limit != "" or self.exited()
                if exited:
                    break
            if now >= next_tick:
                next_tick = now + tick_seconds
                cpu = max(self.usage.cpu_seconds() - self.cpu_before_code, 0.0)
                observer.tick(
                    Tick(now - started, cpu, memory, stdout.text(False), stderr.text(False))
                )
            timeout = max(0.0, min(deadline, next_check, next_tick) - now)
            if not any(fd in selector.get_map() for fd in streams):
                # Both pipes closed: the sandbox is exiting; bubblewrap follows its
                # launcher within a millisecond or so.
                exited = self.exited()
                time.sleep(0 if exited else min(timeout, EXIT_POLL_SECONDS))
                continue
            for key, events in selector.select(timeout):
                if events & selectors.EVENT_WRITE:
                    if self._send_input():
                        selector.unregister(key.fd)
                        self.stdin_pipe.close()
                        sending = False
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.fd == self.report_read:
                    exited = self._read_report(chunk)
                elif streams[key.fd].feed(chunk):
                    outcome.limit = "output"
                    exited = True
        end = time.monotonic()
        if sending:  # input the snippet never read
            selector.unregister(self.stdin_pipe.fileno())
            self.stdin_pipe.close()
        outcome.memory_byte_seconds += memory * (end - last_check)
        if not self.reported and not self.exited():
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

    def _post_mortem(self, wall_s: float, stdout: OutputStream, stderr: OutputStream) -> None:
        """Once the tree is gone: its status, CPU, memory, and how the run ended."""
        outcome, limits = self.outcome, self.limits
        # With a cgroup, everything left to know is known once the supervisor has
        # reported; without one, bubblewrap's wait status carries the peak memory.
        report = self.teardown.reap(wait=not (self.reported and self.group))
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
            outcome.limit = self.usage.limit_after_exit(stderr)
        if outcome.exit_code == launcher.CONFINEMENT_FAILED and b"sandbox: " in stderr.data:
            outcome.error = stderr.text().strip()
        elif self.mode == BUBBLEWRAP and b"bwrap: " in stderr.data[:200]:
            outcome.error = f"The sandbox failed to start: {stderr.text().strip()}"
        if outcome.limit or outcome.timed_out:
            outcome.limit_message = limits.describe(outcome.limit or TIMEOUT, outcome.last_line)
        outcome.stdout, outcome.stderr = stdout.text(), stderr.text()
        outcome.stdout_truncated, outcome.stderr_truncated = stdout.truncated, stderr.truncated

    def _cpu_of_the_run(self, report: Report) -> tuple[float, str]:
        """The CPU time of the snippet's processes, and where it comes from.

        A cgroup counts every process ever in it, whatever the snippet did with its
        signals (a process that ignores SIGCHLD has its children's CPU time discarded
        by the kernel, out of any wait's sight): all of it from the code's arrival, the
        supervisor's work included, since a snippet decides how much of it there is
        (its fixed part is in the measured start-up baseline). Without one, the
        supervisor's count of what it reaped and of its own work (the launcher refuses
        SIGCHLD's handling there), or, should it have been killed before it could
        count, what bubblewrap waited for, less the start-up."""
        accounted = self.group.cpu_seconds() if self.group else None
        if accounted is not None and self.accounted_at_code is not None:
            return max(accounted - self.accounted_at_code, 0.0), CPU_FROM_CGROUP
        if report.tree_cpu is not None:
            return report.tree_cpu, CPU_FROM_SUPERVISOR
        most = max(report.everything_cpu, accounted or 0.0)
        source = CPU_FROM_CGROUP if accounted else CPU_FROM_SUPERVISOR
        return max(most - self.outcome.startup_cpu_s, 0.0), source

    @staticmethod
    def _drain(fd: int, stream: OutputStream) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            stream.feed(chunk)

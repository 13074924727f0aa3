"""Turn a queued Run into a finished one: sandbox + measurement + persistence.

The queue worker and `manage.py runsnippet` both call `execute`. Every process that
executes runs keeps a heartbeat row alive (runs.queue.heartbeat), so a run whose
process dies is found by anyone and marked as an error instead of running forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from .. import sandbox
from ..figures import measure
from ..models import OutputChunk, Run, Worker
from ..sandbox import environments, launcher
from . import heartbeat
from .ahead import prepare_next_sandbox
from .baselines import current_baseline, current_repeatability
from .direct import wakeup

logger = logging.getLogger(__name__)


class _Tell:
    """Wakes whoever waits for a run: the request that handed it over, on its
    connection (`told`), and any other on this machine through the run's pipe."""

    def __init__(self, run: Run, told: Callable[[bool], None] | None):
        self.run = run
        self.told = told
        self.ended_told = False

    def progress(self) -> None:
        if self.told:
            self.told(False)
        wakeup.notify_run(self.run.pk)

    def ended(self) -> None:
        """Once the run is stored (more calls tell the pipe only)."""
        if self.told and not self.ended_told:
            self.ended_told = True
            self.told(True)
        wakeup.notify_run(self.run.pk)


class _Progress(sandbox.Observer):
    """The run's observer in the sandbox: claims the run as its code starts, turns the
    sandbox's ticks into live power samples written to the Run, and passes on its
    author's Stop."""

    def __init__(self, run: Run, session: measure.Session, tell: _Tell, claimed: _Claim):
        self.run = run
        self.session = session
        self.tell = tell
        self.claimed = claimed
        self.tick_seconds = settings.LIVE_SAMPLE_SECONDS
        # Set when its author asks to stop it (read with its progress): the sandbox's
        # watch ends the run.
        self.stop = threading.Event()
        self.samples: list[list[float]] = []
        self.last_elapsed = 0.0
        self.last_cpu = 0.0
        self.writer: ProgressWriter | None = None  # started at the first tick

    def sample(self, elapsed: float, cpu_s: float, memory_bytes: int) -> None:
        span = elapsed - self.last_elapsed
        if span <= 0:
            return
        busy_threads = max(cpu_s - self.last_cpu, 0.0) / span
        watts = self.session.live_watts(busy_threads, memory_bytes)
        self.samples.append([round(elapsed, 3), round(watts, 4)])
        self.last_elapsed, self.last_cpu = elapsed, cpu_s

    def finish(self, outcome: sandbox.Outcome) -> None:
        """Close the series with a point at the run's end (runs.figures.charts counts on it):
        the live counters are gone by now, so the last level is held (or, for a run
        too short to sample, its average). Progress not yet written is dropped: the
        run's end carries it all."""
        if self.writer is not None:
            self.writer.stop()
        if not self.samples:
            self.last_elapsed = self.last_cpu = 0.0
            self.sample(outcome.wall_s, outcome.cpu_s, outcome.peak_memory_bytes)
        else:
            end = max(outcome.wall_s, self.last_elapsed)
            self.samples.append([round(end, 3), self.samples[-1][1]])

    def drop(self) -> None:
        """Forget this go: its progress writes end, and what they appended goes."""
        if self.writer is not None:
            self.writer.stop()
            self.writer.join()
        self.run.drop_live_output()

    def started(self) -> bool:
        return self.claimed()

    def stop_requested(self) -> bool:
        return self.stop.is_set()

    def tick(self, tick: sandbox.Tick) -> None:
        self.sample(tick.elapsed_s, tick.cpu_s, tick.memory_bytes)
        if self.writer is None:
            self.writer = ProgressWriter(self.run, self.tell, self.stop)
            self.writer.start()
        self.writer.submit(tick.stdout, tick.stderr, list(self.samples))


class ProgressWriter(threading.Thread):
    """Writes a running run's progress beside its sandbox's watch, the latest only: a
    busy database (a lock held past its timeout) delays what its page shows, never the
    run itself, whose time limit runs on meanwhile."""

    def __init__(self, run: Run, tell: _Tell, stop: threading.Event):
        super().__init__(name=f"progress-{run.pk}", daemon=True)
        self.of, self.tell = run, tell  # not `run`: Thread's own method
        self.stop_run = stop
        self.changed = threading.Condition()
        self.latest: tuple[str, str, list] | None = None
        self.stopped = False
        self.written: dict[str, int] = {stream: 0 for stream in OutputChunk.Stream}  # characters

    def record(self, stdout: str, stderr: str, samples: list) -> Run.Progress:
        """Append what is new since the last write (all of it if that write failed);
        what Run.record_progress found."""
        appended = [
            OutputChunk(run_id=self.of.pk, stream=stream, start=start, end=len(text), text=new)
            for stream, text in (
                (OutputChunk.Stream.STDOUT, stdout),
                (OutputChunk.Stream.STDERR, stderr),
            )
            if (new := text[(start := self.written[stream]) :])
        ]
        found = self.of.record_progress(appended, samples)
        if found == Run.Progress.WRITTEN:
            for chunk in appended:
                self.written[chunk.stream] = chunk.end
        return found

    def submit(self, stdout: str, stderr: str, samples: list) -> None:
        with self.changed:
            self.latest = (stdout, stderr, samples)
            self.changed.notify()

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify()

    def run(self) -> None:
        try:
            while True:
                with self.changed:
                    while self.latest is None and not self.stopped:
                        self.changed.wait()
                    if self.stopped or self.latest is None:
                        return
                    latest, self.latest = self.latest, None
                try:
                    found = self.record(*latest)
                    if found == Run.Progress.STOP:
                        self.stop_run.set()  # its end writes everything
                    if found != Run.Progress.WRITTEN:
                        return  # stopped, or over: its end or a reaper has the row
                except (OperationalError, InterfaceError) as exc:
                    logger.warning("progress of run %s not written: %s", self.of.public_id, exc)
                    connection.close()  # this thread's: reopened by the next write
                    continue
                self.tell.progress()
        finally:
            connection.close()


class _Claim:
    """Whether this worker may store a run: at once for a run it took from the queue;
    for one handed over directly, the answer of `claim` (runs.queue.direct.protocol.claim),
    asked once, while the code starts or before a failure is stored."""

    def __init__(self, claim: Callable[[], bool] | None):
        self.claim = claim
        self.granted: bool | None = None if claim else True

    def __call__(self) -> bool:
        if self.granted is None and self.claim is not None:
            self.granted = self.claim()
        return bool(self.granted)


def execute(
    run: Run,
    kind: str = Worker.Kind.QUEUE,
    claim: Callable[[], bool] | None = None,
    told: Callable[[bool], None] | None = None,
) -> Run | None:
    """Run `run`'s code in the sandbox, measure it, and store the result on `run`.

    A run handed over directly comes unclaimed, with `claim`: the database is asked
    while its code starts, and if the run is not this worker's after all, the sandbox
    is ended and nothing stored (None). `told(ended)` hears when it has printed
    (False) and, once, when it is stored (True)."""
    beat = heartbeat.start(kind)
    claimed = _Claim(claim)
    tell = _Tell(run, told)
    if claim is None and not run.mark_running(beat.worker.name):
        return None  # stopped while it waited: its status is final
    env = environments.named(run.env_name)
    try:
        if env is None:
            # Chosen when it was submitted, gone since (the operator removed it).
            raise sandbox.SandboxUnavailable(environments.unknown(run.env_name))
        # A go that the line profile's sampler crashed (sandbox.Outcome.sampler_crashed)
        # says nothing of the snippet: it is dropped, what it printed and used with it,
        # and the run goes again from the start without the profile, once.
        for profile in (True, False):
            limits = sandbox.Limits.from_settings(run.timeout_s, env.python, profile)
            # The run carries its own timeout and grid, filled in when it was submitted.
            with measure.Session(run.country_iso_code, run.region) as session:
                progress = _Progress(run, session, tell, claimed)
                with sandbox.executed(run.code, limits, progress, stdin=run.stdin) as outcome:
                    if outcome.sampler_crashed and not outcome.limit and profile:
                        progress.drop()
                        continue
                    if not profile:
                        outcome.note(launcher.PROFILE_CRASHED)
                    figures = session.finish(outcome)
                    figures.provenance["environment"] = env.provenance()
                    progress.finish(outcome)
                    run.power_samples = progress.samples
                    run.apply_baseline(current_baseline(env))
                    run.host_repeatability = current_repeatability()
                    run.finish(outcome, figures)
                    # Stored: told now, while the sandbox's teardown goes on.
                    tell.ended()
            break
    except sandbox.Abandoned:
        pass  # not ours: its sandbox is ended, nothing stored
    except Run.NotUpdated:
        # Its row went while it ran (deleted in the admin, say): nothing to store it in.
        logger.warning("run %s was deleted while it ran; its result is dropped", run.public_id)
    except Run.AlreadyEnded:
        # Another process ended it meanwhile (a reaper on another host that took this
        # worker for dead): its status is final, and what it says stays.
        logger.warning(
            "run %s was ended elsewhere while it ran; its result is dropped", run.public_id
        )
    except sandbox.SandboxUnavailable as exc:
        logger.error("sandbox unavailable: %s", exc)
        if claimed():
            gone = env is None  # the message names the environments there are
            run.fail(str(exc) if gone else f"The sandbox is not available on this server: {exc}")
    except Exception:
        if run.is_over:  # stored already: the teardown failed, not the run
            logger.exception("ending the sandbox of run %s failed", run.public_id)
        elif claimed():
            logger.exception("run %s failed in our code", run.public_id)
            run.fail(
                "Something went wrong on our side while running this snippet; it has been logged."
            )
    if claimed():
        tell.ended()
    if kind == Worker.Kind.QUEUE:
        prepare_next_sandbox(env)
    return run if claimed() else None

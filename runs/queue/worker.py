"""A worker: one process that runs queued snippets one at a time (measurements are
machine-wide), wakes at once for a run queued on its machine, takes runs a web process
hands it directly, and does the fleet's chores while idle. `manage.py worker` starts it."""

import functools
import logging
import time

from django.conf import settings
from django.db import close_old_connections
from django.db.utils import OperationalError
from django_tasks_db.management.commands.db_worker import Worker as QueueWorker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from .. import sandbox
from ..figures import measure
from ..models import Run, retention
from ..sandbox import cgroups
from . import ahead, baselines, heartbeat, tasks
from .direct import protocol, sockets, wakeup

PURGE_CHECK_SECONDS = 60
# Control runs when a worker starts, so that a fresh host has a spread at once.
CONTROL_RUNS_AT_START = 3
logger = logging.getLogger(__name__)


def chore(function) -> None:
    """A side duty of the worker: its failure is logged, and runs go on."""
    try:
        function()
    except Exception:
        logger.exception("%s failed; retrying later", function.__name__)


class Worker(QueueWorker):
    """django-tasks-db's worker, but an idle one wakes as soon as a run is queued here,
    and takes runs handed to it directly (runs.queue.direct.sockets)."""

    def __init__(self, waiter: wakeup.Waiter, name: str, **kwargs):
        super().__init__(**kwargs)
        self.waiter = waiter
        self.name = name
        self.listener = sockets.Listener()

    def claim(self) -> DBTaskResult | None:
        tasks = DBTaskResult.objects.ready().filter(
            backend_name=self.backend_name, queue_name__in=self.queue_names
        )
        with exclusive_transaction(tasks.db):
            try:
                task = tasks.get_locked()
                if task is not None:
                    task.claim(self.worker_id)
                return task
            except OperationalError as exc:
                if is_locked_database_exception(exc):
                    return None  # another worker holds the lock: try again shortly
                raise

    def run(self) -> None:
        next_repair = next_purge = 0.0
        next_control = time.monotonic() + settings.CONTROL_INTERVAL_SECONDS
        while self.running:
            close_old_connections()
            now = time.monotonic()
            if now >= next_repair:
                next_repair = now + settings.WORKER_HEARTBEAT_SECONDS
                # Clients whose runs wait with none in flight (their worker died, say),
                # comparisons whose next round nobody started, and what a killed
                # runsnippet left queued.
                chore(tasks.dispatch_waiting)
                chore(tasks.continue_stalled)
                chore(tasks.stop_abandoned)
            if now >= next_purge:
                next_purge = now + PURGE_CHECK_SECONDS
                # Hourly for the whole fleet; asking costs one conditional update.
                chore(retention.purge_if_due)
                chore(wakeup.sweep)  # this machine's pipes of requests killed waiting
            task = self.claim()
            if task is not None:
                self.listener.close()  # busy: offers go to the queue meanwhile
                self.run_task(task)
            elif self.running and time.monotonic() >= next_control:
                # Idle: measure the host's noise with the fixed control workload.
                next_control = time.monotonic() + settings.CONTROL_INTERVAL_SECONDS
                self.listener.close()
                chore(baselines.run_control)
            elif self.running:
                self.listener.open()
                if self.waiter.wait(self.interval, self.listener.fileno()):
                    self.take_offer()
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                return

    def take_offer(self) -> None:
        """Run what a web process here handed over (runs.queue.direct.protocol): its code
        starts while the run is claimed, and the web process is answered then, told
        when the run prints, and sent the run once stored."""
        offered = self.listener.accept()
        taken = protocol.Taken.of(offered) if offered is not None else None
        if taken is None:
            return

        def told(ended: bool) -> None:
            taken.tell(ended)
            if ended:
                # Stored and sent: the next offer may come while the sandbox is ended
                # (~5 ms, up to 20 on a busy host), and waits for that, not the queue.
                self.listener.open()

        try:
            claim = functools.partial(taken.claim, self.name)
            if tasks.run_then_dispatch(taken.run, claim, told) is not None:
                self._run_tasks += 1
        finally:
            taken.close()


def serve(interval: float, max_tasks: int | None, say, complain) -> None:
    """Start a worker here and run until it is told to stop: first the repairs a dead
    worker may have left (its runs, its cgroups), the start-up baseline and the control
    runs, and the next run's sandbox started ahead."""
    beat = heartbeat.start()
    failed = Run.objects.fail_orphans()
    if failed:
        complain(f"Marked {failed} run(s) of dead workers as errors.")
    swept = cgroups.sweep_orphans()
    if swept:
        complain(f"Stopped what was left of {swept} dead worker run(s).")
    measure.warm()
    baseline = baselines.measure_baseline()
    for _ in range(CONTROL_RUNS_AT_START):
        chore(baselines.run_control)
    ahead.prepare_next_sandbox()
    say(
        f"Start-up baseline: {baseline.cpu_seconds * 1000:.0f} ms CPU, "
        f"{baseline.duration_s * 1000:.0f} ms wall ({baseline.isolation})."
    )
    waiter = wakeup.Waiter()
    sockets.sweep()
    wakeup.sweep()
    worker = Worker(
        waiter,
        beat.worker.name,
        queue_names=["default"],
        interval=interval,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=beat.worker.name[-64:],
        excluded_queue_names=[],
    )
    worker.configure_signals()
    say(f"Worker {beat.worker.name} ready.")
    try:
        worker.run()
    finally:
        worker.listener.close()
        waiter.close()
        sandbox.discard_standby()
        heartbeat.stop()

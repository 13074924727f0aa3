"""This process's heartbeat: a row that says it is alive, beaten by a thread that also
marks as errors the runs of processes that are not (and stops what their sandboxes
left). Every process that executes runs keeps one, started on first use."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connection

from ..models import Run, Worker
from ..sandbox import cgroups

logger = logging.getLogger(__name__)

_heartbeat: Heartbeat | None = None
_heartbeat_lock = threading.Lock()


class Heartbeat(threading.Thread):
    """Announces that this process is alive, and fails runs of processes that are not."""

    def __init__(self, kind: str):
        super().__init__(name="run-heartbeat", daemon=True)
        self.worker = Worker(name=Worker.name_for_this_process(), kind=kind)
        self.stopped = threading.Event()

    def start(self) -> None:
        # The first beat is synchronous: a run must never be marked running by a
        # process that the reaper cannot yet see as alive.
        self.worker.beat()
        super().start()

    def run(self) -> None:
        while not self.stopped.wait(settings.WORKER_HEARTBEAT_SECONDS):
            try:
                self._beat()
                # Never this process's own runs: after a database lock its last beat
                # may look stale, yet it is plainly alive and storing them.
                Run.objects.exclude(worker=self.worker.name).fail_orphans()
                cgroups.sweep_orphans()
            except Exception:
                logger.exception("heartbeat failed; retrying")
            finally:
                close_old_connections()
        connection.close()

    def _beat(self) -> None:
        if connection.vendor == "postgresql":
            # A beat waits for no lock longer than a beat's interval: behind one (an
            # operator's LOCK, or the caller's own open transaction holding the first
            # beat's row, as a test's does) it fails, and beats again next time,
            # instead of holding up this process's stop for as long as the lock lasts.
            timeout_ms = max(int(settings.WORKER_HEARTBEAT_SECONDS * 1000), 100)
            with connection.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = {timeout_ms}")
        self.worker.beat()

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        Worker.objects.filter(name=self.worker.name).delete()


def start(kind: str = Worker.Kind.QUEUE) -> Heartbeat:
    """This process's heartbeat, started on first use."""
    global _heartbeat
    with _heartbeat_lock:
        if _heartbeat is None:
            _heartbeat = Heartbeat(kind)
            _heartbeat.start()
        return _heartbeat


def stop() -> None:
    """Stop beating and forget this process's worker row (it is leaving cleanly)."""
    global _heartbeat
    with _heartbeat_lock:
        if _heartbeat is not None:
            _heartbeat.stop()
            _heartbeat = None

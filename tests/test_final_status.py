"""A final status is final, and a live run is never called dead.

Real workers, a real lock on the real database (SQLite's file, or PostgreSQL's table of
heartbeats), real polls of the page and the API.
"""

import signal
import threading
import time

import pytest
from django.db import connections
from django.test import Client

from runs.models import Run
from runs.queue import execution, heartbeat
from runs.queue.tasks import enqueue

from .conftest import finished, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Longer than a stale heartbeat (WORKER_STALE_SECONDS is 1.5 s in these tests).
LOCK_SECONDS = 4.0
SLOW_RUN = "import time\nprint('working', flush=True)\ntime.sleep(6)\nprint('done')\n"


def hold_a_lock(locked: threading.Event, seconds: float) -> None:
    """Hold the lock that stops the workers' heartbeats, as a busy database would."""
    db = connections["default"]
    if db.vendor == "sqlite":
        import sqlite3

        lock = sqlite3.connect(db.settings_dict["NAME"], isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        lock.execute("COMMIT")
        lock.close()
        return
    import psycopg

    settings_dict = db.settings_dict
    with psycopg.connect(
        dbname=settings_dict["NAME"], user=settings_dict["USER"],
        host=settings_dict["HOST"] or "localhost", port=settings_dict["PORT"] or 5432,
    ) as lock:  # fmt: skip
        # Writes wait (every heartbeat); reads go on (the page's check of them).
        lock.execute("LOCK TABLE runs_worker IN EXCLUSIVE MODE")
        locked.set()
        time.sleep(seconds)
        lock.commit()


def test_a_locked_database_never_gets_a_live_run_called_dead(start_worker):
    start_worker()
    run = Run.objects.submit(SLOW_RUN, client="203.0.113.61")
    enqueue(run)
    wait_for(lambda: Run.objects.get(pk=run.pk).status == Run.Status.RUNNING)
    locked = threading.Event()
    holder = threading.Thread(target=hold_a_lock, args=(locked, LOCK_SECONDS))
    holder.start()
    locked.wait()
    page, api, seen = Client(), Client(), set()
    while not finished(run):
        # The page checks whether the run's worker is alive; the API reads what it says.
        page.get(run.get_absolute_url())
        seen.add(api.get(f"/api/runs/{run.public_id}").json()["status"])
        connections.close_all()
        time.sleep(0.2)
    holder.join()
    assert Run.Status.ERROR not in seen, seen
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.stdout == "working\ndone\n"


def test_a_run_ended_elsewhere_keeps_its_final_status_and_figures(start_worker):
    worker = start_worker()
    run = Run.objects.submit("import time\ntime.sleep(2)\nprint('late')", client="203.0.113.62")
    enqueue(run)
    wait_for(lambda: Run.objects.get(pk=run.pk).status == Run.Status.RUNNING)
    # Another host's reaper took the worker for dead (its heartbeats were late).
    assert Run.objects.get(pk=run.pk).fail_orphaned() == 1
    ended = finished(run)
    wait_for(lambda: "was ended elsewhere while it ran" in worker.log.read_text(), timeout=30)
    run.refresh_from_db()
    assert (run.status, run.error, run.finished_at) == (
        ended.status,
        ended.error,
        ended.finished_at,
    )
    assert run.status == Run.Status.ERROR and run.energy_kwh is None and run.stdout == ""


def test_a_run_stopped_while_it_waited_is_not_run():
    run = Run.objects.submit("print('never')")
    assert run.cancel()
    assert execution.execute(run) is None
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.stdout == "" and run.started_at is None


@pytest.mark.skipif(
    connections["default"].vendor != "postgresql",
    reason="PostgreSQL's: SQLite's busy timeout ends such a wait by itself",
)
@pytest.mark.django_db  # inside the test's transaction, as most tests of runs are
def test_a_heartbeat_stops_even_behind_its_callers_open_transaction(settings):
    # The first beat is written by the caller, inside its transaction; a later beat of
    # the heartbeat's own connection then waits on that row. Stopping must not wait for
    # the transaction to end (it ends only after the stop: a deadlock that hung a suite).
    settings.WORKER_HEARTBEAT_SECONDS = 0.2
    heartbeat.start()
    time.sleep(1.0)  # several beats' time: one of them is waiting on the row now

    def hung(*_) -> None:  # a deadlock fails the test instead of hanging the suite
        raise TimeoutError("the heartbeat did not stop")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        heartbeat.stop()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

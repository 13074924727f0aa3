"""Waiting in a request for a run to finish, without letting waiters take the server.

At most API_MAX_WAITING requests of one web process wait at once (POST /run, and the
playground's form for a moment); the others answer at once with where to look.
"""

from __future__ import annotations

import contextlib
import threading
import time

from django.conf import settings

from . import wakeup
from .models import Run

FALLBACK_POLL_SECONDS = 0.2

_slots = threading.BoundedSemaphore(max(settings.API_MAX_WAITING, 1))


def wait_for(run: Run, seconds: float, until_output: bool = False) -> bool:
    """Wait up to `seconds` for `run` to end, or with `until_output` for it to end or
    print; False without a free slot or when it is still going. Either way `run` is
    read afresh from the database."""
    if seconds <= 0 or settings.API_MAX_WAITING == 0 or not _slots.acquire(blocking=False):
        run.refresh_from_db()
        return False
    waiter = None
    try:
        with contextlib.suppress(OSError):  # no pipe: look every FALLBACK_POLL_SECONDS
            waiter = wakeup.Waiter.for_run(run.pk)
        deadline = time.monotonic() + seconds
        while not _settled(run, until_output):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # The worker pokes the run's pipe when it prints or ends; the timeout
            # covers a worker on another machine.
            if waiter:
                waiter.wait(min(remaining, FALLBACK_POLL_SECONDS))
            else:
                time.sleep(min(remaining, FALLBACK_POLL_SECONDS))
    finally:
        if waiter:
            waiter.close()
        _slots.release()
    return run.is_over


def _settled(run: Run, until_output: bool) -> bool:
    # The whole row, one query: the caller answers with it.
    run.refresh_from_db()
    return run.is_over or (until_output and run.stdout != "")

"""Waiting in a request for a run to finish, without letting waiters take the server.

At most API_MAX_WAITING requests of one web process wait at once (POST /run, and the
playground's form for a moment); the others answer at once with where to look.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from .models import Run

_slots = threading.BoundedSemaphore(max(settings.API_MAX_WAITING, 1))


def wait_for(run: Run, seconds: float, until_output: bool = False) -> bool:
    """Wait up to `seconds` for `run` to end (refreshing its status), or with
    `until_output` for it to end or print; False without a free slot or when it is
    still going."""
    if seconds <= 0 or settings.API_MAX_WAITING == 0 or not _slots.acquire(blocking=False):
        return False
    try:
        started = time.monotonic()
        pause = 0.005
        while not run.is_over and time.monotonic() - started < seconds:
            # Short snippets finish in tens of milliseconds: look soon, then back off.
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)
            if until_output and Run.objects.filter(pk=run.pk).exclude(stdout="").exists():
                break
            run.refresh_from_db(fields=["status"])
    finally:
        _slots.release()
    return run.is_over

"""Waiting in a request for a run to finish, without letting waiters take the server.

At most API_MAX_WAITING requests of one web process wait at once (POST /run, and the
playground's form for a moment); the others answer at once with where to look.

A run handed straight to a worker here is followed on that worker's connection, which
brings the stored run itself; any other through its named pipe and the database. That
connection is closed once the response has gone out (Django's request_finished, sent
after the server has written it): the worker waits for this hang-up (at most
sockets.HANG_UP_SECONDS) before it ends the run's sandbox and starts the next one,
work that would otherwise compete with the answer for the host's cores.
"""

from __future__ import annotations

import contextlib
import threading
import time

from django.conf import settings
from django.core.signals import request_finished
from django.dispatch import receiver

from ...models import OutputChunk, Run
from . import protocol, sockets, wakeup

FALLBACK_POLL_SECONDS = 0.2

_slots = threading.BoundedSemaphore(max(settings.API_MAX_WAITING, 1))
# Hand-over connections followed by this thread's request, to close as it finishes.
_followed = threading.local()


def wait_for(
    run: Run, seconds: float, until_output: bool = False, handed: sockets.Handed | None = None
) -> bool:
    """Wait up to `seconds` for `run` to end, or with `until_output` for it to end or
    print; False without a free slot or when it is still going. Either way `run` is
    read afresh (from the database, or as the worker stored it). `handed`: the
    connection to the worker it was handed to (runs.queue.tasks.store_and_enqueue),
    followed instead of polling, and closed as the request finishes."""
    try:
        if seconds <= 0 or settings.API_MAX_WAITING == 0 or not _slots.acquire(blocking=False):
            run.refresh_from_db()
            return False
        try:
            deadline = time.monotonic() + seconds
            if handed is not None:
                settled = protocol.follow(
                    run, handed, deadline, lambda: until_output and _settled(run, until_output)
                )
                if settled is not None:
                    return settled
            return _poll(run, deadline, until_output)
        finally:
            _slots.release()
    finally:
        if handed is not None:
            _followed.__dict__.setdefault("connections", []).append(handed)


@receiver(request_finished)
def hang_up(**kwargs) -> None:
    """Close the hand-over connections this thread's request followed."""
    connections = _followed.__dict__.get("connections", [])
    while connections:
        connections.pop().close()


def _poll(run: Run, deadline: float, until_output: bool) -> bool:
    waiter = None
    try:
        with contextlib.suppress(OSError):  # no pipe: look every FALLBACK_POLL_SECONDS
            waiter = wakeup.Waiter.for_run(run.pk)
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
    return run.is_over


def _settled(run: Run, until_output: bool) -> bool:
    # The whole row, one query: the caller answers with it.
    run.refresh_from_db()
    if run.is_over or not until_output:
        return run.is_over
    return run.output_chunks.filter(stream=OutputChunk.Stream.STDOUT).exists()

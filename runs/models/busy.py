"""Writes that must not be lost to a busy database: a run's end is what it printed and
measured, and it cannot be measured again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import InterfaceError, OperationalError, connections, transaction

logger = logging.getLogger(__name__)
# How long a run's end waits for a busy database before it is given up (Run.store):
# past SQLite's busy timeout (20 s) twice, and a PostgreSQL restart.
RESULT_WRITE_SECONDS = 120


def write_patiently(write: Callable[[], None], using: str | None, what: str) -> None:
    """`write()` in a transaction on the database `using`: where the database is busy
    (locked past its timeout, or its connection dropped), wait and try again, doubling
    the wait up to 5 s, for RESULT_WRITE_SECONDS; then its error."""
    deadline = time.monotonic() + RESULT_WRITE_SECONDS
    delay = 0.5
    while True:
        try:
            with transaction.atomic(using=using):
                write()
            return
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("storing %s failed (%s); trying again in %g s", what, exc, delay)
            connections[using or "default"].close()  # reopened by the next query
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

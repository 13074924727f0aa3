"""A run handed straight to an idle worker on this machine: both ends, in the order it
happens. The socket beneath is runs.queue.direct.sockets's; at every step that does not
happen (no idle worker, a refusal, no answer in time) the queue table takes over.

1. The web process offers the run (`offer`): a new run before anything of it is
   written, or one just stored. Its row travels with the offer (`row_of`).
2. An idle worker takes the offer (`Taken.of`) and starts the run's code in its
   sandbox while it claims the run in the database (`Taken.claim`, `claim`): under
   the fair queue's rule, it writes a new run's row itself, as running, or updates a
   stored one.
3. The worker answers with the row's primary key, or that it did not take the run.
4. The web process reads the answer (in `offer`). Taken, it may follow the run on
   the same connection (`follow`): the worker tells it when the run prints and sends
   the run's row once stored (`Taken.tell`). Not taken, it stores and queues the run.
5. A late answer: a worker that claims a new run after the web process gave up and
   stored it finds its public id taken, so its claim is refused and it does not run
   it; a web process whose own insert is refused because the worker's claim came
   first reads the worker's row instead (`stored_instead`). Either way a run runs once.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, InterfaceError, OperationalError
from django.utils import timezone

from ...models import Run
from . import sockets

logger = logging.getLogger(__name__)


# --- 1. the offer ------------------------------------------------------------------


def offer(run: Run) -> sockets.Handed | None:
    """Offer `run` to an idle worker here and read its answer (4.): the connection to
    the worker that took it, still open (the caller follows the run on it,
    runs.queue.direct.waiting, or closes it), or None. A new run gets the primary key of the
    row the worker wrote."""
    handed = sockets.offer(row_of(run))
    if handed is None:
        return None
    key = handed.taken()
    if key is None or run.pk not in (None, key):
        handed.close()
        return None
    if run.pk is None:
        run.pk, run._state.adding = key, False
    return handed


class _ExactEncoder(DjangoJSONEncoder):
    # Django's JSON encoder keeps milliseconds of a time: a row that went through it
    # and was saved again would lose its microseconds.
    def default(self, o):
        if isinstance(o, datetime.datetime):
            return o.isoformat()
        return super().default(o)


def row_of(run: Run) -> bytes:
    """A run's row, as a hand-over carries it both ways: each column's value by name.
    Not Django's serializers: on the way of every run handed over, four times, and
    ~2.5x slower."""
    values = {f.attname: f.value_from_object(run) for f in Run._meta.concrete_fields}
    return json.dumps(values, cls=_ExactEncoder).encode()


def run_of(row: bytes) -> Run:
    """The run a hand-over carried: the offered one, whose row comes with the offer so
    that nothing is read before it starts (without its primary key when offered before
    it was written), or the stored one, back."""
    values = json.loads(row)
    fields = Run._meta.concrete_fields
    return Run.from_db(
        None, [f.attname for f in fields], [f.to_python(values[f.attname]) for f in fields]
    )


# --- 2. and 3. the worker takes it, claims it, answers -------------------------------


class Taken:
    """A worker's end of a run handed over to it."""

    def __init__(self, offered: sockets.Offer, run: Run):
        self.offered, self.run = offered, run

    @classmethod
    def of(cls, offered: sockets.Offer) -> Taken | None:
        """The run offered, or None (answered "not taken") when it cannot be read."""
        try:
            return cls(offered, run_of(offered.payload))
        except Exception:
            logger.exception("could not read a run handed over")
            offered.answer(None)
            return None

    def claim(self, worker: str) -> bool:
        """Claim the run for `worker` (its code is starting meanwhile) and answer."""
        taken = False
        try:
            taken = claim(self.run, worker)
        except Exception:
            logger.exception("could not claim run %s", self.run.public_id)
        self.offered.answer(self.run.pk if taken else None)
        return taken

    def tell(self, ended: bool) -> None:
        """That the run has printed, or (`ended`) its stored row: the last word."""
        if ended:
            self.offered.result(row_of(self.run))
        else:
            self.offered.progress()

    def close(self) -> None:
        self.offered.close()


def claim(run: Run, worker: str) -> bool:
    """Claim a run handed over directly for `worker`: dispatched and running, in one
    statement, under the fair queue's rule (one run of a client in flight): the
    insert of a run offered before it was stored, the conditional update of a stored
    one. No transaction around it: a BEGIN and a COMMIT more, while the code starts."""
    now = timezone.now()
    claimed = {
        "dispatched_at": now,
        "started_at": now,
        "status": Run.Status.RUNNING,
        "worker": worker,
    }
    try:
        if run.pk is None:  # offered before it was stored: its row is ours to write
            for name, value in claimed.items():
                setattr(run, name, value)
            run.save(force_insert=True)
            return True
        taken = Run.objects.undispatched().filter(pk=run.pk).update(**claimed)
    except IntegrityError:
        # Another run of this client is in flight (it goes first), or the web process
        # stopped waiting and stored this new run itself (its public id is taken).
        return False
    except (OperationalError, InterfaceError):
        # The database is busy: not taken here (the sandbox is ended, nothing stored);
        # the web process stores it, or answers that it could not.
        return False
    if taken:
        for name, value in claimed.items():
            setattr(run, name, value)
    return bool(taken)


# --- 4. the web process, answered, may follow the run ---------------------------------


def follow(
    run: Run, handed: sockets.Handed, deadline: float, printed: Callable[[], bool]
) -> bool | None:
    """Wait on the worker's own word until `run` ends, or until it has printed when
    `printed()` (asked at each PROGRESS) says so; whether it is over, or None if the
    worker went away without sending the run."""
    while True:
        try:
            message = handed.receive(deadline - time.monotonic())
        except (OSError, EOFError):
            return None
        if message is sockets.PROGRESS:
            if printed():
                return run.is_over
            continue
        stored = run_of(message) if message else None
        if stored is None or stored.pk != run.pk:
            run.refresh_from_db()  # time is up, or the row was too large to send
        else:
            run.take_row_of(stored)
        return run.is_over


# --- 5. a late answer ----------------------------------------------------------------


def stored_instead(run: Run) -> bool:
    """After the web process's insert of a new run was refused for its public id: the
    worker stored it after all (its claim came once this process had stopped waiting
    for the answer) and runs it. `run` becomes the worker's row; False if there is
    none (another cause, for the caller to raise)."""
    stored = Run.objects.filter(public_id=run.public_id).first()
    if stored is None:
        return False
    run.take_row_of(stored)
    return True

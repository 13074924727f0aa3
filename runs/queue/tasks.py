"""The fair queue: the workers' queue holds at most one run per client.

A client's runs wait in the Run table; its oldest is handed to the workers' queue
(django.tasks) when it has none there or running, and the next one when that one ends.
So one client's backlog of sixty runs delays another client's run by at most the run
in progress: round robin falls out of it. The database keeps the invariant (a partial
unique constraint, `run_one_dispatched_per_client`) for every web process and worker.
"""

import datetime
import json
import logging
from collections.abc import Callable

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.tasks import task
from django.utils import timezone

from .. import limits
from ..models import Run, Series
from . import execution, handoff, wakeup

NOT_TAKEN = "not taken"  # a run handed over that was not this worker's to run
logger = logging.getLogger(__name__)


@task()
def execute_run(run_id: int) -> str:
    run = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).first()
    if run is None:
        return "skipped"  # already run or failed elsewhere: never run twice
    return run_then_dispatch(run)


def run_then_dispatch(
    run: Run,
    claim: Callable[[], bool] | None = None,
    told: Callable[[bool], None] | None = None,
) -> str:
    """Execute `run`, then hand its client's next waiting run to the workers. A run
    handed over directly comes with its `claim` and `told` (see execution.execute)."""
    try:
        ran = execution.execute(run, claim=claim, told=told)
        return ran.status if ran else NOT_TAKEN
    finally:
        if run.series_id:
            _continue(run.series_id)
        dispatch(run.client)


def continue_comparison(series: Series) -> list[Run]:
    """A comparison's next round, stored and queued, once its last one has ended and
    its answer is not clear; or its end. It was accepted whole, every pair counted
    against its owner's limits: a round answers only to the hourly CPU budget."""
    if series.finished_at or series.runs.filter(status__in=Run.IN_FLIGHT).exists():
        return []
    count = series.next_round(series.runs_for_results())
    if not count:
        series.finish()
        return []
    refusal = limits.check_cpu(series.client)
    if refusal:
        series.finish(
            f"Stopped after {series.repetitions} pairs before the answer was clear: "
            f"{refusal.message}"
        )
        return []
    added = series.add_round(count)
    enqueue(*added)
    return added


def _continue(series_id: int) -> None:
    # Measuring the run is done and stored; a failure here must not undo it. A
    # comparison left waiting is continued by the workers' repairs (continue_stalled).
    try:
        series = Series.objects.get(pk=series_id)
        if series.runs_until_clear:
            continue_comparison(series)
    except Exception:
        logger.exception("could not continue comparison %s", series_id)


def continue_stalled() -> int:
    """Continue comparisons whose last round ended while nobody continued them (a
    worker died in between); workers call it with their other repairs."""
    return sum(bool(continue_comparison(series)) for series in Series.objects.stalled()[:100])


def enqueue(*runs: Run, watch: bool = False) -> None:
    """Queue `runs` once the transaction that created them has committed: straight to
    an idle worker on this machine where there is one (runs.queue.handoff), else through the
    workers' queue. With `watch`, a run handed over keeps the worker's connection as
    `run.handed_over`, on which runs.queue.waiting follows it to its end."""
    first = {}  # each client's first run: the others follow it through the queue
    for run in runs:
        first.setdefault(run.client, run)

    def send() -> None:
        for run in first.values():
            _hand_over(run, handoff.offer(row_of(run)), watch)

    transaction.on_commit(send)


def store_and_enqueue(run: Run, watch: bool = False) -> Run:
    """Store `run`, one new run (Run.objects.new), and queue it as `enqueue` does; but
    an idle worker here is handed it before anything is written, starts its code and
    stores it itself, as running (`claim`): one write, beside the code."""
    if transaction.get_connection().in_atomic_block:
        run.save(force_insert=True)  # offered once the transaction commits
        enqueue(run, watch=watch)
        return run
    handed = handoff.offer(row_of(run))
    key = handed.taken() if handed is not None else None
    if key is not None:
        run.pk, run._state.adding = key, False
        _follow_or_close(run, handed, watch)
        return run
    if handed is not None:
        handed.close()
    try:
        run.save(force_insert=True)
    except IntegrityError:
        # Its public id is taken: the worker stored it after all, once this process
        # had stopped waiting for its answer, and runs it.
        stored = Run.objects.filter(public_id=run.public_id).first()
        if stored is None:
            raise
        run.take_row_of(stored)
        return run
    dispatch(run.client)
    return run


def _hand_over(run: Run, handed: handoff.Handed | None, watch: bool) -> None:
    """Queue `run`, stored, through the worker it was offered to if that one claims it,
    else through the queue table."""
    if handed is not None and handed.taken() == run.pk:
        _follow_or_close(run, handed, watch)
        return
    if handed is not None:
        handed.close()
    dispatch(run.client)


def _follow_or_close(run: Run, handed: handoff.Handed, watch: bool) -> None:
    if watch:
        run.handed_over = handed  # runs.queue.waiting follows the run on it
    else:
        handed.close()


def _next_waiting(client: str) -> Run | None:
    return Run.objects.undispatched().of_client(client).order_by("created_at", "id").first()


class _ExactEncoder(DjangoJSONEncoder):
    # Django's JSON encoder keeps milliseconds of a time: a row that went through it
    # and was saved again would lose its microseconds.
    def default(self, o):
        if isinstance(o, datetime.datetime):
            return o.isoformat()
        return super().default(o)


def row_of(run: Run) -> bytes:
    """A run's row, as a hand-over carries it both ways (runs.queue.handoff): each column's
    value by name. Not Django's serializers: on the way of every run handed over, four
    times, and ~2.5x slower."""
    values = {f.attname: f.value_from_object(run) for f in Run._meta.concrete_fields}
    return json.dumps(values, cls=_ExactEncoder).encode()


def run_of(row: bytes) -> Run:
    """The run a hand-over carried: the offered one (`enqueue`), whose row comes with
    the offer so that nothing is read before it starts (without its primary key when
    offered before it was written), or the stored one, back."""
    values = json.loads(row)
    fields = Run._meta.concrete_fields
    return Run.from_db(
        None, [f.attname for f in fields], [f.to_python(values[f.attname]) for f in fields]
    )


def claim(run: Run, worker: str) -> bool:
    """Claim a run handed over directly for `worker`: dispatched and running, in one
    statement, under the same rule as `dispatch` (one run of a client in flight): the
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


def dispatch(client: str) -> bool:
    """Hand `client`'s oldest waiting run to the workers unless one is there already."""
    run = _next_waiting(client)
    if run is None:
        return False
    try:
        with transaction.atomic():
            # Refused by the database while another run of this client is in flight.
            sent = Run.objects.undispatched().filter(pk=run.pk).update(dispatched_at=timezone.now())
            if sent:
                execute_run.enqueue(run.pk)
    except IntegrityError:
        return False
    if sent:
        wakeup.notify()
    return bool(sent)


def dispatch_waiting() -> int:
    """Dispatch every client whose runs wait with none in flight (after a worker died,
    say); workers call it on every heartbeat."""
    in_flight = Run.objects.waiting_or_running().filter(dispatched_at__isnull=False)
    clients = (
        Run.objects.undispatched()
        .exclude(client__in=in_flight.values("client"))
        .values_list("client", flat=True)
        .distinct()
    )
    return sum(dispatch(client) for client in list(clients[:1000]))

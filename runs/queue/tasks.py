"""The fair queue: the workers' queue holds at most one run per client.

A client's runs wait in the Run table; its oldest is handed to the workers' queue
(django.tasks) when it has none there or running, and the next one when that one ends.
So one client's backlog of sixty runs delays another client's run by at most the run
in progress: round robin falls out of it. The database keeps the invariant (a partial
unique constraint, `run_one_dispatched_per_client`) for every web process and worker.
"""

import logging
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.tasks import task
from django.utils import timezone

from ..models import Run, Series, Worker, limits
from . import execution
from .direct import protocol, sockets, wakeup

logger = logging.getLogger(__name__)


@task()
def execute_run(run_id: int) -> str:
    run = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).first()
    if run is None:
        return "skipped"  # already run or failed elsewhere: never run twice
    ran = run_then_dispatch(run)
    return ran.status if ran else "not taken"  # the task's result, kept by the queue


def run_then_dispatch(
    run: Run,
    claim: Callable[[], bool] | None = None,
    told: Callable[[bool], None] | None = None,
) -> Run | None:
    """Execute `run`, then hand its client's next waiting run to the workers: the run
    as it ended, or None where it was not this worker's to run (handed over directly,
    with its `claim` and `told`: see execution.execute)."""
    try:
        return execution.execute(run, claim=claim, told=told)
    finally:
        if run.series_id:
            _continue(run.series_id)
        dispatch(run.client)


def continue_comparison(series: Series) -> list[Run]:
    """A comparison's next round, stored and queued, once its last one has ended and
    its answer is not clear; or its end. The comparison was admitted by its first round:
    a later one waits its turn behind its owner's other runs (the fair queue), and
    answers only to the hourly CPU budget."""
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


def stop_abandoned() -> int:
    """Stop what a terminal left queued when its runsnippet went away (Run.objects.
    abandoned): a comparison's end is stored, and no run waits forever. How many runs
    were stopped; workers, and each runsnippet as it starts, call it."""
    runs = list(Run.objects.abandoned()[:100])
    alone = [run for run in runs if run.series_id is None]
    comparisons = [
        series
        for series in Series.objects.filter(pk__in={r.series_id for r in runs if r.series_id})
        # As the reaper does: a late heartbeat is not a dead process (a locked database).
        if not any(
            Worker.still_running(name, series.created_at)
            for name in set(series.runs.exclude(worker="").values_list("worker", flat=True))
        )
    ]
    return sum(run.cancel(Run.ABANDONED) for run in alone) + sum(
        len(series.stop(abandoned=True)) for series in comparisons
    )


def enqueue(*runs: Run) -> None:
    """Queue `runs` once the transaction that created them has committed: straight to
    an idle worker on this machine where there is one (runs.queue.direct.protocol), else through the
    workers' queue."""
    first: dict[str, Run] = {}  # each client's first run: the others follow it through the queue
    for run in runs:
        first.setdefault(run.client, run)

    def send() -> None:
        for run in first.values():
            handed = protocol.offer(run)
            if handed is None:
                dispatch(run.client)  # through the queue table
            else:
                handed.close()

    transaction.on_commit(send)


def store_and_enqueue(run: Run, watch: bool = False) -> sockets.Handed | None:
    """Store `run`, one new run (Run.objects.new), and queue it as `enqueue` does; but
    an idle worker here is handed it before anything is written, starts its code and
    stores it itself, as running: one write, beside the code (runs.queue.direct.protocol).
    With `watch`, the connection to that worker, for runs.queue.direct.waiting to follow the
    run on (None where the run went through the queue)."""
    if transaction.get_connection().in_atomic_block:
        run.save(force_insert=True)  # offered once the transaction commits
        enqueue(run)
        return None
    handed = protocol.offer(run)
    if handed is not None:
        if watch:
            return handed
        handed.close()
        return None
    try:
        run.save(force_insert=True)
    except IntegrityError:
        if protocol.stored_instead(run):
            return None
        raise
    dispatch(run.client)
    return None


def _next_waiting(client: str) -> Run | None:
    return Run.objects.undispatched().of_client(client).order_by("created_at", "id").first()


def cancel(run: Run) -> bool:
    """Stop `run` for its author (Run.cancel); a queued run stopped frees its client's
    place in the workers' queue for the next. False if it was over already."""
    if not run.cancel():
        return False
    dispatch(run.client)
    return True


def cancel_series(series: Series) -> list[Run]:
    """Stop a repeat or a comparison for its author (Series.stop); its client's next
    waiting run takes its place in the workers' queue. The runs stopped."""
    stopped = series.stop()
    if stopped:
        dispatch(series.client)
    return stopped


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

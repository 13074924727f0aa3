"""The fair queue: the workers' queue holds at most one run per client.

A client's runs wait in the Run table; its oldest is handed to the workers' queue
(django.tasks) when it has none there or running, and the next one when that one ends.
So one client's backlog of sixty runs delays another client's run by at most the run
in progress: round robin falls out of it. The database keeps the invariant (a partial
unique constraint, `run_one_dispatched_per_client`) for every web process and worker.
"""

from collections.abc import Callable

from django.core import serializers
from django.db import IntegrityError, transaction
from django.tasks import task
from django.utils import timezone

from . import execution, handoff, wakeup
from .models import Run

NOT_TAKEN = "not taken"  # a run handed over that was not this worker's to run


@task()
def execute_run(run_id: int) -> str:
    run = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).first()
    if run is None:
        return "skipped"  # already run or failed elsewhere: never run twice
    return run_then_dispatch(run)


def run_then_dispatch(run: Run, claim: Callable[[], bool] | None = None) -> str:
    """Execute `run`, then hand its client's next waiting run to the workers. A run
    handed over directly comes with its `claim` (see execution.execute)."""
    try:
        ran = execution.execute(run, claim=claim)
        return ran.status if ran else NOT_TAKEN
    finally:
        dispatch(run.client)


def enqueue(*runs: Run) -> None:
    """Queue `runs` once the transaction that created them has committed: straight to
    an idle worker on this machine where there is one (runs.handoff), else through the
    workers' queue."""
    first = {}  # each client's first run: the others follow it through the queue
    for run in runs:
        first.setdefault(run.client, run)

    def send() -> None:
        for client, run in first.items():
            if not handoff.offer(serializers.serialize("json", [run]).encode()):
                dispatch(client)

    transaction.on_commit(send)


def _next_waiting(client: str) -> Run | None:
    return Run.objects.undispatched().of_client(client).order_by("created_at", "id").first()


def offered(payload: bytes) -> Run | None:
    """The run a web process handed over (`enqueue`): its row comes with the offer, so
    nothing is read before the run starts."""
    run = next(serializers.deserialize("json", payload)).object
    return run if isinstance(run, Run) else None


def claim(run: Run, worker: str) -> bool:
    """Claim a run handed over directly for `worker`: dispatched and running in one
    conditional update, under the same rule as `dispatch` (one run of a client in
    flight)."""
    now = timezone.now()
    try:
        with transaction.atomic():
            taken = (
                Run.objects.undispatched()
                .filter(pk=run.pk)
                .update(dispatched_at=now, status=Run.Status.RUNNING, started_at=now, worker=worker)
            )
    except IntegrityError:
        return False  # another run of this client is in flight: it goes first
    if taken:
        run.dispatched_at = run.started_at = now
        run.status, run.worker = Run.Status.RUNNING, worker
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

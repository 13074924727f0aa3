from django.db import transaction
from django.tasks import task

from . import execution, wakeup
from .models import Run


@task()
def execute_run(run_id: int) -> str:
    run = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).first()
    if run is None:
        return "skipped"  # already run or failed elsewhere: never run twice
    return execution.execute(run).status


def enqueue(run: Run) -> None:
    """Queue `run` once the transaction that created it has committed."""

    def send() -> None:
        execute_run.enqueue(run.pk)
        wakeup.notify()

    transaction.on_commit(send)

from django.db import transaction
from django.tasks import task

from . import execution
from .models import Run


@task()
def execute_run(run_id: int) -> str:
    run = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).first()
    if run is None:
        return "skipped"  # already run or failed elsewhere: never run twice
    return execution.execute(run).status


def enqueue(run: Run) -> None:
    """Queue `run` once the transaction that created it has committed."""
    transaction.on_commit(lambda: execute_run.enqueue(run.pk))

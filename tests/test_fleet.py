"""Several workers on one database, as on several machines: every run exactly once,
fair across clients, a baseline per host, and a dead worker's run failed by another.
`make test` runs this on SQLite and on PostgreSQL."""

from django_tasks_db.models import DBTaskResult

from runs.models import Baseline, Run
from runs.queue.tasks import enqueue

from .conftest import finished, printed, wait_for


def submit(code: str, client: str) -> Run:
    run = Run.objects.submit(code, client=client)
    enqueue(run)
    return run


def test_two_hosts_share_the_queue_fairly_and_cover_for_each_other(start_worker):
    workers = {host: start_worker(HOST_NAME=host) for host in ("host-a", "host-b")}
    assert set(Baseline.objects.values_list("host", flat=True)) == {"host-a", "host-b"}

    # Client 1 queues a backlog; client 2's one run must not wait behind it.
    backlog = [submit("import time; time.sleep(0.3); print('a')", "10.0.0.1") for _ in range(8)]
    other = submit("print('b')", "10.0.0.2")
    wait_for(lambda: finished(other), timeout=60)
    done_before = Run.objects.filter(pk__in=[r.pk for r in backlog]).finished().count()
    assert done_before <= 2, f"{done_before} of the backlog ran before the other client's run"

    many = [submit(f"print({i})", f"10.0.1.{i % 5}") for i in range(30)]
    wait_for(lambda: all(finished(r) for r in backlog + many), timeout=180)
    for i, run in enumerate(many):
        assert (run.status, run.stdout) == (Run.Status.SUCCEEDED, f"{i}\n")
    every = [r.pk for r in backlog + many + [other]]
    # A task is marked done just after its run is stored: wait for the queue's record.
    wait_for(lambda: not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists())
    # Once each: through the queue's table (no run twice, none found run elsewhere),
    # or handed straight to an idle worker on this machine.
    assert not DBTaskResult.objects.exclude(return_value="succeeded").exists()
    queued = [t.args_kwargs["args"][0] for t in DBTaskResult.objects.all()]
    assert len(queued) == len(set(queued)) and set(queued) <= set(every)
    assert Run.objects.filter(pk__in=every, status=Run.Status.SUCCEEDED).count() == len(every)
    hosts = {w.split(":")[0] for w in Run.objects.values_list("worker", flat=True)}
    assert hosts == {"host-a", "host-b"}

    # The host running a run dies: the other finds the run, fails it, and goes on.
    stuck = submit("import time\nprint('working', flush=True)\ntime.sleep(60)", "10.0.0.3")
    wait_for(lambda: printed(stuck) == "working\n")
    running_on = Run.objects.get(pk=stuck.pk).worker.split(":")[0]
    survivor = {"host-a": "host-b", "host-b": "host-a"}[running_on]
    workers[running_on].kill()
    wait_for(lambda: finished(stuck), timeout=30)
    assert stuck.status == Run.Status.ERROR and "stopped" in stuck.error
    after = submit("print('after')", "10.0.0.3")
    wait_for(lambda: finished(after), timeout=30)
    assert after.worker.startswith(survivor)

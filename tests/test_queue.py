"""The queue with real worker processes on the test database."""

import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from django.core.signals import request_finished
from django.db import connections
from django.http import JsonResponse
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs.models import Run, run_json
from runs.queue.direct import rendezvous, sockets, waiting, wakeup
from runs.queue.direct.protocol import row_of, run_of
from runs.queue.tasks import enqueue, execute_run, store_and_enqueue

from .conftest import ROOT, database_url, finished, printed, sandbox_processes, wait_for


def submit(code: str, **fields) -> Run:
    run = Run.objects.submit(code, **fields)
    enqueue(run)  # on_commit: immediate, we are in autocommit
    return run


def test_every_one_of_100_submissions_runs_exactly_once_with_two_workers(start_worker):
    start_worker()
    start_worker()
    runs = [submit(f"print({i})") for i in range(100)]

    wait_for(lambda: Run.objects.finished().count() == 100, timeout=180)
    # A task is marked done just after its run is stored: wait for the queue's record.
    wait_for(lambda: not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists())

    for i, run in enumerate(runs):
        run.refresh_from_db()
        assert run.status == Run.Status.SUCCEEDED
        assert run.stdout == f"{i}\n"
    # Through the queue's table, or handed straight to an idle worker: no run was
    # found already run elsewhere ("skipped"), and no task failed.
    results = list(DBTaskResult.objects.values_list("status", "return_value"))
    assert len(results) <= 100
    assert all(result == ("SUCCESSFUL", "succeeded") for result in results)
    assert len(set(Run.objects.values_list("worker", flat=True))) == 2, "both workers took runs"


@pytest.fixture(autouse=True)
def _hand_over_on(settings, monkeypatch):
    """These tests are of the direct hand-over too: on, in this process and in the workers
    they start, whatever HANDOVER the suite runs under (the rest of it passes with it
    off). A test of the switch turns it off itself."""
    settings.HANDOVER = True
    monkeypatch.setenv("HANDOVER", "1")


def listening_workers() -> list[Path]:
    return list(sockets._directory().glob("*.sock"))


def test_a_run_for_an_idle_worker_on_this_machine_is_handed_over_past_the_queue(
    start_worker,
):
    start_worker()
    wait_for(lambda: len(listening_workers()) == 1)
    run = submit("print('direct')")
    done = wait_for(lambda: finished(run))
    assert done.status == Run.Status.SUCCEEDED and done.stdout == "direct\n"
    assert not DBTaskResult.objects.exists(), "it went through the queue's table"


def test_with_the_hand_over_off_every_run_goes_through_the_queue(start_worker, settings):
    settings.HANDOVER = False
    start_worker(HANDOVER="0")
    run = submit("print('queued')")
    done = wait_for(lambda: finished(run))
    assert done.status == Run.Status.SUCCEEDED and done.stdout == "queued\n"
    assert DBTaskResult.objects.exists(), "it was handed over past the queue"
    assert listening_workers() == [], "a worker listens for offers with the hand-over off"


def test_a_request_waiting_for_a_handed_over_run_answers_the_run_as_stored(start_worker):
    start_worker()
    wait_for(lambda: len(listening_workers()) == 1)
    response = Client().post("/run", {"code": "print('direct')"}, content_type="application/json")
    assert response.status_code == 200
    stored = Run.objects.get(public_id=response.json()["id"])
    assert stored.stdout == "direct\n" and stored.status == Run.Status.SUCCEEDED
    # The worker sent the run on the hand-over connection: the answer is the stored row.
    assert response.json() == json.loads(JsonResponse(run_json(stored)).content)
    assert not DBTaskResult.objects.exists(), "it went through the queue's table"


def test_a_request_following_a_worker_that_dies_answers_at_its_deadline(start_worker, settings):
    settings.API_WAIT_SECONDS = 4
    worker = start_worker()
    wait_for(lambda: len(listening_workers()) == 1)
    answers = []

    def post() -> None:
        try:
            code = "import time\nprint('working', flush=True)\ntime.sleep(60)"
            answers.append(Client().post("/run", {"code": code}, content_type="application/json"))
        finally:
            connections.close_all()

    request = threading.Thread(target=post)
    request.start()
    run = wait_for(lambda: Run.objects.filter(output_chunks__text="working\n").first())
    worker.kill()
    request.join(timeout=30)
    assert not request.is_alive(), "the request still waits for a dead worker"
    # Without the worker's word it went on by the database: still running there (until
    # a heartbeat or a poll finds the worker dead), so it answers where to look.
    assert answers[0].status_code == 202
    assert answers[0].json()["id"] == str(run.public_id)


def test_a_run_crosses_a_hand_over_whole_to_the_microsecond(transactional_db):
    run = Run.objects.submit("print(1)", client="a")
    run.created_at = run.created_at.replace(microsecond=123456)
    run.save()
    crossed = run_of(row_of(run))
    for field in Run._meta.concrete_fields:
        assert getattr(crossed, field.attname) == getattr(run, field.attname), field.name


def offered_and_taken() -> tuple[sockets.Offer, sockets.Handed]:
    """Both ends of a hand-over, the run taken and stored as row 42."""
    worker_end, web_end = socket.socketpair()
    offer, handed = sockets.Offer(worker_end, b""), sockets.Handed(web_end)
    offer.answer(42)
    assert handed.taken() == 42
    return offer, handed


def test_the_hand_over_connection_carries_progress_the_run_and_its_end():
    offer, handed = offered_and_taken()
    assert handed.receive(0) is None, "a word before the worker said one"
    offer.progress()
    assert handed.receive(1) is sockets.PROGRESS
    offer.result(b"x" * (sockets.MAX_RESULT_BYTES + 1))
    assert handed.receive(1) == b"", "a row too large to send is read from the database"
    try:
        handed.receive(1)
    except EOFError:
        pass
    else:
        raise AssertionError("the end of the connection went unnoticed")
    handed.close()

    offer, handed = offered_and_taken()
    offer.result(b'{"row": 1}')
    assert handed.receive(1) == b'{"row": 1}'
    handed.close()


def test_a_followed_run_is_hung_up_on_once_the_response_has_gone_out(transactional_db):
    # The worker waits for this before ending the run's sandbox and starting the next.
    run = Run.objects.submit("print(1)", client="a")
    worker_end, web_end = socket.socketpair()
    row = row_of(run)
    worker_end.sendall(sockets.RESULT + sockets.LENGTH.pack(len(row)) + row)
    waiting.wait_for(run, 1, handed=sockets.Handed(web_end))
    assert select.select([worker_end], [], [], 0)[0] == [], "hung up before the response"
    request_finished.send(sender=None)
    assert worker_end.recv(1) == b"", "the connection outlived its request"
    worker_end.close()


def test_a_refusal_or_no_answer_is_not_taken():
    worker_end, web_end = socket.socketpair()
    sockets.Offer(worker_end, b"").answer(None)
    handed = sockets.Handed(web_end)
    assert handed.taken() is None
    handed.close()
    worker_end, web_end = socket.socketpair()
    web_end.settimeout(0.1)
    handed = sockets.Handed(web_end)
    assert handed.taken() is None, "no answer in time read as taken"
    handed.close()
    worker_end.close()


def test_a_run_offered_before_it_is_stored_is_stored_by_the_worker_running_it(start_worker):
    start_worker()
    wait_for(lambda: len(listening_workers()) == 1)
    run = Run.objects.new("print('offered first')", client="a")
    handed = sockets.offer(row_of(run))  # nothing of it is written yet
    assert handed is not None
    key = handed.taken()
    assert key is not None, "the idle worker did not take the run"
    handed.close()
    stored = Run.objects.get(pk=key)
    assert stored.public_id == run.public_id and stored.code == run.code
    assert stored.worker and stored.dispatched_at is not None
    done = wait_for(lambda: finished(stored))
    assert done.stdout == "offered first\n" and done.status == Run.Status.SUCCEEDED
    assert not DBTaskResult.objects.exists(), "it went through the queue's table"


def test_a_run_the_worker_may_not_take_is_ended_and_nothing_of_it_stored(start_worker):
    # The client has a run in the workers' hands already (elsewhere): the fair queue's
    # rule, kept by the database, refuses the worker's row for a second one.
    start_worker()
    wait_for(lambda: len(listening_workers()) == 1)
    # The sandboxes prepared for the next runs: the run takes one of them.
    prepared = wait_for(lambda: {p.pid for p in sandbox_processes()})
    Run.objects.submit("print(0)", client="a", dispatched_at=timezone.now())
    run = Run.objects.new("import time\ntime.sleep(60)", client="a")
    handed = sockets.offer(row_of(run))
    assert handed is not None
    assert handed.taken() is None, "the worker took a second run of a client in flight"
    handed.close()
    assert not Run.objects.filter(public_id=run.public_id).exists()
    wait_for(lambda: len(listening_workers()) == 1, timeout=10)  # idle again
    left = {p.pid for p in sandbox_processes()}
    assert prepared - left, "the sandbox of the run refused is still running"


def test_a_run_stored_by_its_worker_after_the_web_process_stopped_waiting_is_kept_once(
    transactional_db,
):
    # The worker's answer came too late: the web process, storing the run itself, finds
    # the worker's row by the run's public id and follows that one.
    run = Run.objects.new("print(1)", client="a")
    theirs = Run.objects.new(run.code, client="a", status=Run.Status.RUNNING, worker="w")
    theirs.public_id = run.public_id
    theirs.save()
    store_and_enqueue(run)
    ours = run
    assert ours.pk == theirs.pk and ours.status == Run.Status.RUNNING
    assert Run.objects.count() == 1
    assert not DBTaskResult.objects.exists(), "a run already running was queued again"


def test_a_busy_worker_takes_no_hand_over_and_the_queue_carries_the_run(start_worker):
    start_worker()
    wait_for(lambda: len(listening_workers()) == 1)
    busy = submit("import time\nprint('busy', flush=True)\ntime.sleep(1)", client="a")
    wait_for(lambda: printed(busy) == "busy\n")
    assert listening_workers() == [], "a busy worker listens for hand-overs"
    offered = row_of(Run.objects.submit("print(1)", client="b"))
    assert sockets.offer(offered) is None, "a busy worker took a hand-over"
    Run.objects.filter(client="b").delete()

    queued = submit("print('queued')", client="b")
    done = wait_for(lambda: finished(queued), timeout=60)
    assert done.stdout == "queued\n"
    assert DBTaskResult.objects.count() == 1, "the second run did not go through the queue"
    assert wait_for(lambda: len(listening_workers()) == 1), "idle again, it listens again"


def test_a_hand_over_is_refused_while_the_client_has_a_run_in_flight(start_worker):
    # The fair queue's rule holds for hand-overs: a client's runs run one at a time,
    # in the order they came.
    start_worker()
    start_worker()
    wait_for(lambda: len(listening_workers()) == 2)
    first = submit("import time\nprint('first', flush=True)\ntime.sleep(1)", client="a")
    wait_for(lambda: printed(first) == "first\n")
    assert len(listening_workers()) == 1, "no idle worker is offered the second run"
    second = Run.objects.new("print('second')", client="a")
    store_and_enqueue(second)
    assert Run.objects.filter(public_id=second.public_id).count() == 1
    assert Run.objects.get(pk=second.pk).status == Run.Status.QUEUED
    done = wait_for(lambda: finished(second), timeout=60)
    assert done.started_at >= Run.objects.get(pk=first.pk).finished_at


def test_a_worker_killed_mid_run_leaves_its_run_error_not_running(start_worker, settings):
    worker = start_worker()
    run = submit("import time\nprint('working', flush=True)\ntime.sleep(60)")
    wait_for(lambda: printed(run) == "working\n")

    worker.kill()

    # A page poll notices once the worker's heartbeat is stale.
    client = Client()

    def polled() -> Run | None:
        client.get(run.get_absolute_url())
        return finished(run)

    wait_for(polled, timeout=15, interval=0.3)
    assert run.status == Run.Status.ERROR
    assert "worker running this snippet stopped" in run.error
    assert run.finished_at is not None
    # What it printed before its worker died is kept, in its row.
    assert run.stdout == "working\n" and not run.output_chunks.exists()
    # bubblewrap's --die-with-parent took the snippet down with its worker.
    wait_for(lambda: sandbox_processes() == [], timeout=5)


def test_a_poll_shows_the_orphaned_run_as_failed(start_worker):
    worker = start_worker()
    run = submit("import time\ntime.sleep(60)")
    wait_for(lambda: Run.objects.get(pk=run.pk).status == Run.Status.RUNNING)
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()

    client = Client()

    def polled_to_error():
        response = client.get(run.get_absolute_url(), headers={"HX-Request": "true"})
        return "stopped (killed or restarted)" in response.text

    wait_for(polled_to_error, timeout=15, interval=0.3)


def test_a_run_queued_with_no_worker_alive_says_so(transactional_db):
    run = submit("print(1)")
    response = Client().get(run.get_absolute_url())
    assert response.status_code == 200
    assert "No worker is running" in response.text
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED


def test_queued_runs_show_their_place_in_line(transactional_db):
    runs = [submit("print(1)") for _ in range(3)]
    assert [Run.objects.get(pk=r.pk).queue_position() for r in runs] == [1, 2, 3]


def test_another_clients_run_waits_only_behind_the_first_of_a_backlog(transactional_db):
    backlog = [submit("print(1)", client="10.0.0.1") for _ in range(5)]
    other = submit("print(2)", client="10.0.0.2")
    # One run per client in the workers' queue: the backlog's first, then the other's.
    sent = DBTaskResult.objects.order_by("enqueued_at")
    assert [t.args_kwargs["args"][0] for t in sent] == [backlog[0].pk, other.pk]
    assert Run.objects.get(pk=other.pk).queue_position() == 2
    assert Run.objects.get(pk=backlog[1].pk).queue_position() == 3


def test_a_worker_keeps_no_zombie_and_every_cpu_second_of_killed_runs(start_worker, settings):
    worker = start_worker()
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    runs = [
        submit(busy + "block = bytearray(2 * 1024 ** 3)"),  # killed by the memory cap
        submit(busy + "import os\nwhile True: os.fork() or time.sleep(9)"),  # process cap
        Run.objects.submit(busy + "while True: pass", timeout_s=1),  # timeout
        submit(busy + "import sys\nwhile True: sys.stdout.write('x' * 4096)"),  # output cap
    ]
    enqueue(runs[2])
    wait_for(lambda: all(finished(run) for run in runs), timeout=120)

    statuses = {run.status for run in runs}
    assert statuses == {Run.Status.LIMIT_EXCEEDED, Run.Status.TIMED_OUT}, statuses
    for run in runs:
        assert run.cpu_seconds >= 0.45, (run.limit or run.status, run.cpu_seconds)
    children = psutil.Process(worker.proc.pid).children()
    assert [c for c in children if c.status() == psutil.STATUS_ZOMBIE] == []
    # Nothing of the runs is left: the children are the next runs' sandboxes, waiting
    # for code (bubblewrap, its launcher, and, once the launcher has started, its one
    # process waiting for the code, which nothing has reached).
    assert len(children) <= settings.SANDBOX_STANDBY, children
    for child in children:
        assert len(child.children(recursive=True)) <= 2, child.children(recursive=True)
        # One being started ahead right now may not show its launcher yet (seen once).
        wait_for(lambda child=child: child.children(recursive=True), timeout=5)
    assert all(run.startup_cpu_seconds > 0 for run in runs)


def test_the_form_answers_a_short_run_finished_and_one_press_makes_one_run(
    start_worker, client, settings
):
    settings.PAGE_WAIT_SECONDS = 5
    start_worker()
    response = client.post("/runs/new", {"code": "print('hi')"}, headers={"HX-Request": "true"})
    assert response.status_code == 201
    assert 'data-status="succeeded"' in response.text and "Queued" not in response.text
    again = client.post("/runs/new", {"code": "print('hi')"}, headers={"HX-Request": "true"})
    assert Run.objects.count() == 1  # the same code from the same browser, within a second
    assert 'data-status="succeeded"' in again.text


WAIT_FOR_RUN = """
import django, sys, time
django.setup()
from runs.queue.direct import wakeup
wakeup.Waiter.for_run(int(sys.argv[1]))
print("waiting", flush=True)
time.sleep(60)
"""


def test_the_pipes_of_requests_killed_while_waiting_are_swept(settings, tmp_path, db):
    settings.DATA_DIR = tmp_path
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "playground.settings",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),  # the same database: the same meeting place
    }
    here = rendezvous.directory()
    killed, alive = (
        subprocess.Popen(
            [sys.executable, "-c", WAIT_FOR_RUN, str(pk)], env=env, stdout=subprocess.PIPE
        )
        for pk in (1, 2)
    )
    try:
        for request in (killed, alive):
            assert request.stdout.readline() == b"waiting\n"
        killed.kill()
        killed.wait()
        pipes = {path.name for path in here.glob("run-*.fifo")}
        assert pipes == {"run-1.fifo", "run-2.fifo"}  # a killed process cannot clean up

        assert wakeup.sweep() == 0  # too young: perhaps between created and opened
        assert wakeup.sweep(older_than=0) == 1
        assert [path.name for path in here.glob("run-*.fifo")] == ["run-2.fifo"]
    finally:
        alive.kill()
        alive.wait()
        killed.stdout.close()
        alive.stdout.close()


def test_a_worker_of_another_database_sharing_data_dir_takes_none_of_its_runs(
    start_worker, tmp_path
):
    # As `make run` beside the suite in one checkout: one DATA_DIR, two databases.
    other = tmp_path / "other.sqlite3"
    other_env = {**os.environ, "DATABASE_URL": f"sqlite:///{other}"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], env=other_env, cwd=ROOT, check=True
    )
    start_worker(DATABASE_URL=f"sqlite:///{other}")
    data_dir = Path(os.environ["DATA_DIR"])
    wait_for(lambda: list(data_dir.glob("local/*/handoff/*.sock")))  # idle, listening
    assert not list((rendezvous.directory() / "handoff").glob("*.sock"))  # but not here

    run = Run.objects.new("print('mine')", client="203.0.113.3")
    store_and_enqueue(run)
    with sqlite3.connect(other) as foreign:
        assert foreign.execute("SELECT COUNT(*) FROM runs_run").fetchone() == (0,)
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED  # waiting for a worker of its own database

    start_worker()  # one of ours
    done = wait_for(lambda: finished(run))
    assert done.status == Run.Status.SUCCEEDED and done.stdout == "mine\n"


LONG_OUTPUT_RUN = (
    "import time\nfor i in range(2000):\n    print('line', i)\ntime.sleep(3)\nprint('end')\n"
)


def long_output_run_running(start_worker) -> Run:
    """A run that prints 2,000 lines then waits 3 s, started by a real worker."""
    start_worker()
    run = Run.objects.submit(LONG_OUTPUT_RUN, client="203.0.113.44")
    enqueue(run)
    wait_for(lambda: Run.objects.get(pk=run.pk).status == Run.Status.RUNNING)
    return run


LIVE_OUTPUT_RUN = """import sys, time
for i in range(12):
    print('line', i, 'é' * i, flush=True)
    time.sleep(0.1)
sys.stdout.buffer.write(b'split \\xc3'); sys.stdout.flush()  # é cut in two
time.sleep(1.2)  # past a progress write or two
sys.stdout.buffer.write(b'\\xa9 whole\\n'); sys.stdout.flush()
print('to stderr', file=sys.stderr)
"""


def test_live_output_is_appended_once_and_read_from_where_each_viewer_was(start_worker):
    start_worker()
    run = submit(LIVE_OUTPUT_RUN)
    api = Client()
    since, seen, polls_while_running = "0.0", {"stdout": "", "stderr": ""}, 0
    while True:
        answer = api.get(f"/api/runs/{run.public_id}?since={since}").json()
        for stream in seen:
            seen[stream] += answer[stream]
        since = answer["since"]
        if answer["status"] not in ("queued", "running"):
            break
        if answer["status"] == "running":
            polls_while_running += 1
            # Appended, each character once: chunks follow each other with no overlap,
            # and the run's own row is not rewritten with its output meanwhile.
            for stream in seen:
                spans = list(
                    run.output_chunks.filter(stream=stream)
                    .order_by("start")
                    .values_list("start", "end")
                )
                starts = [start for start, _ in spans]
                assert starts == [0, *(end for _, end in spans[:-1])][: len(spans)]
            # (Read with its status in one query: the run may end between two.)
            status, stored = Run.objects.values_list("status", "stdout").get(pk=run.pk)
            assert stored == "" or status != Run.Status.RUNNING
        time.sleep(0.1)
    done = finished(run)
    assert done.status == Run.Status.SUCCEEDED, done.error
    assert polls_while_running >= 5
    # The polls, put end to end, are the run's output exactly: a character cut in two
    # by a progress write waited for its second half instead of showing as "\ufffd".
    assert seen == {"stdout": done.stdout, "stderr": done.stderr}
    assert "split é whole\n" in done.stdout and "\ufffd" not in done.stdout
    assert done.stderr == "to stderr\n"
    assert not done.output_chunks.exists()  # gathered into the row at the end


@pytest.mark.skipif(
    connections["default"].vendor != "sqlite", reason="an exclusive lock of the file: SQLite's"
)
def test_a_locked_database_costs_a_retry_not_data(start_worker):
    run = long_output_run_running(start_worker)
    locked = threading.Event()

    def hold_the_lock() -> None:
        # 25 s: past SQLite's busy timeout (20 s), so that a write waiting for it fails.
        lock = sqlite3.connect(connections["default"].settings_dict["NAME"], isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(25)
        lock.execute("COMMIT")
        lock.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    locked.wait()
    answers = {}

    def submit(name: str, *args, **kwargs) -> None:
        answers[name] = Client(REMOTE_ADDR="198.51.100.9").post(*args, **kwargs)
        connections.close_all()

    submissions = [
        threading.Thread(
            target=submit,
            args=("api", "/api/runs", {"code": "print(1)"}),
            kwargs={"content_type": "application/json"},
        ),
        threading.Thread(target=submit, args=("form", "/runs/new", {"code": "print('kept')"})),
    ]
    for thread in submissions:
        thread.start()
    for thread in submissions:
        thread.join()
    holder.join()
    # Refused with a retry, nothing stored, the code kept; not a server error.
    api, form = answers["api"], answers["form"]
    assert api.status_code == 503 and api["Retry-After"] and "busy" in api.json()["error"]
    assert form.status_code == 503 and form["Retry-After"]
    assert "print(&#x27;kept&#x27;)" in form.text and "nothing was stored" in form.text
    assert Run.objects.count() == 1
    # The run that ended under the lock keeps all it printed and measured.
    done = wait_for(lambda: finished(run), timeout=120)
    assert done.status == Run.Status.SUCCEEDED, done.error
    assert done.stdout.count("line ") == 2000 and done.stdout.endswith("end\n")
    assert done.energy_kwh > 0 and done.cpu_seconds > 0


@pytest.mark.skipif(
    connections["default"].vendor != "postgresql", reason="a backend to terminate: PostgreSQL's"
)
def test_a_dropped_database_connection_costs_a_retry_not_data(start_worker):
    run = long_output_run_running(start_worker)
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    done = wait_for(lambda: finished(run), timeout=120)
    assert done.status == Run.Status.SUCCEEDED, done.error
    assert done.stdout.count("line ") == 2000 and done.stdout.endswith("end\n")
    # A request whose connection was dropped: a retry, not a server error; the next
    # one opens a new connection.
    import psycopg

    mine = connections["default"]
    with mine.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    settings_dict = mine.settings_dict
    with psycopg.connect(
        dbname=settings_dict["NAME"], user=settings_dict["USER"],
        host=settings_dict["HOST"] or "localhost", port=settings_dict["PORT"] or 5432,
        autocommit=True,
    ) as other:  # fmt: skip
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    refused = Client().post("/api/runs", {"code": "print(1)"}, content_type="application/json")
    assert refused.status_code == 503 and refused["Retry-After"], refused.content
    mine.close()
    assert Client().get(done.get_absolute_url()).status_code == 200


def test_a_task_queued_before_the_queue_moved_still_finds_its_function(transactional_db):
    # Migrations run for real, back to before the move and forward again.
    from django.db.migrations.executor import MigrationExecutor

    def migrate(*targets) -> None:
        executor = MigrationExecutor(connections["default"])
        executor.loader.build_graph()
        executor.migrate(list(targets))

    migrate(("runs", "0009_live_output_chunks"))
    queued = execute_run.enqueue(1)
    DBTaskResult.objects.filter(id=queued.id).update(task_path="runs.tasks.execute_run")
    latest = MigrationExecutor(connections["default"]).loader.graph.leaf_nodes("runs")
    migrate(*latest)
    result = DBTaskResult.objects.get(id=queued.id)
    assert result.task_path == "runs.queue.tasks.execute_run"
    assert result.task.func is execute_run.func

"""Stop: a queued or running run ended by its author, from the page or the API, with
what it printed and used kept and nothing left behind; and the page's time limit."""

import time

import psutil
import pytest
from django.conf import settings
from django.test import Client

from runs.models import Run, Series
from runs.queue import tasks

from .conftest import HTMX, finished, wait_for
from .factories import running_run

FOREVER = "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.001)\n"
BUSY_FOREVER = "print('busy', flush=True)\nx = 0\nwhile True:\n    x += 1\n"


def api_submit(client: Client, code: str) -> Run:
    answer = client.post("/api/runs", {"code": code}, "application/json")
    assert answer.status_code == 202, answer.content
    return Run.objects.get(public_id=answer.json()["id"])


@pytest.mark.django_db(transaction=True)
def test_a_queued_run_is_stopped_at_once_by_its_client_only():
    owner, stranger = Client(REMOTE_ADDR="198.51.100.1"), Client(REMOTE_ADDR="198.51.100.2")
    run = api_submit(owner, "print(1)")  # no worker: it stays queued
    second = api_submit(owner, "print(2)")  # behind it: one run per client is sent on
    assert Run.objects.get(pk=second.pk).dispatched_at is None
    refused = stranger.post(f"/api/runs/{run.public_id}/cancel")
    assert refused.status_code == 403 and "error" in refused.json()
    assert finished(run) is None
    answer = owner.post(f"/api/runs/{run.public_id}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled" and "before it started" in answer.json()["error"]
    again = owner.post(f"/api/runs/{run.public_id}/cancel")
    assert again.status_code == 409 and "nothing to stop" in again.json()["error"]
    assert owner.post("/api/runs/not-a-run/cancel").status_code == 404
    wrong_method = owner.get(f"/api/runs/{run.public_id}/cancel")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
    # Its place in the workers' queue went with it: the client's next run is sent on.
    assert Run.objects.get(pk=second.pk).dispatched_at is not None


@pytest.mark.django_db
def test_the_page_stops_only_its_own_browsers_run(client):
    client.post("/runs/new", {"code": "print(1)"})
    run = Run.objects.get()
    page = client.get(run.get_absolute_url()).content.decode()
    assert "data-stop" in page
    other = Client()
    assert "data-stop" not in other.get(run.get_absolute_url()).content.decode()
    assert other.post(f"/runs/{run.public_id}/cancel").status_code == 403
    response = client.post(f"/runs/{run.public_id}/cancel", headers=HTMX)
    assert response.status_code == 200 and 'data-status="cancelled"' in response.content.decode()
    assert "data-stop" not in response.content.decode()


@pytest.mark.parametrize("code", [FOREVER, BUSY_FOREVER], ids=["sleeping", "busy"])
def test_a_running_run_stops_within_a_second_keeping_its_output_and_figures(start_worker, code):
    worker = start_worker()
    owner = Client(REMOTE_ADDR="198.51.100.3")
    run = api_submit(owner, code)
    wait_for(lambda: Run.objects.filter(pk=run.pk, output_chunks__isnull=False).exists())
    asked = time.monotonic()
    answer = owner.post(f"/api/runs/{run.public_id}/cancel")
    assert answer.status_code == 200, answer.content
    took = time.monotonic() - asked
    data = answer.json()
    assert data["status"] == "cancelled" and "Stopped on request" in data["error"]
    assert took < settings.EXECUTION_TIMEOUT / 2  # not its time limit: the stop ended it
    done = finished(run)
    assert done.stdout.startswith(("started", "busy"))  # what it printed is kept
    assert done.duration_s < settings.EXECUTION_TIMEOUT
    assert done.cpu_seconds is not None and done.energy_kwh > 0 and done.power_samples
    if code == BUSY_FOREVER:
        assert done.last_line in (3, 4)  # caught in its loop, and the page can say where
    # Nothing of it is left: the worker's children are the next runs' sandboxes, waiting
    # for code (bubblewrap, its launcher, and the launcher's one waiting process).
    # The worker answers before its sandbox's own teardown (bubblewrap's exit) ends.
    process = psutil.Process(worker.proc.pid)
    wait_for(lambda: len(process.children()) <= settings.SANDBOX_STANDBY, timeout=10)
    children = process.children()
    assert [c for c in children if c.status() == psutil.STATUS_ZOMBIE] == []
    assert len(children) <= settings.SANDBOX_STANDBY, children
    for child in children:
        assert len(child.children(recursive=True)) <= 2, child.children(recursive=True)


@pytest.mark.django_db
def test_the_time_limit_chosen_on_the_page_is_used_remembered_and_bounded(client):
    client.post("/runs/new", {"code": "print(1)", "timeout": "2.5"})
    assert Run.objects.get().timeout_s == 2.5
    assert 'name="timeout" type="number"' in (page := client.get("/").content.decode())
    assert 'value="2.5"' in page
    for bad in ("0.5", str(settings.MAX_EXECUTION_TIMEOUT + 1), "nan", "soon"):
        refused = client.post("/runs/new", {"code": "print('kept')", "timeout": bad}, headers=HTMX)
        assert refused.status_code == 422, bad
        assert "time limit must be between 1 and" in refused.content.decode()
    assert Run.objects.count() == 1
    client.post("/series/new", {"code": "print(1)", "repetitions": "2", "timeout": "3"})
    assert set(Run.objects.filter(series__isnull=False).values_list("timeout_s", flat=True)) == {
        3.0
    }


@pytest.mark.django_db
def test_a_stop_request_reaches_the_worker_with_its_next_progress_write():
    run, writer = running_run()
    assert writer.record("1\n", "", [[0.5, 3.0]]) == Run.Progress.WRITTEN
    assert run.cancel()  # asked while it runs: the worker is to end it
    assert writer.record("1\n2\n", "", [[0.5, 3.0], [1.0, 3.0]]) == Run.Progress.STOP
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING  # its end is the worker's
    Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED)
    assert writer.record("1\n2\n3\n", "", []) == Run.Progress.OVER


def test_a_repeat_is_stopped_whole_by_its_browser_only(start_worker):
    worker = start_worker()
    owner = Client(REMOTE_ADDR="198.51.100.4")
    answer = owner.post("/series/new", {"code": FOREVER, "repetitions": "3", "timeout": "30"})
    assert answer.status_code == 302
    series = Series.objects.get()
    first = series.runs.get(repetition=1)
    wait_for(lambda: Run.objects.filter(pk=first.pk, output_chunks__isnull=False).exists())
    page = owner.get(series.get_absolute_url()).content.decode()
    assert "data-stop" in page
    stranger = Client(REMOTE_ADDR="198.51.100.5")
    assert "data-stop" not in stranger.get(series.get_absolute_url()).content.decode()
    assert stranger.post(f"/series/{series.public_id}/cancel").status_code == 403
    response = owner.post(f"/series/{series.public_id}/cancel", headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-finished="true"' in html and "data-stop" not in html
    statuses = dict(series.runs.values_list("repetition", "status"))
    assert statuses == {1: "cancelled", 2: "cancelled", 3: "cancelled"}
    assert finished(first).stdout.startswith("started")  # the running one kept its output
    assert series.runs.get(repetition=2).error == "Stopped on request before it started."
    # Nothing of it is left but the worker's waiting standby sandboxes.
    process = psutil.Process(worker.proc.pid)
    wait_for(lambda: len(process.children()) <= settings.SANDBOX_STANDBY, timeout=10)


@pytest.mark.django_db
def test_a_stopped_comparison_adds_no_round_and_says_why_it_ended(client):
    client.post("/compare/new", {"code_a": "1", "code_b": "2", "repetitions": "10"})
    series = Series.objects.get()
    first_round = series.runs.count()
    stopped = tasks.cancel_series(series)
    assert len(stopped) == first_round  # all queued: stopped at once
    series.refresh_from_db()
    assert series.finished_at and "Stopped on request after" in series.stop_reason
    assert tasks.continue_comparison(series) == [] and series.runs.count() == first_round
    results = series.results(series.ordered_runs())
    assert results.is_over and series.stop_reason in results.warnings
    assert tasks.cancel_series(series) == []  # over: nothing more to stop


@pytest.mark.django_db
def test_the_api_stops_a_browsers_run_only_with_the_pages_csrf_token():
    browser = Client(enforce_csrf_checks=True)
    browser.get("/")
    token = browser.cookies["csrftoken"].value
    submitted = browser.post("/runs/new", {"code": "print(1)", "csrfmiddlewaretoken": token})
    assert submitted.status_code in (200, 302), submitted.content
    run = Run.objects.get()
    # The session cookie alone, as another site's form would send it along: refused.
    forged = browser.post(f"/api/runs/{run.public_id}/cancel")
    assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
    assert Run.objects.get(pk=run.pk).status == Run.Status.QUEUED
    answer = browser.post(f"/api/runs/{run.public_id}/cancel", headers={"X-CSRFToken": token})
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"

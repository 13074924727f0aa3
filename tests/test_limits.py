"""A hostile client: per-client limits, the total queue cap, and bodies that must not
cost us more than a bounded read. Everything refused answers JSON on the API."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.clients import client_of
from runs.models import MAX_REPETITIONS, Run, Series, StoredBytes
from runs.queue import tasks

from .conftest import HTMX, execute

pytestmark = pytest.mark.django_db


def api(client, code="print(1)", address="203.0.113.7", **extra):
    return client.post(
        "/api/runs",
        json.dumps({"code": code}),
        content_type="application/json",
        REMOTE_ADDR=address,
        **extra,
    )


def test_the_runs_per_minute_limit_answers_429_with_retry_after(client, settings):
    settings.LIMIT_RUNS_PER_MINUTE = 3
    assert [api(client).status_code for _ in range(3)] == [202, 202, 202]
    refused = api(client)
    assert refused.status_code == 429
    assert "at most 3 a minute" in refused.json()["error"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    # Another address is another client.
    assert api(client, address="203.0.113.8").status_code == 202
    assert Run.objects.count() == 4


def test_a_series_counts_as_its_runs(client, settings):
    settings.LIMIT_QUEUED_RUNS_PER_CLIENT = 8
    response = client.post("/compare/new", {"code_a": "1", "code_b": "2", "repetitions": "5"})
    assert response.status_code == 429
    assert "10 runs" in response.text and "at most 8" in response.text
    assert "code_a" in response.text  # the form comes back with the code
    # Above the form, where the page that comes back starts: in view.
    assert response.text.index("data-refusal") < response.text.index('id="compare-form"')
    assert Run.objects.count() == 0
    ok = client.post("/compare/new", {"code_a": "1", "code_b": "2", "repetitions": "4"})
    assert ok.status_code == 302 and Run.objects.count() == 8


def test_with_the_defaults_a_visitor_runs_compares_and_compares_again_in_a_minute(client):
    # The defaults as shipped (settings), and the compare form's own default: its cap.
    assert client.post("/runs/new", {"code": "print('hi')"}).status_code == 302
    form = {"code_a": "print(1)", "code_b": "print(2)", "repetitions": str(MAX_REPETITIONS)}
    for _ in range(2):
        assert client.post("/compare/new", form).status_code == 302
    first_round = 2 * Series.first_round(MAX_REPETITIONS)
    assert Run.objects.count() == 1 + 2 * first_round  # each admitted by its first round
    assert first_round < 2 * MAX_REPETITIONS


def test_a_comparisons_later_rounds_are_not_sent_runs(client, settings):
    # A comparison's next round is added by the queue: it waits its turn behind the
    # client's other runs and does not use up the client's runs a minute.
    series = Series.objects.submit(
        Series.Kind.COMPARE, ["print(1)", "print(2)"], MAX_REPETITIONS, client="203.0.113.7"
    )
    added = series.add_round(Series.first_round(MAX_REPETITIONS))
    assert added and all(run.follow_up for run in added)
    settings.LIMIT_RUNS_PER_MINUTE = 2 * Series.first_round(MAX_REPETITIONS) + 1
    assert api(client).status_code == 202  # the first round and this one: within it
    assert api(client).status_code == 429


def test_a_comparisons_page_says_its_runs_wait_their_turn(client):
    for i in range(3):
        api(client, f"print({i})")
    series = Series.objects.submit(
        Series.Kind.COMPARE, ["print(1)", "print(2)"], 4, client="203.0.113.7"
    )
    tasks.enqueue(*series.ordered_runs())
    page = client.get(series.get_absolute_url())
    assert "3 of your other runs go first" in page.text
    Run.objects.exclude(series=series).update(status=Run.Status.SUCCEEDED)
    assert "data-waiting-turn" not in client.get(series.get_absolute_url()).text


def test_the_page_says_how_many_runs_wait_in_place_of_the_result(client, settings):
    settings.LIMIT_QUEUED_RUNS_PER_CLIENT = 2
    for i in range(2):
        assert client.post("/runs/new", {"code": f"print({i})"}, headers=HTMX).status_code == 201
    refused = client.post("/runs/new", {"code": "print(2)"}, headers=HTMX)
    assert refused.status_code == 429
    assert refused["HX-Retarget"] == "#result" and refused["HX-Reswap"] == "innerHTML"
    assert "data-refusal" in refused.text and 'role="alert"' in refused.text
    assert "You have 2 runs waiting or running" in refused.text
    assert "accepted when 1 of them finish" in refused.text


def test_cpu_seconds_per_hour(client, settings):
    settings.LIMIT_CPU_SECONDS_PER_HOUR = 10
    Run.objects.create(
        code="x",
        timeout_s=10,
        client="203.0.113.7",
        status=Run.Status.SUCCEEDED,
        cpu_seconds=11,
        finished_at=timezone.now() - timedelta(minutes=5),
    )
    refused = api(client)
    assert refused.status_code == 429 and "CPU-seconds" in refused.json()["error"]


def test_the_storage_budget_counts_what_runs_stored_and_says_when_it_frees(client, settings):
    code = "print('x')  # " + "y" * 600
    for _ in range(2):
        Run.objects.get(public_id=api(client, code).json()["id"]).cancel()
    # A run stopped before it started keeps its code and input: charged as it ended.
    used = StoredBytes.used_today("203.0.113.7")
    assert used == sum(run.stored_bytes() for run in Run.objects.all()) > 2 * len(code)
    settings.LIMIT_STORED_BYTES_PER_DAY = used
    refused = api(client)
    assert refused.status_code == 429
    assert "Your runs stored" in refused.json()["error"]
    assert "It frees at 00:00 UTC" in refused.json()["error"]
    now = timezone.now()
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(int(refused["Retry-After"]) - (midnight - now).total_seconds()) <= 5
    assert api(client, address="203.0.113.8").status_code == 202  # another client
    settings.LIMIT_STORED_BYTES_PER_DAY = used + 1
    assert api(client).status_code == 202


def test_a_run_whose_worker_died_is_charged_what_it_keeps():
    run = Run.objects.create(
        code="print(1)", timeout_s=5, client="203.0.113.7", status=Run.Status.RUNNING
    )
    assert run.fail_orphaned() == 1
    run.refresh_from_db()
    assert StoredBytes.used_today("203.0.113.7") == run.stored_bytes()


@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
def test_a_run_that_ends_is_charged_what_it_stored():
    run = execute("print('x' * 5000)", client="203.0.113.9")
    assert run.status == Run.Status.SUCCEEDED and len(run.stdout) == 5001
    assert StoredBytes.used_today("203.0.113.9") == run.stored_bytes() > 5000


def test_the_total_queue_cap_answers_503(client, settings):
    settings.LIMIT_QUEUED_RUNS_TOTAL = 2
    assert api(client, address="198.51.100.1").status_code == 202
    assert api(client, address="198.51.100.2").status_code == 202
    refused = api(client, address="198.51.100.3")
    assert refused.status_code == 503 and refused["Retry-After"]
    assert "busy" in refused.json()["error"]


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.7", "", "203.0.113.7"),
        # A client cannot name itself: the header counts only from a trusted proxy.
        ("203.0.113.7", "198.51.100.9", "203.0.113.7"),
        ("127.0.0.1", "198.51.100.9", "198.51.100.9"),
        ("127.0.0.1", "10.9.9.9, 198.51.100.9", "198.51.100.9"),
        ("127.0.0.1", "", "127.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "", "203.0.113.7"),
        ("127.0.0.1", "not an address", "unknown"),
    ],
)
def test_the_client_is_the_first_untrusted_address(rf, remote, forwarded, expected):
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_of(request) == expected


def test_a_large_body_gets_a_json_413_after_it_was_read(client):
    big = json.dumps({"code": "x" * 5_000_000}).encode()
    response = client.post("/run", big, content_type="application/json")
    assert response.status_code == 413
    assert "too large" in response.json()["error"]


def test_deep_nesting_gets_a_json_400_not_a_500(client):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/runs", body, content_type="application/json")
    assert response.status_code == 400
    assert (
        "nested too deeply" in response.json()["error"]
        or "not valid JSON" in (response.json()["error"])
    )


@pytest.mark.parametrize("path", ["/api/runs/0", "/api/runs/not-a-uuid", "/api/nothing"])
def test_unknown_api_paths_answer_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]


def test_admin_logins_are_limited_per_client(client, settings):
    settings.LIMIT_ADMIN_LOGINS_PER_HOUR = 3
    attempt = {"username": "admin", "password": "guess"}
    statuses = [client.post("/admin/login/", attempt).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # three wrong passwords, then refused
    other = client.post("/admin/login/", attempt, REMOTE_ADDR="203.0.113.99")
    assert other.status_code == 200

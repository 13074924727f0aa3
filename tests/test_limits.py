"""A hostile client: per-client limits, the total queue cap, and bodies that must not
cost us more than a bounded read. Everything refused answers JSON on the API."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.clients import client_of
from runs.models import Run

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


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
    assert Run.objects.count() == 0
    ok = client.post("/compare/new", {"code_a": "1", "code_b": "2", "repetitions": "4"})
    assert ok.status_code == 302 and Run.objects.count() == 8


def test_the_page_says_how_many_runs_wait_in_place_of_the_result(client, settings):
    settings.LIMIT_QUEUED_RUNS_PER_CLIENT = 2
    for i in range(2):
        assert client.post("/runs/new", {"code": f"print({i})"}, headers=HTMX).status_code == 201
    refused = client.post("/runs/new", {"code": "print(2)"}, headers=HTMX)
    assert refused.status_code == 429
    assert refused["HX-Retarget"] == "#form-errors"
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

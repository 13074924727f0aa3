"""The JSON API: what it answers, every refusal in JSON, and /healthz."""

import json

import pytest

from runs.models import Run, Worker

from .factories import finished_run

pytestmark = pytest.mark.django_db


# --- JSON API ----------------------------------------------------------------------


def post_json(client, url, body, **kwargs):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data, content_type="application/json", **kwargs)


def test_api_create_answers_202_with_the_runs_url(client):
    response = post_json(client, "/api/runs", {"code": "print(1)"})
    assert response.status_code == 202
    run = Run.objects.get()
    assert response.json()["id"] == str(run.public_id)
    assert response.json()["url"].endswith(f"/api/runs/{run.public_id}")
    assert response["Location"] == f"/api/runs/{run.public_id}"
    assert run.source == Run.Source.API


def test_api_detail_returns_the_contract(client):
    run = finished_run()
    data = client.get(f"/api/runs/{run.public_id}").json()
    assert data["id"] == str(run.public_id) and data["status"] == "succeeded"
    assert data["gpu_energy_kwh"] is None and data["error"] is None
    assert client.get("/api/runs/00000000-0000-0000-0000-000000000000").json() == {
        "error": "No such run."
    }


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ("not json", "application/json", 400, "not valid JSON"),
        ("code=print(1)", "application/x-www-form-urlencoded", 415, "Content-Type"),
        ("[1, 2]", "application/json", 400, "Expected an object"),
        ('{"source": "print(1)"}', "application/json", 400, "Expected an object"),
        ('{"code": 12}', "application/json", 400, "Code must be text"),
        ('{"code": ""}', "application/json", 400, "no code"),
        (json.dumps({"code": "x" * 70_000}), "application/json", 413, "limit is"),
        (b"\xff\xfe", "application/json", 400, "not valid UTF-8"),
    ],
)
@pytest.mark.parametrize("url", ["/run", "/api/runs"])
def test_api_bad_requests_get_a_json_error(client, url, body, content_type, status, message):
    response = client.post(url, body, content_type=content_type)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("method", "url"),
    [("get", "/run"), ("put", "/api/runs"), ("post", "/healthz"), ("delete", "/api/runs/x")],
)
def test_api_wrong_methods_get_a_json_405(client, method, url):
    if url.endswith("/x"):
        url = f"/api/runs/{finished_run().public_id}"
    response = getattr(client, method)(url)
    assert response.status_code == 405
    assert "not allowed" in response.json()["error"]


def test_api_run_answers_202_when_the_run_does_not_finish_in_time(client, settings):
    settings.API_WAIT_SECONDS = 0.1  # no worker runs here: the run stays queued
    response = post_json(client, "/run", {"code": "print(1)"})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


def test_healthz_reports_database_and_workers(client):
    body = client.get("/healthz").json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "workers_alive": 0,
        "queued_runs": 0,
        "repeatability": [],  # no host has run its control workload yet
    }
    Worker.objects.create(name="host:1:abc")
    assert client.get("/healthz").json()["workers_alive"] == 1

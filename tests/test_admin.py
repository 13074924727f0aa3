"""The Django admin: a login, runs and series read-only, with their verdicts."""

import pytest
from django.contrib.auth.models import User

from runs.models import Baseline, Run, Series

from .factories import finished_run

pytestmark = pytest.mark.django_db


# --- admin -------------------------------------------------------------------------


def test_admin_needs_a_login(client):
    response = client.get("/admin/runs/run/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_lists_filters_and_searches_runs_read_only(client):
    admin = User.objects.create_superuser("admin", "a@example.org", "pw")
    client.force_login(admin)
    finished_run(code="print('needle')", country_iso_code="FRA")
    finished_run(code="print('hay')", status="failed")
    listing = client.get("/admin/runs/run/")
    assert listing.status_code == 200 and "34 µWh" in listing.text
    assert client.get("/admin/runs/run/?q=needle").text.count("/change/") == 1
    assert client.get("/admin/runs/run/?status__exact=failed").text.count("/change/") == 1
    run = Run.objects.get(code="print('needle')")
    change = client.get(f"/admin/runs/run/{run.pk}/change/")
    assert change.status_code == 200
    assert 'name="energy_kwh"' not in change.text  # read-only: shown, not editable
    assert client.get("/admin/runs/run/add/").status_code == 403


def test_admin_shows_comparisons_with_their_runs_and_verdict_and_baselines(client):
    admin = User.objects.create_superuser("admin", "a@example.org", "pw")
    client.force_login(admin)
    series = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "print(2)"], 5)
    for variant, energy in (("A", 1e-6), ("B", 1.3e-6)):
        series.runs.filter(variant=variant).update(
            status=Run.Status.SUCCEEDED, energy_kwh=energy, duration_s=0.1, cpu_seconds=0.1
        )
    Baseline.objects.create(
        host="h1", isolation="bubblewrap", runs=5, energy_kwh=2e-8, duration_s=0.01,
        cpu_seconds=0.005,
    )  # fmt: skip
    listing = client.get("/admin/runs/series/?kind__exact=compare")
    assert listing.status_code == 200 and "B uses 30% more energy than A" in listing.text
    change = client.get(f"/admin/runs/series/{series.pk}/change/")
    assert change.status_code == 200
    assert change.text.count("/admin/runs/run/") >= 10  # its runs, each a link
    assert 'name="code_a"' not in change.text  # read-only
    run = series.runs.first()
    assert (
        f"/admin/runs/series/{series.pk}/change/"
        in client.get(f"/admin/runs/run/{run.pk}/change/").text
    )  # a run links to its series
    baselines = client.get("/admin/runs/baseline/?host=h1")
    assert baselines.status_code == 200 and "h1" in baselines.text
    for url in ("/admin/runs/series/add/", "/admin/runs/baseline/add/"):
        assert client.get(url).status_code == 403

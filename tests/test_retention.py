"""Retention: old runs go (a comparison with all its runs), old output is trimmed,
expired sessions are cleared, and the fleet does it once per hour, not once per worker."""

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.utils import timezone

from runs.models import Run, Series, retention

pytestmark = pytest.mark.django_db


def aged(days: float, **fields) -> Run:
    fields = {"status": Run.Status.SUCCEEDED} | fields
    return Run.objects.create(
        code="print(1)", timeout_s=10, created_at=timezone.now() - timedelta(days=days), **fields
    )


def test_purge_deletes_old_runs_and_whole_old_series(settings):
    settings.RUN_RETENTION_DAYS = 30
    old, recent = aged(31), aged(29)
    running = aged(40, status=Run.Status.QUEUED)
    old_series = Series.objects.create(
        code_a="1", repetitions=2, created_at=timezone.now() - timedelta(days=31)
    )
    # A series started before the cutoff keeps or loses its runs together.
    for days in (31, 29):
        aged(days, series=old_series)
    kept_series = Series.objects.create(code_a="1", repetitions=1)
    aged(45, series=kept_series)

    done = retention.purge()

    assert done["series"] == 1 and done["runs"] == 1
    assert not Run.objects.filter(pk=old.pk).exists()
    assert Run.objects.filter(pk=recent.pk).exists()
    assert Run.objects.filter(pk=running.pk).exists(), "a run in flight is never deleted"
    assert not Series.objects.filter(pk=old_series.pk).exists()
    assert not Run.objects.filter(series_id=old_series.pk).exists()
    assert kept_series.runs.count() == 1


def test_old_output_is_trimmed_and_marked(settings):
    settings.RUN_OUTPUT_RETENTION_DAYS = 7
    long = "x" * (retention.OUTPUT_KEPT_CHARACTERS * 3)
    old, new = aged(8, stdout=long, stderr="short"), aged(1, stdout=long)
    retention.purge()
    old.refresh_from_db()
    new.refresh_from_db()
    assert len(old.stdout) == retention.OUTPUT_KEPT_CHARACTERS and old.stdout_truncated
    assert old.stderr == "short" and not old.stderr_truncated
    assert new.stdout == long


def test_expired_sessions_are_cleared():
    Session.objects.create(
        session_key="old", session_data="", expire_date=timezone.now() - timedelta(days=1)
    )
    Session.objects.create(
        session_key="live", session_data="", expire_date=timezone.now() + timedelta(days=1)
    )
    retention.purge()
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]


def test_the_chore_runs_once_per_period_for_the_whole_fleet():
    now = timezone.now()
    assert retention.claim("purge", timedelta(hours=1), now=now)
    assert not retention.claim("purge", timedelta(hours=1), now=now + timedelta(minutes=59))
    assert retention.claim("purge", timedelta(hours=1), now=now + timedelta(minutes=61))


def test_the_command_reports_what_it_did(capsys, settings):
    settings.RUN_RETENTION_DAYS = 1
    aged(2)
    call_command("purge_runs")
    assert "Deleted 0 series and 1 single runs" in capsys.readouterr().out

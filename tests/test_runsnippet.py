"""`manage.py runsnippet`, run as a user would: a real process, real exit status."""

import json
import os
import select
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from runs.figures import grids
from runs.figures.formatting import KWH_IN_J
from runs.models import Run, Series, Worker
from runs.queue import tasks

from .conftest import host_hardware, wait_for

CONTRACT = {
    "id",
    "status",
    "exit_code",
    "stdout",
    "stderr",
    "stdout_truncated",
    "stderr_truncated",
    "duration_s",
    "cpu_seconds",
    "energy_kwh",
    "cpu_energy_kwh",
    "ram_energy_kwh",
    "gpu_energy_kwh",
    "machine_energy_kwh",
    "emissions_g",
    "carbon_intensity_g_per_kwh",
    "country_iso_code",
    "region",
    "isolation",
    "error",
    "provenance",
    "power_samples",
}
# Added later, for repeats and baselines; the contract's keys above never change.
ADDED = {
    "sections",
    "lines",
    "measurement_notes",
    "last_line",
    "host_repeatability",
    "net_energy_kwh",
    "baseline",
    "startup_cpu_seconds",
    "python_version",
    "env",
    "code",
    "stdin",
    "series_id",
    "variant",
    "repetition",
    "created_at",
    "energy_kwh_range",
    "emissions_g_range",
    "machine_energy_kwh_range",
}


@pytest.fixture
def runsnippet(worker_env):
    def call(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "runsnippet", *args],
            cwd=settings.BASE_DIR,
            env=worker_env,
            input=stdin,
            capture_output=True,
            timeout=120,
        )

    return call


def test_json_output_matches_the_contract(runsnippet):
    result = runsnippet("--json", "-", stdin=b"print('hi')")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == CONTRACT | ADDED
    assert data["status"] == "succeeded"
    assert data["stdout"] == "hi\n" and data["error"] is None
    assert data["energy_kwh"] > 0 and data["emissions_g"] > 0
    assert (data["gpu_energy_kwh"] is None) == (host_hardware().gpu_count == 0)
    assert data["country_iso_code"] == "IND"
    assert all(len(sample) == 2 for sample in data["power_samples"])
    assert {"cpu", "ram", "gpu", "codecarbon_version", "host"} <= set(data["provenance"])
    assert data["baseline"]["energy_kwh"] > 0
    assert 0 <= data["net_energy_kwh"] < data["energy_kwh"]
    run = Run.objects.get(public_id=data["id"])
    assert run.source == Run.Source.CLI and run.status == Run.Status.SUCCEEDED
    # A fresh process's first task: the whole machine's figure is still one a machine
    # can draw (it read 1.15-2.45 mWh, a kilowatt or more, for a 2 ms print).
    hardware = host_hardware()
    bound = (hardware.cpu_tdp_w + hardware.ram_w) * data["duration_s"] / KWH_IN_J
    gpu = run.machine_gpu_energy_kwh or 0.0
    assert data["energy_kwh"] <= data["machine_energy_kwh"] <= bound + gpu + data["energy_kwh"]


def test_a_failing_snippet_exits_non_zero_and_prints_the_traceback(runsnippet, tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("print('out')\n1/0\n")
    result = runsnippet(str(path))
    assert result.returncode == 1
    assert result.stdout.decode().startswith("out\n")
    assert "ZeroDivisionError" in result.stderr.decode()
    assert "Failed" in result.stdout.decode()
    assert "snippet energy" in result.stdout.decode()


def test_options_set_timeout_and_country(runsnippet):
    result = runsnippet(
        "--json", "--timeout", "1", "--country", "fra", "-", stdin=b"import time; time.sleep(5)"
    )
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["status"] == "timed_out"
    assert data["country_iso_code"] == "FRA"
    assert data["carbon_intensity_g_per_kwh"] < 100
    # Without --json the summary names the grid, with its region.
    grid = grids.grids()["USA/california"]
    text = runsnippet("--country", "usa", "--region", "california", "-", stdin=b"pass")
    assert f"g/kWh ({grid.name})" in text.stdout.decode()


@pytest.mark.parametrize(
    ("stdin", "args", "message"),
    [
        (b"", ["-"], "There is no code to run."),
        (b"\x89PNG\r\n\x1a\n\x00\xff", ["-"], "not UTF-8 text"),
        (b"pass", ["--country", "XXX", "-"], "Unknown country"),
        (b"pass", ["/no/such/file.py"], "Cannot read /no/such/file.py"),
    ],
)
def test_bad_input_gets_a_clear_message(runsnippet, stdin, args, message):
    result = runsnippet(*args, stdin=stdin)
    assert result.returncode != 0
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_code_over_the_size_limit_is_refused(runsnippet):
    big = b"# " + b"x" * (settings.MAX_CODE_BYTES + 10)
    result = runsnippet("-", stdin=big)
    assert result.returncode != 0
    assert "the limit is" in result.stderr.decode()
    assert Run.objects.count() == 0  # nothing stored, nothing run


ESCAPES = "print('\\x1b]0;pwned\\x07\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J\\x9b31mdone\\tok')"
# A bidirectional override: "txt.exe" shown as "exe.txt" by any terminal that honours it.
BIDI = "print('report\\u202etxt.exe')"


# Snippet-made text in the summary: a section's name, the error's message.
ESCAPES_IN_THE_SUMMARY = (
    "from playground import section\n"
    "with section('\\x1b]0;title\\x07name'):\n    pass\n"
    "raise ValueError('\\x1b[2J\\x1b]52;c;eA==\\x07\\x9bboom')\n"
)


@pytest.mark.parametrize(
    "code", [ESCAPES, ESCAPES_IN_THE_SUMMARY, BIDI], ids=["output", "summary", "bidi"]
)
def test_terminal_escapes_of_the_snippet_reach_a_terminal_defused(worker_env, code):
    controller, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runsnippet", "-"],
        cwd=settings.BASE_DIR,
        env=worker_env,
        stdin=subprocess.PIPE,
        stdout=terminal,
        stderr=subprocess.DEVNULL,
    )
    os.close(terminal)
    proc.communicate(code.encode(), timeout=120)
    shown = b""
    while select.select([controller], [], [], 1)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's other end has closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    text = shown.decode()
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\u202e" not in text
    if code == BIDI:
        assert proc.returncode == 0 and "report\\u202etxt.exe" in text
    elif code == ESCAPES:
        assert proc.returncode == 0
        assert "␛]0;pwned␇" in text and "␛[2J" in text and "\ufffd31mdone\tok" in text
    else:
        assert proc.returncode == 1
        assert "section ␛]0;title␇name" in text and "␛[2J␛]52;c;eA==␇\ufffdboom" in text


def test_json_output_keeps_control_characters_escaped(runsnippet):
    code = ESCAPES + "\nprint('\\x7f\\x85')\n" + BIDI
    result = runsnippet("--json", "-", stdin=code.encode())
    data = json.loads(result.stdout)
    assert data["stdout"].startswith("\x1b]0;pwned\x07")
    assert data["stdout"].endswith("\x7f\x85\nreport\u202etxt.exe\n")
    # Escaped in the JSON text itself: C1 controls, DEL and bidirectional controls never
    # reach a terminal raw.
    text = result.stdout.decode()
    assert not any(0x7F <= ord(c) < 0xA0 or c in "\x1b\x07\u202e" for c in text)
    assert "\\u009b" in text and "\\u007f" in text


# Ctrl+C, a TERM and a KILL: what each leaves behind. Each command runs in a session of
# its own, as a terminal's foreground job: a Ctrl+C goes to its whole process group.
FOREVER = "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.001)\n"
ROUND = "import time\nprint('{}', flush=True)\ntime.sleep(0.4)\n"


def started(worker_env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runsnippet", *args],
        cwd=settings.BASE_DIR,
        env=worker_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def comparing(worker_env, tmp_path) -> subprocess.Popen:
    files = [tmp_path / "a.py", tmp_path / "b.py"]
    for path in files:
        path.write_text(ROUND.format(path.stem))
    return started(worker_env, *map(str, files), "--pairs", "30", "--json")


def running_cli_run() -> Run:
    return wait_for(
        lambda: Run.objects.filter(source=Run.Source.CLI, status=Run.Status.RUNNING).first(),
        timeout=60,
    )


def test_ctrl_c_stops_the_run_as_the_stop_button_does(worker_env, tmp_path):
    (path := tmp_path / "forever.py").write_text(FOREVER)
    proc = started(worker_env, "--json", str(path))
    run = wait_for(
        lambda: Run.objects.filter(source=Run.Source.CLI, output_chunks__isnull=False).first(),
        timeout=60,
    )
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err.decode()
    assert "Stopping" in err.decode() and "Traceback" not in err.decode()
    data = json.loads(out)
    assert data["id"] == str(run.public_id)
    # The snippet, in its own session, never saw the Ctrl+C: the stop ended it.
    assert data["status"] == "cancelled" and "Stopped on request" in data["error"]
    assert data["stdout"].startswith("started") and data["duration_s"] > 0
    parts = [data[f"{part}_energy_kwh"] or 0.0 for part in ("cpu", "ram", "gpu")]
    assert data["energy_kwh"] == pytest.approx(sum(parts)) and data["energy_kwh"] > 0
    stored = Run.objects.get(pk=run.pk)
    assert stored.status == Run.Status.CANCELLED and stored.finished_at is not None
    assert not Worker.objects.exists()  # it left cleanly: nothing for a reaper


def test_a_terminated_comparison_stops_whole_and_says_why(worker_env, tmp_path):
    proc = comparing(worker_env, tmp_path)
    running_cli_run()
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    series = Series.objects.get()
    assert series.finished_at and "Stopped on request after" in series.stop_reason
    statuses = set(series.runs.values_list("status", flat=True))
    assert Run.Status.CANCELLED in statuses
    assert statuses <= {Run.Status.SUCCEEDED, Run.Status.CANCELLED}
    data = json.loads(out)
    assert data["is_over"] and series.stop_reason in data["warnings"]
    assert not Worker.objects.exists()


def test_what_a_killed_runsnippet_left_queued_is_stopped_by_the_repairs(
    worker_env, tmp_path, settings
):
    settings.WORKER_STALE_SECONDS = float(worker_env["WORKER_STALE_SECONDS"])
    proc = comparing(worker_env, tmp_path)
    series = running_cli_run().series
    proc.kill()
    proc.communicate(timeout=10)
    left = set(series.runs.filter(status=Run.Status.QUEUED).values_list("pk", flat=True))
    assert left  # what this test is about: a round it never ran
    wait_for(lambda: not Worker.objects.alive().exists(), timeout=10)
    Run.objects.fail_orphans()  # the run it was running, if it was: the reaper's part
    assert tasks.stop_abandoned() == len(left)
    series.refresh_from_db()
    assert series.finished_at and "its terminal (runsnippet) went away" in series.stop_reason
    assert not series.runs.filter(status__in=Run.IN_FLIGHT).exists()
    for run in series.runs.filter(pk__in=left):
        assert run.status == Run.Status.CANCELLED and run.error == Run.ABANDONED
    assert tasks.stop_abandoned() == 0


@pytest.mark.django_db
def test_only_a_terminal_that_went_away_has_its_runs_stopped(settings):
    settings.WORKER_STALE_SECONDS = 30
    fresh = Run.objects.submit("print(1)", source=Run.Source.CLI)
    old = Run.objects.submit("print(2)", source=Run.Source.CLI)
    web = Run.objects.submit("print(3)")
    long_ago = timezone.now() - timedelta(seconds=60)
    Run.objects.filter(pk__in=[old.pk, web.pk]).update(created_at=long_ago)
    # A comparison whose runsnippet still beats: its queued round waits for it.
    series = Series.objects.submit(
        Series.Kind.COMPARE, ["print(1)", "print(2)"], 5, source=Run.Source.CLI
    )
    series.runs.update(created_at=long_ago)
    terminal = Worker.objects.create(name=Worker.name_for_this_process(), kind=Worker.Kind.CLI)
    first = series.runs.order_by("repetition", "variant").first()
    Run.objects.filter(pk=first.pk).update(
        status=Run.Status.SUCCEEDED, worker=terminal.name, finished_at=timezone.now()
    )
    assert list(Run.objects.abandoned()) == [old]  # not a fresh one, nor the web's
    assert tasks.stop_abandoned() == 1
    assert Run.objects.get(pk=old.pk).error == Run.ABANDONED
    assert Run.objects.get(pk=fresh.pk).status == Run.Status.QUEUED
    # Its heartbeat late, the comparison's queued runs look abandoned; but its process
    # is seen running here (this one), so they wait, as the reaper's runs do.
    Worker.objects.filter(pk=terminal.pk).update(last_seen_at=long_ago)
    queued = set(series.runs.filter(status=Run.Status.QUEUED))
    assert set(Run.objects.abandoned()) == queued
    assert tasks.stop_abandoned() == 0
    # Its process gone (a name no process here has): they are stopped.
    series.runs.filter(worker=terminal.name).update(worker="gone:1:dead@0")
    assert tasks.stop_abandoned() == len(queued)
    assert not series.runs.filter(status=Run.Status.QUEUED).exists()

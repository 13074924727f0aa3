"""`manage.py runsnippet`, run as a user would: a real process, real exit status."""

import json
import os
import select
import subprocess
import sys

import pytest
from django.conf import settings

from runs.figures import grids
from runs.figures.formatting import KWH_IN_J
from runs.models import Run

from .conftest import host_hardware

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

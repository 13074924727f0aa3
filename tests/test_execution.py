"""One run end to end in this process: real sandbox, real CodeCarbon, real database."""

import threading
import time

import codecarbon
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections

from runs import sandbox
from runs.figures import breakdown, charts, grids, measure
from runs.models import ControlRun, Run, Series, run_json, series_json
from runs.queue import baselines, execution
from runs.queue.direct import protocol
from runs.sandbox import environments
from runs.snippets import failures

from .conftest import execute, host_hardware, printed, run_series, sandbox_processes, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


def test_a_successful_run_is_persisted_with_every_figure():
    run = execute("print('hi')")
    assert run.status == Run.Status.SUCCEEDED
    assert (run.exit_code, run.stdout, run.stderr) == (0, "hi\n", "")
    assert run.started_at <= run.finished_at
    for name in [
        "duration_s",
        "cpu_seconds",
        "energy_kwh",
        "cpu_energy_kwh",
        "ram_energy_kwh",
        "machine_energy_kwh",
        "emissions_g",
        "carbon_intensity_g_per_kwh",
    ]:
        assert getattr(run, name) > 0, name
    hardware = host_hardware()
    if hardware.gpu_count:
        assert run.gpu_energy_kwh > 0 and run.provenance["gpu"]["method"] == "measured"
    else:  # no GPU: unknown, not zero
        assert run.gpu_energy_kwh is None and run.provenance["gpu"]["method"] == "none"
    assert run.energy_kwh == pytest.approx(
        run.cpu_energy_kwh + run.ram_energy_kwh + (run.gpu_energy_kwh or 0)
    )
    assert run.emissions_g == pytest.approx(run.energy_kwh * run.carbon_intensity_g_per_kwh)
    assert run.country_iso_code == settings.CODECARBON_COUNTRY
    assert run.carbon_intensity_g_per_kwh == pytest.approx(
        grids.intensity_for(settings.CODECARBON_COUNTRY, settings.CODECARBON_REGION)
    )
    assert run.provenance["cpu"]["method"] == ("measured" if hardware.cpu_measured else "estimate")
    assert run.provenance["codecarbon_version"] == codecarbon.__version__
    assert run.isolation.startswith(sandbox.isolation())


def test_a_crashing_snippet_is_failed_with_its_line():
    run = execute("x = 1\nraise ValueError('bad input')\n")
    assert run.status == Run.Status.FAILED
    assert run.exit_code == 1
    assert run.error == "ValueError: bad input (raised on line 2)"


def test_a_snippet_that_crashes_is_failed_with_the_line_it_crashed_on():
    run = execute("import ctypes\n\nctypes.string_at(0)\n")
    assert run.status == Run.Status.FAILED
    assert run.exit_code == -11
    # faulthandler's dump, as under `python -X faulthandler`, names the line.
    assert "Fatal Python error: Segmentation fault" in run.stderr
    assert run.failing_line == 3
    assert run.error == "The snippet was killed by signal 11 (SIGSEGV) on line 3."


# The line profile's sampler crashes CPython 3.11 and 3.12 only when a sample lands in a
# race of a few instructions (launcher.Measure.sampler_crashed): it cannot be caused on
# demand. These snippets leave what the sampler leaves when it does (a stack's header
# written, none of its lines, signals held so that no real sample comes between) and
# crash: the real sandbox, supervisor, worker and database take it from there.
SAMPLER_CRASH = """\
import ctypes, os, signal
from playground import section
launcher = section.__init__.__globals__
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF})
os.write(launcher["CHANNELS"]["profile"], b"Stack (most recent call first):\\n")
ctypes.string_at(0)
"""


def test_a_go_the_profile_sampler_crashed_is_dropped_and_run_again_without_it():
    code = (
        "from playground import section\n"
        "profiled = section.__init__.__globals__['PROFILE']['arm'] is not None\n"
        "print('first go' if profiled else 'second go')\n"
        "if profiled:\n" + "".join("    " + line + "\n" for line in SAMPLER_CRASH.splitlines())
    )
    run = execute(code)
    assert run.status == Run.Status.SUCCEEDED, (run.error, run.stderr)
    # Nothing of the first go: not its output, live or stored, nor its crash.
    assert (run.exit_code, run.stdout, run.stderr) == (0, "second go\n", "")
    assert not run.output_chunks.exists()
    assert breakdown.PROFILE_CRASHED in run.measurement_notes
    assert run.lines == []
    assert run.cpu_seconds > 0 and run.energy_kwh > 0
    assert run.energy_kwh == pytest.approx(
        run.cpu_energy_kwh + run.ram_energy_kwh + (run.gpu_energy_kwh or 0)
    )


def test_a_snippet_that_crashes_the_same_way_without_a_profile_fails_after_one_more_go():
    profiled = "from playground import section\n" + (
        "print(section.__init__.__globals__['PROFILE']['arm'] is not None)\n"
    )
    run = execute(profiled + SAMPLER_CRASH)
    assert run.status == Run.Status.FAILED
    assert (run.exit_code, run.stdout) == (-11, "False\n")  # the second go's
    assert run.error == "The snippet was killed by signal 11 (SIGSEGV) on line 8."
    assert run.measurement_notes.count(breakdown.PROFILE_CRASHED) == 1


def test_a_snippet_that_crashes_in_its_own_code_is_not_run_again():
    outcome = sandbox.run("import ctypes\nctypes.string_at(0)\n", sandbox.Limits.from_settings(5))
    assert outcome.exit_code == -11 and not outcome.sampler_crashed
    crashed = sandbox.run(SAMPLER_CRASH, sandbox.Limits.from_settings(5))
    assert crashed.exit_code == -11 and crashed.sampler_crashed


def test_a_syntax_error_names_the_line():
    run = execute("def f(:\n    pass\n")
    assert run.status == Run.Status.FAILED
    assert run.error.startswith("SyntaxError on line 1:")
    assert run.failing_line == 1


def test_failures_the_sandbox_causes_come_with_a_plain_hint():
    no_module = execute("import requests\n")  # in no environment we declare
    assert no_module.failing_line == 1
    assert any("requests is not installed in any environment" in hint for hint in no_module.hints)
    assert all(name in no_module.hints[0] for name in environments.default().featured[:5])
    no_network = execute("import socket\n\nsocket.create_connection(('1.1.1.1', 80))\n")
    assert failures.NO_NETWORK in no_network.hints and no_network.failing_line == 3
    # Whatever the library: a name that cannot be resolved, through urllib or http.client.
    for fetch in (
        "import urllib.request\nurllib.request.urlopen('http://example.com')\n",
        "import http.client\nhttp.client.HTTPSConnection('example.com').request('GET', '/')\n",
        "import socket\nsocket.getaddrinfo('example.com', 80)\n",
    ):
        assert failures.NO_NETWORK in execute(fetch).hints, fetch
    refused_file = 'File "/tmp/main.py", line 1\nPermissionError: [Errno 13] Permission denied'
    assert failures.NO_NETWORK not in failures.hints(refused_file, environments.default().name)
    no_stdin = execute("name = input('Name? ')\n")
    assert failures.NO_STDIN in no_stdin.hints
    assert execute("raise ValueError('mine')").hints == []


def test_a_timeout_is_its_own_status_and_keeps_the_output():
    run = execute("import time\nprint('started', flush=True)\ntime.sleep(30)", timeout_s=1)
    assert run.status == Run.Status.TIMED_OUT
    assert run.stdout == "started\n"
    assert "Timed out after 1 s" in run.error
    assert run.duration_s < 3


def test_a_limit_says_which_limit():
    run = execute("while True: print('y' * 10000)")
    assert run.status == Run.Status.LIMIT_EXCEEDED
    assert run.limit == "output"
    assert run.error.startswith("Output limit exceeded")
    assert run.stdout_truncated


def test_live_power_samples_are_written_while_the_run_executes():
    run = execute("import time\nt = time.time()\nwhile time.time() - t < 1.2: pass")
    seconds = [s[0] for s in run.power_samples]
    assert len(seconds) >= 3 and seconds == sorted(seconds)
    # One busy thread draws one thread's share of the CPU's power under CodeCarbon's
    # model (plus a sliver of RAM), whatever the CPU of this host.
    per_thread = host_hardware().watts_per_thread
    assert 0.75 * per_thread < max(w for _, w in run.power_samples) < 1.25 * per_thread
    assert charts.power_chart(run.power_samples, run.duration_s)["peak_w"] > 0


def test_a_run_with_one_live_sample_is_too_short_to_chart(settings):
    # Ends after the first (early) tick and well before the second: one measurement,
    # and the point that closes the series at the run's end holds its level.
    settings.LIVE_SAMPLE_SECONDS = 5.0
    run = execute("import time\ntime.sleep(0.2)")
    assert sandbox.FIRST_TICK_SECONDS < run.duration_s < settings.LIVE_SAMPLE_SECONDS
    assert len(run.power_samples) == 2
    assert run.power_samples[-1] == [round(run.duration_s, 3), run.power_samples[0][1]]
    assert charts.power_chart(run.power_samples, run.duration_s) is None
    # While it ran, the same single tick was not a chart either.
    assert charts.power_chart(run.power_samples[:1]) is None


def test_waiting_costs_far_less_than_working():
    busy = execute("import time\nt = time.time()\nwhile time.time() - t < 0.5: pass")
    idle = execute("import time\ntime.sleep(0.5)")

    def beyond_start_up(run: Run) -> float:
        # The interpreter's start-up differs from host to host (measured on a GPU host
        # with a large site-packages: a tenth of this busy loop); what the snippet's own
        # code costs does not.
        own = max(run.cpu_seconds - run.baseline_cpu_seconds, 0.0)
        return run.cpu_energy_kwh * own / run.cpu_seconds

    assert beyond_start_up(idle) < beyond_start_up(busy) / 10
    # The machine figure charges wall time: it barely tells them apart.
    assert idle.machine_energy_kwh > busy.machine_energy_kwh / 3


def test_country_and_region_change_the_intensity():
    run = execute("pass", country_iso_code="FRA")
    assert run.carbon_intensity_g_per_kwh == pytest.approx(grids.intensity_for("FRA"))
    assert run.carbon_intensity_g_per_kwh != pytest.approx(grids.intensity_for("IND"))
    assert run.emissions_g == pytest.approx(run.energy_kwh * run.carbon_intensity_g_per_kwh)


def test_codecarbon_task_list_stays_bounded():
    from runs.figures import measure

    for _ in range(3):
        execute("pass")
    tracker = measure.tracker_for("IND")
    assert len(tracker._tasks) == 0


def test_the_codecarbon_internals_we_read_exist_in_the_pinned_version():
    # runs.figures.measure reads CodeCarbon's private attributes (_hardware, _conf, _tasks, and
    # the CPU's _mode, _model, _tdp, _cpu_count): tolerable only with the exact version
    # pinned, and checked here so that an update that moves them fails loudly.
    from codecarbon.external.hardware import CPU

    pinned = next(
        line.split("==")[1].strip()
        for line in (settings.BASE_DIR / "requirements.txt").read_text().splitlines()
        if line.lower().startswith("codecarbon==")
    )
    assert codecarbon.__version__ == pinned
    # A tracker lists its hardware once a task has started.
    session = measure.Session(settings.CODECARBON_COUNTRY, settings.CODECARBON_REGION)
    tracker = session.tracker
    cpu = next(h for h in tracker._hardware if isinstance(h, CPU))
    for name in ("_mode", "_model", "_tdp", "_cpu_count"):
        assert hasattr(cpu, name), name
    assert isinstance(tracker._conf, dict) and isinstance(tracker._tasks, dict)
    # Whether CodeCarbon's TDP table knows a CPU model (measure._codecarbon_knows).
    from codecarbon.core import cpu as codecarbon_cpu
    from codecarbon.core.hardware_cache import get_cached_tdp

    assert callable(get_cached_tdp(codecarbon_cpu)._get_cpu_power_from_registry)
    # The power monitor's scheduler is replaced (measure._Monitor), taking its interval
    # and function; CodeCarbon starts it for a task and stops it after.
    monitor = tracker._scheduler_monitor_power
    assert isinstance(monitor, measure._Monitor)
    assert monitor.function == tracker._monitor_power and monitor.interval > 0
    assert not monitor._stopped, "CodeCarbon no longer starts the monitor for a task"
    session.end()
    assert monitor._stopped, "CodeCarbon no longer stops the monitor after a task"


def test_the_power_monitor_calls_its_function_every_interval_while_armed():
    calls = []
    monitor = measure._Monitor(0.05, lambda: calls.append(time.monotonic()))
    started = time.monotonic()
    monitor.start()
    wait_until = started + 5
    while len(calls) < 3 and time.monotonic() < wait_until:
        time.sleep(0.01)
    monitor.stop()
    assert len(calls) >= 3, "the armed monitor did not keep calling"
    assert calls[0] - started >= 0.05, "the first call came before an interval"
    time.sleep(0.1)  # a call under way when stopped may still land
    stopped_at = len(calls)
    time.sleep(0.2)
    assert len(calls) == stopped_at, "the disarmed monitor went on calling"
    monitor.start()
    while len(calls) == stopped_at and time.monotonic() < wait_until + 5:
        time.sleep(0.01)
    monitor.stop()
    assert len(calls) > stopped_at, "armed again, it did not call again"


def test_a_run_carries_its_context_into_exports_and_its_page(client):
    run = execute("import sys; print(sys.version_info[:2])")
    version = sandbox.python_version(environments.default().python)
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    assert run.stdout == f"{major_minor}\n"  # the version we report is the one that ran
    data = client.get(f"/runs/{run.public_id}.json").json()
    assert data["python_version"] == version and data["code"] == run.code
    page = client.get(run.get_absolute_url()).text
    assert f"Python {version}" in page and run.created_at.strftime("%Y") in page


# --- where the energy goes: sections and the line profile ------------------------------

BUSY_FUNCTION = """import time
from playground import section

def busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
"""


def test_named_sections_measure_their_own_part_of_the_run():
    run = execute(
        BUSY_FUNCTION
        + """
numbers = [i for i in range(10_000)]  # set-up, outside any section
with section("long"):
    busy(0.4)
with section("short"):
    busy(0.2)

@section("twice")
def f():
    with section("inner"):
        busy(0.02)

f()
f()
"""
    )
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    sections = {s["name"]: s for s in run.sections}
    assert set(sections) == {"long", "short", "twice", "twice/inner"}
    ratio = sections["long"]["energy_kwh"] / sections["short"]["energy_kwh"]
    assert ratio == pytest.approx(2.0, abs=0.2)
    assert sections["twice"]["calls"] == 2 and sections["twice/inner"]["calls"] == 2
    assert all(s["cpu_seconds"] <= run.cpu_seconds for s in run.sections)
    assert sum(s["share"] for s in run.sections if "/" not in s["name"]) <= 1.0
    assert run.measurement_notes == []
    assert run_json(run)["sections"] == run.sections


def test_the_line_profile_finds_the_busy_line():
    run = execute(BUSY_FUNCTION + "\nprint('set up')\nbusy(0.5)\nprint('done')\n")
    assert run.stdout == "set up\ndone\n"
    lines = {line["line"]: line for line in run.lines}
    busy_line = BUSY_FUNCTION.splitlines().index("    while time.process_time() < end:") + 1
    assert lines[busy_line]["share"] >= 0.8
    assert sum(line["cpu_seconds"] for line in run.lines) == pytest.approx(run.cpu_seconds)


def test_a_snippet_taking_the_profilers_signal_is_left_alone_and_told():
    run = execute(
        "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\n"
        + BUSY_FUNCTION.replace("from playground import section\n", "")
        + "busy(0.4)\nprint('unchanged')\n"
    )
    assert run.status == Run.Status.SUCCEEDED and run.stdout == "unchanged\n"
    assert breakdown.PROFILE_STOPPED in run.measurement_notes


def test_a_snippet_without_sections_has_none():
    run = execute("print('plain')")
    assert (run.sections, run.measurement_notes) == ([], [])
    assert run.lines == []  # too short to profile


def test_a_comparison_on_a_section_leaves_the_set_up_out():
    set_up = "busy(0.3)  # the same set-up in both\n"
    a = BUSY_FUNCTION + set_up + "with section('sort'):\n    busy(0.2)\n"
    b = BUSY_FUNCTION + set_up + "with section('sort'):\n    busy(0.1)\n"
    with pytest.raises(ValidationError, match="no section named"):
        Series.objects.submit(Series.Kind.COMPARE, [a, "print(1)"], 3, section="sort")
    on_section = Series.objects.submit(Series.Kind.COMPARE, [a, b], 3, section="sort")
    run_series(on_section)
    results = on_section.results()
    assert results.compared["energy"].change == pytest.approx(-0.5, abs=0.1)
    # The whole runs differ far less: the set-up dilutes the difference.
    whole = Series.objects.get(pk=on_section.pk)
    whole.section = ""
    assert whole.results().compared["energy"].change > results.compared["energy"].change + 0.2
    assert series_json(on_section)["section"] == "sort"


def test_a_control_run_measures_the_same_fixed_work_in_the_sandbox():
    first, second = baselines.run_control(), baselines.run_control()
    assert first.host == second.host == settings.HOST_NAME
    assert 0.05 < first.cpu_seconds < 5 and first.duration_s >= first.cpu_seconds * 0.5
    assert ControlRun.objects.filter(host=settings.HOST_NAME).count() == 2


def test_a_forked_child_does_not_report_sections_twice():
    run = execute(
        BUSY_FUNCTION
        + "import os\nwith section('both'):\n    busy(0.05)\n"
        + "pid = os.fork()\nif pid:\n    os.waitpid(pid, 0)\n"
    )
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    assert [s["name"] for s in run.sections] == ["both"]


def test_sections_in_two_threads_do_not_nest_into_each_other():
    run = execute(
        BUSY_FUNCTION
        + "import threading\n\ndef work():\n    with section('thread'):\n        busy(0.1)\n\n"
        + "threads = [threading.Thread(target=work) for _ in range(2)]\n"
        + "for t in threads:\n    t.start()\nfor t in threads:\n    t.join()\n"
    )
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    assert [(s["name"], s["calls"]) for s in run.sections] == [("thread", 2)]


def test_a_handed_over_run_that_is_not_ours_is_ended_unstored_and_leaves_nothing():
    # The claim is asked while the code starts; a refusal (another worker took it, or
    # the client has a run in flight) ends the sandbox and stores nothing.
    run = Run.objects.submit("import time\nprint('started', flush=True)\ntime.sleep(5)")
    asked = []

    def refuse() -> bool:
        asked.append(True)
        return False

    assert execution.execute(run, claim=refuse) is None
    assert asked == [True], "the claim is asked exactly once"
    run.refresh_from_db()
    assert (run.status, run.stdout, run.worker) == (Run.Status.QUEUED, "", "")
    sandbox.discard_standby()
    assert sandbox_processes() == [], "the refused run's sandbox was left running"
    # Its measurement was ended too: CodeCarbon refuses a task while one is open.
    after = execute("print('after')")
    assert after.status == Run.Status.SUCCEEDED, after.error


def test_a_handed_over_run_is_claimed_while_its_code_starts():
    run = Run.objects.submit("print('mine')")
    statuses = []

    def grant() -> bool:
        statuses.append(Run.objects.get(pk=run.pk).status)
        return protocol.claim(run, "this-worker")

    done = execution.execute(run, claim=grant)
    assert statuses == [Run.Status.QUEUED], "the run was marked before its claim"
    done.refresh_from_db()
    assert (done.status, done.stdout) == (Run.Status.SUCCEEDED, "mine\n")
    assert done.worker == "this-worker"


def test_a_run_deleted_while_it_runs_ends_quietly_and_leaves_nothing(caplog):
    run = Run.objects.submit("import time\nprint('started', flush=True)\ntime.sleep(1)")

    def delete_once_started():
        wait_for(lambda: printed(run) == "started\n")
        Run.objects.filter(pk=run.pk).delete()  # as the admin's delete action does
        connections.close_all()

    deleter = threading.Thread(target=delete_once_started)
    deleter.start()
    execution.execute(run)
    deleter.join()

    assert not Run.objects.filter(pk=run.pk).exists()
    assert f"run {run.public_id} was deleted while it ran" in caplog.text
    assert "failed" not in caplog.text
    sandbox.discard_standby()  # the next run's, started as this one ended
    assert sandbox_processes() == [], "the deleted run's sandbox was left running"

"""Figures no snippet can hide or forge, and measuring that never changes a run.

End to end in this process: real sandbox, real CodeCarbon, real database. What a
snippet tries here is what a hostile one would: hide CPU time from the count, rewrite
the structures that measure it, take the profiler's signal.
"""

import textwrap

import pytest

from runs import sandbox
from runs.figures import breakdown, cpu_power, measure
from runs.figures.formatting import KWH_IN_J
from runs.models import Run, Series, limits, run_json
from runs.snippets import examples

from .conftest import execute, host_hardware, run_series, sandbox_processes

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


def code(text: str) -> str:
    return textwrap.dedent(text).lstrip()


BUSY = code(
    """
    import time
    from playground import section

    def busy(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
    """
)


# --- CPU time the snippet cannot hide -------------------------------------------------


def test_cpu_hidden_by_ignoring_sigchld_counts_towards_the_quota(settings):
    client = "203.0.113.77"
    run = execute(
        code(
            """
            import os, signal, time
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
            if os.fork() == 0:
                end = time.process_time() + 1.0
                while time.process_time() < end:
                    pass
                os._exit(0)
            time.sleep(1.5)
            """
        ),
        client=client,
    )
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    assert run.cpu_seconds >= 0.9
    assert run.provenance["cpu"]["time_source"] == "cgroup"
    hardware = host_hardware()
    if not hardware.cpu_measured:
        assert run.cpu_energy_kwh == pytest.approx(
            run.cpu_seconds * hardware.watts_per_thread / KWH_IN_J
        )
    settings.LIMIT_CPU_SECONDS_PER_HOUR = 0.8
    refusal = limits.check(client)
    assert refusal is not None and "CPU-seconds" in refusal.message


# --- sections measured by the supervisor ----------------------------------------------

FORGE_EVERYTHING = code(
    """
    import gc, sys

    def smaller(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        return value / 20

    def shrink(container):
        if isinstance(container, dict):
            for key, value in list(container.items()):
                if isinstance(value, (list, dict)):
                    shrink(value)
                else:
                    container[key] = smaller(value)
        elif isinstance(container, list):
            container[:] = [smaller(v) if not isinstance(v, (list, dict)) else v for v in container]

    measured = sys.modules["playground"].section.__init__.__globals__
    for value in list(measured.values()):
        if isinstance(value, (dict, list)):
            shrink(value)
    for obj in gc.get_objects():
        if isinstance(obj, list) and len(obj) in (2, 3) and all(
            isinstance(v, (int, float)) for v in obj
        ):
            shrink(obj)
    sys.modules["playground"] = type(sys)("playground")
    """
)


def test_a_snippet_that_rewrites_what_it_can_reach_cannot_forge_a_section_verdict():
    honest = BUSY + "with section('work'):\n    busy(0.3)\n"
    forger = honest + FORGE_EVERYTHING
    series = Series.objects.submit(Series.Kind.COMPARE, [honest, forger], 3, section="work")
    run_series(series)
    runs = series.ordered_runs()
    assert all(run.status == Run.Status.SUCCEEDED for run in runs), [r.stderr for r in runs]
    for run in runs:
        work = breakdown.section_figures(run, "work")
        assert 0.25 <= work["cpu_seconds"] <= run.cpu_seconds, (run.variant, work)
    results = series.results()
    # The same work on both sides: whatever the verdict's noise, not B using 95% less.
    assert results.compared["energy"].change > -0.3, results.compared["energy"]


def test_section_events_sent_without_waiting_are_not_shown():
    run = execute(
        BUSY
        + code(
            """
            import os
            channels = section.__init__.__globals__["CHANNELS"]
            with section("real"):
                busy(0.05)
            for _ in range(500):
                os.write(channels["events"], b">1\\tfake\\n<1\\n")
            busy(0.1)
            with section("after"):  # answered no more: it must not wait forever
                busy(0.05)
            print("still fine")
            """
        )
    )
    assert run.status == Run.Status.SUCCEEDED and run.stdout == "still fine\n", run.stderr
    assert run.sections == []
    assert breakdown.SECTIONS_UNSYNCHRONIZED in run.measurement_notes


# --- measuring never changes a run's outcome ------------------------------------------

STARTERS = (
    [(example["slug"], example["code"]) for example in examples.EXAMPLES]
    + [("compare-a", examples.COMPARE_A), ("compare-b", examples.COMPARE_B)]
    + [
        (f"{starter['slug']}-{side}", starter[f"code_{side}"])
        for starter in examples.COMPARISONS
        for side in "ab"
    ]
)


@pytest.mark.parametrize(("slug", "starter"), STARTERS, ids=[slug for slug, _ in STARTERS])
def test_every_starter_runs_green(slug, starter):
    run = execute(starter, timeout_s=30)
    assert run.status == Run.Status.SUCCEEDED, f"{slug}: {run.error}\n{run.stderr}"
    assert run.stderr == ""
    assert all(line["cpu_seconds"] >= 0 for line in run.lines)
    lines_cpu = sum(line["cpu_seconds"] for line in run.lines)
    if run.lines and not run.sections:
        assert lines_cpu == pytest.approx(run.cpu_seconds)
    # With sections, each part's lines share out that part's figure: a part no sample
    # landed in leaves its share to no line, so the lines never add up to more.
    assert lines_cpu <= run.cpu_seconds * (1 + 1e-9)


def test_the_profiler_survives_frames_without_a_line_number():
    # A loop whose body ends with an `if` jumps back on an instruction of no line
    # (f_lineno is None there in 3.11): the bubble-sort starter failed on it.
    run = execute(
        code(
            """
            count = 0
            for i in range(3_000_000):
                if i % 3:
                    count += 1
            print(count)
            """
        )
    )
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    assert run.stdout == "2000000\n"
    assert run.lines, "profiled"
    assert sum(line["share"] for line in run.lines) == pytest.approx(1.0)


# --- per-line energy charges the line that called the C code --------------------------

C_CALLS = {
    "numpy-matmul-releases-the-gil": (
        """
        import numpy as np
        a = np.ones((1500, 1500))
        b = np.ones((1500, 1500))
        cheap = 1
        for _ in range(12): c = a @ b
        after = 2
        print(c[0, 0])
        """,
        "for _ in range(12): c = a @ b",
    ),
    "sorted-holds-the-gil": (
        """
        import random
        random.seed(1)
        data = [random.random() for _ in range(2_000_000)]
        cheap = 1
        for _ in range(4): ordered = sorted(data)
        after = 2
        print(ordered[0] <= ordered[-1])
        """,
        "for _ in range(4): ordered = sorted(data)",
    ),
    "sha256-over-200-mb": (
        """
        import hashlib
        data = bytes(200_000_000)
        cheap = 1
        for _ in range(4): digest = hashlib.sha256(data).hexdigest()
        after = 2
        print(digest[:8])
        """,
        "for _ in range(4): digest = hashlib.sha256(data).hexdigest()",
    ),
}


@pytest.mark.parametrize("case", C_CALLS)
def test_a_long_c_call_is_charged_to_its_own_line(case):
    snippet, busy_text = C_CALLS[case]
    snippet = code(snippet)
    run = execute(snippet, timeout_s=60)
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    numbers = breakdown.source_lines(snippet)
    busy_line = numbers.index(busy_text) + 1
    shares = {line["line"]: line["share"] for line in run.lines}
    assert shares.get(busy_line, 0) >= 0.8, shares
    assert shares.get(busy_line + 1, 0) < 0.05, shares  # the cheap line after it
    assert shares.get(busy_line + 2, 0) < 0.05, shares  # and the next call


def test_lines_are_numbered_as_python_numbers_them():
    # Windows and old-Mac line ends, a form feed, and U+2028/U+2029 inside a comment
    # and a string: Python breaks lines at \r\n, \r and \n only.
    snippet = (
        "import time\r\n"
        "# a comment with \u2028 a line separator\r\n"
        "text = 'a string with \u2029 a paragraph separator'\r"
        "\x0c\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print(text[:8])\n"
    )
    run = execute(snippet)
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    hottest = max(run.lines, key=lambda line: line["share"])
    assert hottest["line"] == 6, run.lines
    page = breakdown.for_page(run)
    assert page["listing"][5]["text"].startswith("while time.process_time()")
    assert page["hottest"][0]["text"].startswith("while time.process_time()")
    assert len(page["listing"]) == 7


# --- a killed run says where it was ---------------------------------------------------


def test_a_timed_out_run_names_the_line_it_was_on():
    run = execute("import time\nx = 1\nwhile True:\n    time.sleep(0.05)\n", timeout_s=1)
    assert run.status == Run.Status.TIMED_OUT
    assert run.last_line == 4 and run.failing_line == 4
    assert run.error.startswith("Timed out after 1 s at line 4;"), run.error
    assert run_json(run)["last_line"] == 4
    sandbox.discard_standby()  # the next run's, started by the worker's habit
    assert sandbox_processes() == []


def test_a_run_killed_for_memory_names_the_line_it_was_on():
    run = execute(
        BUSY + "blocks = []\nbusy(0.1)\nwhile True:\n    blocks.append(bytearray(8_000_000))\n"
    )
    assert run.status == Run.Status.LIMIT_EXCEEDED and run.limit == "memory", run.error
    last = len(breakdown.source_lines(BUSY)) + 4  # the allocating line, or its loop
    assert run.failing_line in (last - 1, last), run.last_line
    assert f"Memory limit exceeded at line {run.failing_line}:" in run.error


# --- the CPU power constant says what it is -------------------------------------------


def test_the_cpu_power_says_where_it_comes_from():
    run = execute("print('hi')")
    hardware = host_hardware()
    cpu = run.provenance["cpu"]
    assert cpu["power_source"] == hardware.cpu_power_source
    if hardware.cpu_power_source == measure.POWER_PUBLISHED:
        # This host's CPU model is missing from CodeCarbon's table: the published model
        # prices its generation, and the run says so, not "TDP".
        published = cpu_power.published(cpu_power.host_identity())
        assert hardware.watts_per_thread == pytest.approx(published.watts)
        assert "has no power figure for this CPU model" in cpu["source"]
        assert published.sentence() in cpu["source"] and "TDP" not in cpu["source"]
    elif hardware.cpu_power_source == measure.POWER_TABLE:
        assert f"{hardware.cpu_tdp_w:g} W TDP" in cpu["source"]
    assert cpu["power"] == hardware.cpu_power()
    # Every run names its processor, from the processor's own numbers.
    assert cpu["identity"] == cpu_power.host_identity().as_dict()
    assert run.processor == cpu_power.host_identity().described()
    if hardware.cpu_measured:
        assert run.energy_range is None
    else:
        low, high = cpu_power.range_factors()
        assert cpu["range_w"] == pytest.approx(
            [hardware.watts_per_thread * low, hardware.watts_per_thread * high]
        )
        rest = run.energy_kwh - run.cpu_energy_kwh
        assert run.energy_range == pytest.approx(
            (rest + run.cpu_energy_kwh * low, rest + run.cpu_energy_kwh * high)
        )


def test_an_operator_can_set_the_power_of_a_thread(settings):
    hardware = host_hardware()
    if hardware.cpu_measured:
        pytest.skip("this host reads an energy counter: no constant to set")
    settings.CPU_WATTS_PER_THREAD = 3.5
    measure._trackers.clear()
    measure._hardware_of.cache_clear()
    try:
        run = execute(BUSY + "busy(0.1)\n")
        assert run.provenance["cpu"]["power_source"] == measure.POWER_OPERATOR
        assert "set by this server's operator" in run.provenance["cpu"]["source"]
        assert run.provenance["cpu"]["watts_per_thread"] == pytest.approx(3.5)
        assert run.cpu_energy_kwh == pytest.approx(run.cpu_seconds * 3.5 / KWH_IN_J)
    finally:
        settings.CPU_WATTS_PER_THREAD = 0.0
        measure._trackers.clear()
        measure._hardware_of.cache_clear()


@pytest.mark.parametrize("code", ["print('hi')", "import time\ntime.sleep(0.3)"])
def test_the_whole_machines_figure_is_one_a_machine_can_draw(code):
    run = execute(code)
    hardware = host_hardware()
    bound = (hardware.cpu_tdp_w + hardware.ram_w) * run.duration_s / KWH_IN_J
    gpu = run.machine_gpu_energy_kwh or 0.0
    assert run.energy_kwh <= run.machine_energy_kwh <= bound + gpu + run.energy_kwh
    assert run.machine_emissions_g == pytest.approx(
        run.machine_energy_kwh * run.carbon_intensity_g_per_kwh
    )

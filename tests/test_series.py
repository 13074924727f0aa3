"""Repeats, A/B comparisons, baselines, equivalents, what-if pricing and exports."""

import csv
import io
import json

import pytest
from django_tasks_db.models import DBTaskResult

from runs import equivalents, measure, models, stats
from runs.models import MAX_REPETITIONS, ControlRun, Run, Series

from .factories import finished_run

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


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


def test_a_clear_difference_is_stated_in_plain_words(client):
    series = make_series(
        "compare",
        {
            "A": [1.00e-6, 1.01e-6, 0.99e-6, 1.02e-6, 0.98e-6],
            "B": [0.77e-6, 0.78e-6, 0.76e-6, 0.77e-6, 0.775e-6],
        },
    )
    html = client.get(series.get_absolute_url()).text
    assert "B uses 23% less energy than A (95% CI" in html
    assert "B takes 23% less time than A" in html


def test_noise_is_called_noise(client):
    series = make_series(
        "compare",
        {"A": [1.0e-6, 1.1e-6, 0.9e-6, 1.05e-6], "B": [1.02e-6, 0.95e-6, 1.08e-6, 0.97e-6]},
    )
    html = client.get(series.get_absolute_url()).text
    assert "No clear difference in energy at this sample size" in html


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


def test_run_page_shows_baseline_equivalents_and_other_grids(client):
    run = finished_run(
        energy_kwh=1.08e-6, emissions_g=7.7e-4, baseline_energy_kwh=3e-8, baseline_cpu_seconds=0.027
    )
    html = client.get(run.get_absolute_url()).text
    assert "Beyond that: 1.05 mWh" in html
    assert "driving 3.1 mm in a typical passenger car" in html
    assert "10 W LED bulb lit for 389 ms" in html
    assert "France" in html and 'India <span class="muted">(this run)</span>' in html


def test_equivalents_use_their_published_constants():
    assert equivalents.CAR_G_PER_KM.value == pytest.approx(248.5, abs=0.1)
    car = equivalents.CAR_G_PER_KM.value
    items = {item["key"]: item["text"] for item in equivalents.for_figures(0.0124, car)}
    assert items["phone"].startswith("1× of fully charging a smartphone")
    assert items["car"] == "the CO₂ of driving 1 km in a typical passenger car"
    assert equivalents.for_figures(None, None) == []


def test_what_if_prices_the_same_energy_on_other_grids():
    rows = measure.what_if(1e-3, "IND")
    by_country = {row["country"]: row for row in rows}
    assert by_country["FRA"]["emissions_g"] == pytest.approx(1e-3 * 56, rel=0.02)
    assert by_country["IND"]["own"] and not by_country["FRA"]["own"]
    assert [row["intensity"] for row in rows] == sorted(row["intensity"] for row in rows)
    assert measure.intensity_for("USA", "california") < measure.intensity_for("USA")


# --- verdicts that check themselves -------------------------------------------------


def test_a_noisy_side_and_runs_that_are_mostly_start_up_are_warned_about():
    noisy = make_series("repeat", {"A": [1e-6, 2e-6, 1e-6, 3e-6, 1.2e-6]})
    results = noisy.results()
    assert results["variants"]["A"]["energy"].cv > models.NOISY_CV
    assert any("vary by" in w and "The runs" in w for w in results["warnings"])

    steady = make_series("repeat", {"A": [1e-6, 1.01e-6, 0.99e-6, 1e-6]})
    Run.objects.filter(series=steady).update(cpu_seconds=0.01)
    warnings = steady.results()["warnings"]
    assert not any("vary by" in w for w in warnings)
    assert any("Put the work in a loop" in w for w in warnings)
    Run.objects.filter(series=steady).update(cpu_seconds=0.5)
    assert steady.results()["warnings"] == []


def test_an_unclear_comparison_says_how_many_pairs_would_settle_it_and_adds_them(
    client, django_capture_on_commit_callbacks
):
    series = make_series(
        "compare", {"A": [1.0e-6, 1.1e-6, 0.9e-6], "B": [0.95e-6, 1.12e-6, 0.8e-6]}
    )
    results = series.results()
    assert not results["energy"].significant
    pairs = [(a.energy_kwh, b.energy_kwh) for a, b in series._pairs(results["variants"])]
    settle = stats.pairs_to_settle(pairs)
    assert settle > 3
    assert any(f"about {settle} pairs" in w for w in results["warnings"])
    offered = series.more_pairs(results)
    assert offered == min(settle - 3, MAX_REPETITIONS - 3)
    page = client.get(series.get_absolute_url()).text
    assert f"Add {offered} pair" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/compare/{series.public_id}/more", {"pairs": str(offered)})
    assert response.status_code == 302
    series.refresh_from_db()
    assert series.repetitions == 3 + offered
    added = series.runs.filter(repetition__gt=3)
    assert added.count() == 2 * offered and set(added.values_list("status", flat=True)) == {
        "queued"
    }
    too_many = client.post(f"/compare/{series.public_id}/more", {"pairs": "100"})
    assert too_many.status_code == 422 and "at most" in too_many.text


def test_a_warm_up_run_is_shown_but_left_out_of_the_statistics(client):
    series = make_series("repeat", {"A": [9e-6, 1e-6, 1e-6, 1e-6]})
    assert series.results()["variants"]["A"]["energy"].n == 4
    series.warmup = True
    warmed = series.results()["variants"]["A"]["energy"]
    assert warmed.n == 3 and warmed.median == pytest.approx(1e-6)
    series.save()
    assert "warm-up" in client.get(series.get_absolute_url()).text


# --- host stability -------------------------------------------------------------------


def controls(host: str, values: list[float]) -> None:
    for value in values:
        ControlRun.objects.create(host=host, cpu_seconds=value, duration_s=value)


def test_a_hosts_repeatability_is_on_runs_healthz_and_the_methodology(client):
    assert ControlRun.objects.repeatability("h1") is None
    controls("h1", [0.20, 0.21, 0.19, 0.20])
    spread = ControlRun.objects.repeatability("h1")
    expected = stats.summarize([0.20, 0.21, 0.19, 0.20]).cv
    assert spread.runs == 4 and spread.cv == pytest.approx(expected)
    run = finished_run(provenance={"host": "h1", "cpu": {}, "ram": {}, "gpu": {}})
    assert spread.sentence() in client.get(run.get_absolute_url()).text
    health = client.get("/healthz").json()
    assert health["repeatability"] == [{"host": "h1", "cv": spread.cv, "control_runs": 4}]
    methodology = client.get("/methodology/").text
    assert "<td>h1</td>" in methodology and f"{spread.cv * 100:.0f}%" in methodology


def test_a_comparison_warns_when_its_host_was_unstable_while_it_ran(client):
    series = make_series("compare", {"A": [1e-6, 1e-6, 1e-6], "B": [2e-6, 2e-6, 2e-6]})
    Run.objects.filter(series=series).update(provenance={"host": "noisy"})
    controls("noisy", [0.20, 0.20, 0.20])
    assert series.host_warnings(series.ordered_runs()) == []
    controls("noisy", [0.30, 0.12])
    warnings = series.host_warnings(series.ordered_runs())
    assert len(warnings) == 1 and "noisy was unstable" in warnings[0]
    assert warnings[0] in client.get(series.get_absolute_url()).text
    assert warnings[0] in series.as_dict()["warnings"]

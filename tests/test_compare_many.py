"""Comparisons of three or four variants: each against A, ranked, corrected for the
number of comparisons; the same rounds, Stop, pages, exports, API and runsnippet form
as an A/B comparison."""

import json

import pytest
from django.core.management import call_command

from runs.figures import comparisons, stats
from runs.models import MAX_REPETITIONS, VARIANTS, Run, Series, series_json
from runs.queue import tasks
from runs.sandbox import environments

from .test_series import finish_round

pytestmark = pytest.mark.django_db

CODES = ["print('a')", "print('b')", "print('c')"]
# A clear order after one round: C cheapest, B as A, D dearest.
CLEAR = {
    "A": [1.00e-6, 1.01e-6, 0.99e-6, 1.02e-6, 0.98e-6],
    "B": [1.01e-6, 1.01e-6, 1.00e-6, 1.02e-6, 1.00e-6],
    "C": [0.70e-6, 0.71e-6, 0.69e-6, 0.72e-6, 0.68e-6],
    "D": [1.30e-6, 1.31e-6, 1.29e-6, 1.32e-6, 1.28e-6],
}


def test_the_form_takes_up_to_four_variants_and_interleaves_them(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/compare/new",
            {"code_a": CODES[0], "code_b": CODES[1], "code_c": CODES[2], "code_d": "  \n",
             "repetitions": "6"},
        )  # fmt: skip
    series = Series.objects.get()
    assert response["Location"] == series.get_absolute_url()
    assert series.variants == "ABC" and series.is_n_way  # an empty D is no variant
    order = [(r.variant, r.repetition, r.code) for r in series.runs.order_by("created_at")]
    first_round = stats.looks(6)[0]
    assert order == [
        (v, n, code)
        for n in range(1, first_round + 1)
        for v, code in zip("ABC", CODES, strict=True)
    ]
    assert series.title == "3-way comparison"


def test_more_than_four_or_fewer_than_two_are_refused():
    with pytest.raises(Exception, match=f"2 to {len(VARIANTS)} variants"):
        Series.objects.submit(Series.Kind.COMPARE, ["pass"] * (len(VARIANTS) + 1), 5)
    with pytest.raises(Exception, match=f"2 to {len(VARIANTS)} variants"):
        Series.objects.submit(Series.Kind.COMPARE, ["pass"], 5)


def test_each_variant_is_compared_with_a_at_its_share_of_the_error(client):
    series = Series.objects.submit(Series.Kind.COMPARE, [*CODES, "print('d')"], 5)
    finish_round(series, CLEAR)
    results = series.results()
    assert set(results.against) == {"B", "C", "D"} and results.decision is None
    schedule = stats.looks(series.pair_cap)
    for sub in results.against.values():
        # Bonferroni: each of three at a third of the look's error.
        expected = 1 - stats.nominal_level(len(schedule)) / 3
        assert sub.decision.comparison.level == pytest.approx(expected)
    ranking = comparisons.ranking(results)
    assert [row.variant for row in ranking] == ["C", "A", "B", "D"]
    assert [row.standing for row in ranking] == [
        comparisons.LESS, "", comparisons.SAME_AS_A, comparisons.MORE
    ]  # fmt: skip
    headline = series.headline(results)
    assert headline.startswith("C uses 30% less energy than A")
    assert "the only variant clearly below A" in headline
    assert "corrected for 3 comparisons" in headline
    # A wider interval than the same pairs would get alone: that is the price of three.
    alone = stats.compare_paired(
        list(zip(CLEAR["A"], CLEAR["C"], strict=True)),
        interval=1 - stats.nominal_level(len(schedule)),
    )
    corrected = results.against["C"].decision.comparison
    assert corrected.high - corrected.low > alone.high - alone.low

    page = client.get(series.get_absolute_url()).text
    assert "4-way comparison" in page and 'data-ranked="C"' in page
    assert page.index('data-ranked="C"') < page.index('data-ranked="D"')  # ranked
    assert "Bonferroni" in page and 'data-outcome="ranked"' in page
    for variant in "ABCD":
        assert f'data-code-of="{variant}"' in page


def test_several_below_a_are_named_but_not_ranked_against_each_other():
    series = Series.objects.submit(Series.Kind.COMPARE, CODES, 5)
    finish_round(series, {"A": CLEAR["A"], "B": [0.8e-6, 0.81e-6, 0.79e-6, 0.8e-6, 0.82e-6],
                          "C": CLEAR["C"]})  # fmt: skip
    headline = series.headline(series.results())
    assert headline.startswith("C uses 30% less energy than A")
    assert "the largest saving against A; B also uses clearly less" in headline
    assert "not compared with each other" in headline and "least" not in headline


def test_it_runs_until_every_comparison_is_clear(django_capture_on_commit_callbacks):
    series = Series.objects.submit(Series.Kind.COMPARE, CODES, MAX_REPETITIONS)
    # B is clear already; C is noisy against A: another round for all of them.
    finish_round(series, {"A": CLEAR["A"], "B": CLEAR["D"],
                          "C": [1.2e-6, 0.8e-6, 1.1e-6, 0.9e-6, 1.05e-6]})  # fmt: skip
    results = series.results()
    assert results.against["B"].decision.outcome == stats.DIFFERENT
    assert results.against["C"].decision.outcome == stats.CONTINUE and results.wants_more
    with django_capture_on_commit_callbacks(execute=True):
        added = tasks.continue_comparison(series)
    assert len(added) == 3 * stats.ROUND_PAIRS
    assert [run.variant for run in added[:3]] == ["A", "B", "C"]  # still interleaved
    # Later rounds as clear as can be: it stops as soon as C is clear too.
    while added:
        series.refresh_from_db()
        finish_round(series, {"A": CLEAR["A"], "B": CLEAR["D"], "C": CLEAR["C"]})
        added = tasks.continue_comparison(series)
    series.refresh_from_db()
    assert series.finished_at is not None and series.results().settled
    assert series.results().against["C"].decision.outcome == stats.DIFFERENT
    assert series.repetitions < series.pair_cap, "stopped when clear, not at the cap"


def test_a_variant_that_fails_more_is_never_called_the_cheaper():
    series = Series.objects.submit(Series.Kind.COMPARE, CODES, 5)
    finish_round(series, {"A": CLEAR["A"], "B": CLEAR["B"], "C": CLEAR["C"]})
    series.runs.filter(variant="C", repetition__in=[1, 2]).update(status=Run.Status.FAILED)
    results = series.results()
    row = next(row for row in comparisons.ranking(results) if row.variant == "C")
    assert row.standing == comparisons.FAILED_MORE
    assert row.verdict.startswith("C failed in 2 of 5 runs; A in none.")
    assert not series.headline(results).startswith("C uses")


def test_the_export_and_the_api_give_the_ranking(client):
    series = Series.objects.submit(Series.Kind.COMPARE, CODES, 5)
    finish_round(series, {v: CLEAR[v] for v in "ABC"})
    exported = series_json(series)
    assert exported["code"] == dict(zip("ABC", CODES, strict=True))
    ranking = exported["comparison"]["ranking"]
    assert [row["variant"] for row in ranking] == ["C", "A", "B"]
    assert ranking[0]["against_a"]["energy"]["change"] < 0
    assert ranking[1]["against_a"] is None and ranking[1]["standing"] == "reference"
    assert "Bonferroni" in exported["comparison"]["correction"]
    answer = client.get(f"/api/comparisons/{series.public_id}").json()
    assert answer["comparison"]["verdict"] == exported["comparison"]["verdict"]


def test_the_api_starts_a_comparison_of_variants(client, django_capture_on_commit_callbacks):
    default = environments.default().name
    body = {"variants": [{"code": c} for c in CODES], "max_pairs": 5, "stdin": "x"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/comparisons", body, content_type="application/json")
    assert response.status_code == 202, response.content
    series = Series.objects.get(public_id=response.json()["id"])
    assert response.json()["variants"] == ["A", "B", "C"]
    assert [series.code_of(v) for v in series.variants] == CODES
    assert {series.env_of(v) for v in series.variants} == {default}
    assert {series.stdin_of(v) for v in series.variants} == {"x"}
    assert series.source == Run.Source.API and series.max_pairs == 5
    # The client that sent it may stop it.
    stopped = client.post(f"/api/comparisons/{series.public_id}/cancel").json()
    assert stopped["is_over"] or stopped["finished"] <= stopped["total"]
    assert not series.runs.filter(status=Run.Status.QUEUED).exists()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"variants": [{"code": "pass"}]}, 400, "2 to 4 variants"),
        ({"variants": [{"code": "pass"}] * 5}, 400, "2 to 4 variants"),
        ({"variants": "pass"}, 400, "variants must be a list"),
        ({"variants": [{"code": "pass"}, {"code": " "}]}, 400, "There is no code to run"),
        ({"variants": [{"code": "pass"}, {"code": "pass", "env": "nope"}]}, 400, "nope"),
        ({"code": "pass"}, 400, '{"variants": ['),
    ],
)
def test_the_api_refuses_a_bad_comparison_in_json(client, body, status, message):
    response = client.post("/api/comparisons", body, content_type="application/json")
    assert response.status_code == status
    assert message in response.json()["error"]
    assert Series.objects.count() == 0


def test_a_run_page_compares_its_code_on_every_environment(client):
    from .factories import finished_run

    run = finished_run(code="print(sum(range(10)))", stdin="")
    names = [env.name for env in environments.available()][: len(VARIANTS)]
    page = client.get(run.get_absolute_url()).text
    response = client.post(f"/runs/{run.public_id}/every-environment")
    if len(names) < 2:
        assert "data-every-environment" not in page and response.status_code == 409
        return
    assert "Compare on every environment" in page
    series = Series.objects.get()
    assert response["Location"] == series.get_absolute_url()
    assert [series.env_of(v) for v in series.variants] == sorted(
        names, key=lambda name: name != run.env_name
    )
    assert {series.code_of(v) for v in series.variants} == {run.code}


@pytest.mark.sandbox
def test_runsnippet_compares_files_and_environments(tmp_path, capsys):
    files = []
    for name, code in zip("abc", ["x = sorted(range(3000))", "x = 1", "x = 2"], strict=True):
        path = tmp_path / f"{name}.py"
        path.write_text(code + "\nprint('done')\n")
        files.append(str(path))
    call_command("runsnippet", *files, "--pairs", "5", "--json")
    exported = json.loads(capsys.readouterr().out)
    series = Series.objects.get(public_id=exported["id"])
    assert series.variants == "ABC" and series.source == Run.Source.CLI
    assert series.finished_at is not None
    assert series.runs.filter(status=Run.Status.SUCCEEDED).count() == 3 * series.repetitions
    assert {row["variant"] for row in exported["comparison"]["ranking"]} == {"A", "B", "C"}
    # The workers never take a terminal's runs.
    assert not Run.objects.undispatched().exists()

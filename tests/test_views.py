"""Every endpoint: pages, htmx fragments, wrong methods, the JSON API, the admin."""

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs import sandbox
from runs.figures import formatting, measure, stats
from runs.models import Baseline, Run, Series, Worker

from .factories import finished_run, running_run

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def session_key(client) -> str:
    client.get("/")
    return client.session.session_key


# --- playground and submissions ------------------------------------------------------


def test_playground_page_has_the_editor_form_and_examples(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert '<textarea id="code" name="code"' in html
    assert 'action="/runs/new"' in html and 'hx-post="/runs/new"' in html
    assert "Busy loop" in html and "Waiting costs little" in html
    assert "editor.bundle" in html
    # htmx itself is served from this site (its script tag), not only named in attributes.
    assert re.search(r'<script src="/static/django_htmx/htmx[^"]*\.js"', html), html[:2000]
    assert "https://cdn" not in html and "unpkg" not in html


def test_playground_loads_a_runs_code_into_the_editor(client):
    run = finished_run(code="print('from history <b>')")
    response = client.get(f"/?from={run.public_id}")
    assert "print(&#x27;from history &lt;b&gt;&#x27;)" in response.text


def test_submitting_the_form_queues_a_run_and_redirects_to_it(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/runs/new", {"code": "print(1)"})
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == run.get_absolute_url()
    assert run.status == Run.Status.QUEUED and run.code == "print(1)"
    assert run.session_key == client.session.session_key
    assert DBTaskResult.objects.count() == 1


def test_submitting_with_htmx_returns_the_run_fragment(client):
    response = client.post("/runs/new", {"code": "print(1)"}, headers=HTMX)
    run = Run.objects.get()
    assert response.status_code == 201
    assert f'id="run-{run.public_id}"' in response.text
    assert re.search(r'hx-trigger="every \d+ms"', response.text)
    assert "<html" not in response.text
    # Reload, Back and sharing keep the result: the address becomes the run's.
    assert response["HX-Push-Url"] == run.get_absolute_url()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("", "There is no code to run."),
        ("   \n", "There is no code to run."),
        ("x" * 70_000, "the limit is 65,536 bytes"),
        ("print(1)\x00", "NUL bytes"),
    ],
)
def test_bad_code_is_refused_with_a_message_and_nothing_is_queued(client, code, message):
    response = client.post("/runs/new", {"code": code})
    assert response.status_code == 422
    assert message in response.text
    assert Run.objects.count() == 0


def test_bad_code_over_htmx_retargets_the_error_box(client):
    response = client.post("/runs/new", {"code": ""}, headers=HTMX)
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#result"
    assert "There is no code to run." in response.text


def test_the_code_is_kept_when_it_is_refused(client):
    response = client.post("/runs/new", {"code": "print(1)\x00"})
    assert "print(1)" in response.text


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/runs/new"),
        ("get", "/series/new"),
        ("get", "/compare/new"),
        ("post", "/compare/"),
        ("post", "/runs/"),
        ("post", "/runs.csv"),
        ("post", "/methodology/"),
    ],
)
def test_pages_refuse_the_wrong_method(client, method, url):
    assert getattr(client, method)(url).status_code == 405


@pytest.mark.parametrize("url", ["/", "/compare/", "/runs/", "/methodology/", "/healthz"])
def test_pages_answer_head_as_get_does_without_a_body(client, url):
    # Monitors and link checkers ask with HEAD: a 405 read as "the site is down".
    head = client.head(url)
    assert head.status_code == client.get(url).status_code == 200
    assert head.content == b""


def test_exports_refuse_posts(client):
    run = finished_run()
    assert client.post(f"/runs/{run.public_id}.json").status_code == 405
    series = Series.objects.submit(Series.Kind.REPEAT, ["print(1)"], 1)
    assert client.post(f"/series/{series.public_id}.json").status_code == 405
    assert client.post(f"/series/{series.public_id}/").status_code == 405
    assert client.post(f"/runs/{run.public_id}/").status_code == 405


# --- the run view ----------------------------------------------------------------


def test_run_page_shows_the_cards_and_provenance(client):
    run = finished_run()
    response = client.get(run.get_absolute_url())
    assert response.status_code == 200
    html = response.text
    assert "Succeeded" in html and "hi\n" in html
    assert 'data-metric="energy"' in html and "34 µWh" in html
    assert "No GPU" in html
    # The card and the provenance say what the CPU's power figure is, as stored.
    assert run.provenance["cpu"]["source"] in html.replace("&#x27;", "'")
    assert "estimate: 4 W per busy thread, CodeCarbon's default" in html.replace("&#x27;", "'")
    assert 'href="/methodology/"' in html
    assert "hx-trigger" not in html  # finished: no polling


def test_run_fragment_for_htmx_has_no_page_chrome(client):
    run = finished_run()
    response = client.get(run.get_absolute_url(), headers=HTMX)
    assert response.text.lstrip().startswith("<section")
    assert "<html" not in response.text


def since_of(html: str) -> str:
    return re.search(r"\?since=([0-9.]+)", html).group(1)


def test_a_running_run_polls_and_shows_its_progress(client):
    run, writer = running_run()
    writer.record("1\n2\n", "", [[0.5, 3.0]])
    response = client.get(run.get_absolute_url(), headers=HTMX)
    fresh = int(re.search(r'hx-trigger="every (\d+)ms"', response.text).group(1))
    assert "Running for" in response.text and "1\n2\n" in response.text
    # A young run is looked at often, then less: first output soon, few requests later.
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=30))
    response = client.get(run.get_absolute_url(), headers=HTMX)
    later = int(re.search(r'hx-trigger="every (\d+)ms"', response.text).group(1))
    assert fresh <= 200 < later


def test_a_poll_sends_only_what_its_viewer_has_not_seen(client):
    run, writer = running_run()
    url = run.get_absolute_url()
    seen = "line of output\n" * 14_000  # ~200 KB, near the output cap
    writer.record(seen, "", [[0.5, 3.0]])
    page = client.get(url, headers=HTMX)
    assert seen in page.text and since_of(page.text) == f"{len(seen)}.0"

    new = "new <b>é\n"
    writer.record(seen + new, "warning\n", [[0.5, 3.0], [1.0, 3.5]])
    poll = client.get(f"{url}?since={since_of(page.text)}", headers=HTMX)
    assert poll.status_code == 200 and "HX-Retarget" not in poll
    stdout = f'<span hx-swap-oob="beforeend:#run-{run.public_id}-stdout">new &lt;b&gt;é\n</span>'
    stderr = f'<span hx-swap-oob="beforeend:#run-{run.public_id}-stderr">warning\n</span>'
    assert stdout in poll.text and stderr in poll.text
    assert "line of output" not in poll.text  # what the viewer has is not sent again
    assert len(poll.content) < len(page.content) / 20
    assert "Running for" in poll.text and 'hx-swap-oob="true"' in poll.text  # header, cost
    assert since_of(poll.text) == f"{len(seen) + len(new)}.{len('warning\n')}"
    # The run's own row is not rewritten with its output while it runs.
    assert Run.objects.get(pk=run.pk).stdout == ""

    # Nothing new: nothing to append, and the same place to read from next time.
    again = client.get(f"{url}?since={since_of(poll.text)}", headers=HTMX)
    assert "beforeend" not in again.text and since_of(again.text) == since_of(poll.text)

    # Its end (here a failure of ours) gathers the output into its row, once; the
    # poller then gets the whole run, retargeted at the run's section.
    run.fail("The sandbox broke.")
    assert not run.output_chunks.exists()
    assert Run.objects.get(pk=run.pk).stdout == seen + new
    over = client.get(f"{url}?since={since_of(poll.text)}", headers=HTMX)
    assert over["HX-Retarget"] == f"#run-{run.public_id}" and over["HX-Reswap"] == "outerHTML"
    assert "The sandbox broke." in over.text and "new &lt;b&gt;é" in over.text
    assert "?since=" not in over.text  # over: nothing polls


@pytest.mark.parametrize(
    "since", ["", "x", "1", "1.2.3", "-1.0", "5.-1", "9" * 5000 + ".0", "1" + "0" * 30 + ".0"]
)
def test_a_poll_with_a_since_it_cannot_read_gets_the_whole_run(client, since):
    run, writer = running_run()
    writer.record("hello\n", "", [])
    poll = client.get(f"{run.get_absolute_url()}?since={since}", headers=HTMX)
    assert poll.status_code == 200 and "hello\n" in poll.text
    assert poll["HX-Retarget"] == f"#run-{run.public_id}"


def test_a_poll_from_past_the_end_of_the_output_gets_nothing_more(client):
    run, writer = running_run()
    writer.record("hello\n", "", [])
    poll = client.get(f"{run.get_absolute_url()}?since=999999999999.7", headers=HTMX)
    assert poll.status_code == 200 and "beforeend" not in poll.text


def test_user_text_is_escaped(client):
    run = finished_run(
        code="<script>alert(1)</script>",
        stdout="<img src=x onerror=alert(1)>",
        status="failed",
        stderr="</pre><script>bad()</script>",
        error="<b>boom</b>",
        exit_code=1,
    )
    html = client.get(run.get_absolute_url()).text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "<script>bad()" not in html and "<b>boom</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_unknown_run_is_404(client):
    assert client.get("/runs/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/runs/12/").status_code == 404


def test_rerun_queues_the_same_code_for_this_visitor(client):
    original = finished_run(code="print('again')")
    response = client.post(reverse("runs:rerun", args=[original.public_id]))
    again = Run.objects.exclude(pk=original.pk).get()
    assert response.status_code == 302 and response["Location"] == again.get_absolute_url()
    assert again.code == "print('again')" and again.status == Run.Status.QUEUED
    assert client.get(reverse("runs:rerun", args=[original.public_id])).status_code == 405


def test_rerun_over_htmx_redirects_the_browser(client):
    original = finished_run()
    response = client.post(reverse("runs:rerun", args=[original.public_id]), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/runs/")


# --- history -----------------------------------------------------------------------


def test_history_lists_only_this_visitors_runs_newest_first(client):
    key = session_key(client)
    mine_old = finished_run(session_key=key, code="print('old')")
    mine_new = finished_run(session_key=key, code="print('new')")
    finished_run(session_key="someone-else", code="print('theirs')")
    html = client.get("/runs/").text
    assert "print(&#x27;new&#x27;)" in html and "print(&#x27;old&#x27;)" in html
    assert "theirs" not in html
    assert html.index(str(mine_new.public_id)) < html.index(str(mine_old.public_id))


def test_history_pages_without_counting(client, django_assert_max_num_queries):
    key = session_key(client)
    for i in range(30):
        finished_run(session_key=key, code=f"print({i})")
    with django_assert_max_num_queries(3):
        first = client.get("/runs/")
    assert "Older →" in first.text and "print(29)" in first.text
    second = client.get("/runs/?page=2", headers=HTMX)
    assert "print(4)" in second.text and "print(29)" not in second.text
    assert "← Newer" in second.text and "Older →" not in second.text
    assert "<html" not in second.text
    assert client.get("/runs/?page=nonsense").status_code == 200


def test_history_is_empty_for_a_new_visitor(client):
    finished_run(session_key="someone-else")
    assert "No runs yet" in client.get("/runs/").text


def test_methodology_page(client, settings):
    response = client.get("/methodology/")
    assert response.status_code == 200
    assert "estimate" in response.text and "RAPL" in response.text
    first, every = sandbox.FIRST_TICK_SECONDS, settings.LIVE_SAMPLE_SECONDS
    sampling = f"first after {formatting.seconds(first)}, then every {formatting.seconds(every)}"
    assert sampling in response.text
    # The stopping rule, with the levels the code uses; the CPU constant CodeCarbon
    # assumes for an unknown model, from CodeCarbon.
    text = response.text
    assert "Run until clear." in text and "repeated</em> confidence interval" in text
    for looks, level in stats.NOMINAL_LEVELS.items():
        assert f"{looks} look{'s' if looks > 1 else ''}: {level:.4f}" in text
    assert f"default of {measure.codecarbon_default_watts_per_thread():g} W per thread" in text
    assert "CPU_WATTS_PER_THREAD" in text
    assert "Measured by the sandbox, not by your snippet." in text


def test_the_methodology_page_lists_every_part_in_its_contents(client):
    text = client.get("/methodology/").text
    parts = set(re.findall(r'<h2 id="([^"]+)"', text)) - {"toc-title"}
    listed = set(re.findall(r'<a href="#([^"]+)"', text.split('class="toc"')[1].split("</nav>")[0]))
    assert len(parts) > 10 and listed == parts


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


# --- hostile query strings -------------------------------------------------------------

ODD_VALUES = [
    "",
    "0",
    "-1",
    "1e9",
    "400000000000000000",
    "99999999999999999999999999999",
    "abc",
    "%00",
    "\x00",
    "💥",
    "' OR 1=1 --",
    "x" * 5000,
    str(uuid.uuid4()),
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=range(len(ODD_VALUES)))
def test_no_query_string_makes_a_page_fail(client, value):
    # Every view's parameters, with values a hostile client would send: a clear 4xx
    # or the page, never a server error.
    run = finished_run(session_key="x")
    series = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "print(2)"], 5)
    urls = [
        "/",
        "/runs/",
        "/runs.csv",
        "/compare/",
        "/methodology/",
        "/healthz",
        run.get_absolute_url(),
        f"/runs/{run.public_id}.json",
        series.get_absolute_url(),
        f"/series/{series.public_id}/",
        f"/series/{series.public_id}.json",
        f"/api/runs/{run.public_id}",
        f"/api/runs/{value or 'x'}",
    ]
    for url in urls:
        for name in ("page", "from", "section", "pairs", "grid"):
            for headers in ({}, HTMX):
                response = client.get(url, {name: value}, headers=headers)
                assert response.status_code < 500, (url, name, value, response.status_code)
    assert client.get("/runs/", {"page": "400000000000000000"}).status_code == 404


@pytest.mark.parametrize("since", ["x", "1", "-1.0", "1" + "0" * 30 + ".0"])
def test_the_api_refuses_a_since_it_cannot_read(client, since):
    run, writer = running_run()
    writer.record("hello\n", "", [])
    answer = client.get(f"/api/runs/{run.public_id}?since={since}")
    assert answer.status_code == 400 and "since" in answer.json()["error"]
    whole = client.get(f"/api/runs/{run.public_id}").json()
    assert whole["stdout"] == "hello\n" and whole["since"] == "6.0"


@pytest.mark.django_db
def test_compare_with_your_previous_run_fills_both_sides_from_the_two_runs():
    client = Client()
    for code, stdin in (("print('first')", ""), ("print('second', input())", "x\n")):
        client.post("/runs/new", {"code": code, "stdin": stdin})
    first, second = Run.objects.order_by("created_at")
    Run.objects.update(status=Run.Status.SUCCEEDED)
    page = client.get(second.get_absolute_url()).content.decode()
    link = f"/compare/?a={first.public_id}&amp;b={second.public_id}"
    assert f'href="{link}" data-compare-previous' in page
    # The first run has no run of this browser before it; a stranger's view, none at all.
    assert "data-compare-previous" not in client.get(first.get_absolute_url()).content.decode()
    assert "data-compare-previous" not in Client().get(second.get_absolute_url()).content.decode()
    form = client.get(link.replace("&amp;", "&")).content.decode()
    assert "print(&#x27;first&#x27;)</textarea>" in form
    assert "print(&#x27;second&#x27;, input())</textarea>" in form
    assert 'name="stdin_apart" id="stdin_apart" checked' in form  # their inputs differ


def test_the_short_id_a_title_shows_is_a_link_while_it_is_unambiguous(client):
    run = Run.objects.create(code="print(1)", timeout_s=5)
    series = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "print(2)"], 4)
    short = str(run.public_id)[:8]
    assert short in client.get(run.get_absolute_url()).text  # what the title shows
    assert client.get(f"/runs/{short}/")["Location"] == run.get_absolute_url()
    series_short = str(series.public_id)[:8]
    for prefix in ("compare", "series"):
        answer = client.get(f"/{prefix}/{series_short}/")
        assert answer.status_code == 302 and answer["Location"] == series.get_absolute_url()
    # Another run whose id starts the same: the short id no longer says which, and a
    # digit more does.
    other = "0" if run.public_id.hex[8] != "0" else "1"
    twin = Run.objects.create(
        code="print(2)", timeout_s=5, public_id=uuid.UUID(short + other + "0" * 23)
    )
    assert client.get(f"/runs/{short}/").status_code == 404
    assert client.get(f"/runs/{short}{other}/")["Location"] == twin.get_absolute_url()
    unused = next(c for c in "0123456789abcdef" if c not in (other, run.public_id.hex[8]))
    assert client.get(f"/runs/{short}{unused}/").status_code == 404

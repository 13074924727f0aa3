"""The playground and a run's page: the form, its refusals, htmx fragments, polls,
re-runs, and pages that answer only the methods they serve."""

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs.models import Run, Series
from runs.sandbox import environments
from runs.snippets import examples

from .conftest import HTMX
from .factories import finished_run, running_run

pytestmark = pytest.mark.django_db


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


def test_a_starter_opens_a_prefilled_comparison_in_the_environments_it_names(client):
    page = client.get("/").text
    for starter in examples.COMPARISONS:
        assert f'data-href="/compare/?example={starter["slug"]}"' in page
        compare = client.get("/compare/", {"example": starter["slug"]}).text
        assert "data-from-example" in compare and "data-code-from-server" in compare
        for side in "ab":
            assert html.escape(starter[f"code_{side}"]).split("\n")[0] in compare
        default = environments.default().name
        others = [env.name for env in environments.available() if env.name != default]
        env_b = others[0] if starter["other_env"] and others else default
        chosen = re.findall(r"<option value=\"([^\"]+)\" data-summary=\"[^\"]*\" selected", compare)
        assert chosen[:2] == [default, env_b], chosen
    assert "data-from-example" not in client.get("/compare/", {"example": "nope"}).text

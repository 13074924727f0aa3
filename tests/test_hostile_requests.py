"""Query strings and ids a hostile or careless client sends: no page fails on them."""

import uuid

import pytest
from django.test import Client

from runs.models import Run, Series

from .conftest import HTMX
from .factories import finished_run, running_run

pytestmark = pytest.mark.django_db


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

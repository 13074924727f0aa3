"""A visitor's history, and the methodology page."""

import re

import pytest

from runs import sandbox
from runs.figures import cpu_power, formatting, stats

from .conftest import HTMX, session_key
from .factories import finished_run

pytestmark = pytest.mark.django_db


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
    # The published power model, from the project's data file: every row, its source
    # and the range its load curve gives.
    published = cpu_power.published_table()
    for row in published["microarchitectures"]:
        assert f'<th scope="row">{row["name"]}</th><td class="num">{row["idle_w"]}</td>' in text
    assert published["model_url"] in text and published["model_licence"] in text
    for point in published["load_curve"]:
        assert f"{point['load']}% load draws {point['tdp']}" in text
    assert f"{published['low']:.2f} × the figure" in text
    assert f"{published['high']:.2f} × the figure" in text
    assert "CPU_WATTS_PER_THREAD" in text
    assert "Measured by the sandbox, not by your snippet." in text


def test_the_methodology_page_lists_every_part_in_its_contents(client):
    text = client.get("/methodology/").text
    parts = set(re.findall(r'<h2 id="([^"]+)"', text)) - {"toc-title"}
    listed = set(re.findall(r'<a href="#([^"]+)"', text.split('class="toc"')[1].split("</nav>")[0]))
    assert len(parts) > 10 and listed == parts

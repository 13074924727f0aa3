"""Share: a short link that names one run or series, and an embed any site may frame."""

import base64
import html
import re
import urllib.parse
import uuid

import pytest
from django.conf import settings

from runs import pages
from runs.models import Run, Series
from runs.models.links import SHORT_LENGTHS

from .factories import finished_run, running_run

pytestmark = pytest.mark.django_db


def shared(page: str) -> dict[str, str]:
    """The link and the embed code a page's Share offers."""
    value = re.search(r'value="([^"]+)"[^>]*readonly data-share-link', page)
    embed = re.search(r"data-share-embed>([^<]*)</textarea>", page)
    assert value and embed
    return {"link": html.unescape(value.group(1)), "embed": html.unescape(embed.group(1))}


def test_a_finished_run_shares_a_short_link_that_leads_to_it(client):
    run = finished_run()
    share = shared(client.get(run.get_absolute_url()).text)
    short = run.public_id.hex[: SHORT_LENGTHS[0]]
    assert share["link"] == f"http://testserver/runs/{short}/"
    assert client.get(share["link"])["Location"] == run.get_absolute_url()


def test_a_runs_link_with_the_code_carries_its_code_environment_and_input(client):
    run = finished_run(code="name = input()\nprint('hé', name)\n", stdin="Ada\n")
    link = re.search(
        r'value="([^"]+)"[^>]*readonly data-share-code', client.get(run.get_absolute_url()).text
    )
    playground, fragment = html.unescape(link.group(1)).split("#")
    assert playground == "http://testserver/"
    fields = {
        name: base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        for name, value in urllib.parse.parse_qsl(fragment)
    }
    assert fields == {"code": run.code, "env": run.env_name, "stdin": "Ada\n"}
    assert Run.objects.count() == 1  # a link stores nothing: the playground reads it


def test_a_short_link_grows_until_it_names_one_run(client):
    run = finished_run()
    first = run.public_id.hex[: SHORT_LENGTHS[0]]
    other = "0" if run.public_id.hex[SHORT_LENGTHS[0]] != "0" else "1"
    finished_run(public_id=uuid.UUID(first + other + "0" * (31 - len(first))))
    link = shared(client.get(run.get_absolute_url()).text)["link"]
    assert link == f"http://testserver/runs/{run.public_id.hex[: SHORT_LENGTHS[1]]}/"
    assert client.get(link)["Location"] == run.get_absolute_url()


def test_a_running_run_offers_no_share_yet(client):
    run, _ = running_run()  # its page re-renders as it runs: Share comes at its end
    page = client.get(run.get_absolute_url()).text
    assert 'data-status="running"' in page and "data-share" not in page


def test_a_finished_comparison_shares_its_short_link_and_embed(client):
    series = Series.objects.submit(Series.Kind.COMPARE, ["print(1)", "print(2)"], 2)
    for number, run in enumerate(series.ordered_runs()):
        Run.objects.filter(pk=run.pk).update(
            **{k: v for k, v in vars(finished_run()).items() if k in FIGURES}, energy_kwh=number
        )
    series.finished_at = series.created_at
    series.save()
    share = shared(client.get(series.get_absolute_url()).text)
    assert share["link"] == f"http://testserver/compare/{series.public_id.hex[:8]}/"
    assert client.get(share["link"])["Location"] == series.get_absolute_url()
    assert f'src="http://testserver{series.embed_url()}"' in share["embed"]
    embed = client.get(series.embed_url())
    assert embed.status_code == 200
    assert "print(1)" in embed.text and "print(2)" in embed.text


FIGURES = {
    "status",
    "started_at",
    "finished_at",
    "exit_code",
    "duration_s",
    "cpu_seconds",
    "cpu_energy_kwh",
    "ram_energy_kwh",
    "emissions_g",
    "carbon_intensity_g_per_kwh",
    "provenance",
}


def test_an_embed_may_be_framed_by_any_site_and_no_other_page_may(client):
    run = finished_run(code="total = sum(range(10))\nprint(total)\n")
    share = shared(client.get(run.get_absolute_url()).text)
    src = re.search(r'src="([^"]+)"', share["embed"]).group(1)
    assert src == f"http://testserver{run.embed_url()}"
    assert f'width="{pages.EMBED_WIDTH}" height="{pages.EMBED_HEIGHT}"' in share["embed"]
    embed = client.get(src)
    assert embed.status_code == 200
    assert "X-Frame-Options" not in embed
    policy = embed["Content-Security-Policy"]
    assert "frame-ancestors *" in policy
    # The rest of the page's policy is the site's: no script, no inline script.
    assert f"script-src {' '.join(settings.SECURE_CSP['script-src'])}" in policy
    assert "<script" not in embed.text and "<form" not in embed.text
    assert "total = sum(range(10))" in embed.text
    assert 'data-metric="energy"' in embed.text
    page = client.get(run.get_absolute_url())
    assert page["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page["Content-Security-Policy"]


def test_an_embed_of_a_run_or_series_that_is_not_there_is_a_404(client):
    assert client.get(f"/runs/{uuid.uuid4()}/embed").status_code == 404
    assert client.get(f"/series/{uuid.uuid4()}/embed").status_code == 404
    assert client.post(finished_run().embed_url()).status_code == 405

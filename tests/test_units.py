"""One rule picks a figure's unit (1–3 digits before the point where it can), and the
same figure reads the same on its page, in the admin, in runsnippet's summary and in
the history."""

import re

import pytest

from runs.admin import RunAdmin
from runs.figures import formatting
from runs.models import Run

from .conftest import session_key
from .factories import finished_run

pytestmark = pytest.mark.django_db


def shown(html: str, metric: str) -> str:
    """A card's figure as the page shows it, without its range."""
    found = re.search(rf'data-metric="{metric}">([^<]*)', html)
    assert found, metric
    return found.group(1).strip()


@pytest.mark.parametrize("kwh", [7.24e-10, 7.24e-9, 3.98e-9, 7.24e-7, 2.5e-5])
def test_a_figure_reads_the_same_on_its_page_in_admin_and_in_the_terminal(client, kwh):
    run = finished_run(
        energy_kwh=kwh,
        cpu_energy_kwh=kwh * 0.99,
        ram_energy_kwh=kwh * 0.01,
        machine_energy_kwh=kwh * 40,  # the whole machine: far more, in a unit of its own
        emissions_g=kwh * 713.4,
        duration_s=0.0101,
        cpu_seconds=0.0099,
        session_key=session_key(client),
    )
    html = client.get(run.get_absolute_url()).text
    energy, co2 = shown(html, "energy"), shown(html, "co2")
    # The rule: its own unit, 1 to 3 digits before the point.
    assert re.fullmatch(r"[1-9]\d{0,2}(\.\d+)? [nµm]?Wh", energy), energy
    assert energy == formatting.watt_hours(kwh)
    assert co2 == formatting.mass(run.emissions_g)
    # The same text in the admin, in runsnippet's summary, and in the history.
    admin = RunAdmin(Run, None)
    assert admin.energy(run).startswith(energy + " (")
    assert admin.co2(run).startswith(co2)
    summary = "\n".join(formatting.summary_lines(run))
    assert f"snippet energy    {energy} (" in summary and f"emissions         {co2}" in summary
    history = client.get("/runs/").text
    assert energy in history
    # A duration alone and its card agree: "10.1 ms", not "10 ms" beside it.
    assert shown(html, "duration") == formatting.seconds(0.0101) == "10.1 ms"

"""Which CPU a host has, what prices one busy thread of it where no counter says, and
the range every estimate carries (runs.figures.cpu_power, runs.figures.measure).

Expected values come from the project's data file (cpu_power.toml) and CodeCarbon's
own table, never from this machine: the same tests pass on any host."""

import tomllib

import pytest

from runs.figures import comparisons, cpu_power, measure, stats
from runs.figures.comparisons import Measured

from .factories import finished_run

DATA = tomllib.loads(cpu_power.DATA.read_text())
CCF = DATA["ccf"]

# /proc/cpuinfo as Linux writes it: what matters of each processor, as on real hosts.
CASCADE_LAKE = """processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 85
model name	: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
stepping	: 7

processor	: 1
vendor_id	: AuthenticAMD
"""
# A cloud VM's generic string: the name says nothing, the numbers say Genoa.
GENERIC_EPYC = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 17
model name	: AMD EPYC
stepping	: 1
"""
GRAVITON2 = """processor	: 0
BogoMIPS	: 243.75
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
CPU revision	: 1
"""
UNKNOWN = """processor	: 0
vendor_id	: HygonGenuine
cpu family	: 24
model		: 1
model name	: Hygon C86 7185 32-core Processor
stepping	: 1
"""


def generation_row(name: str) -> dict:
    return next(row for row in DATA["generation"] if row["name"] == name)


def test_a_processor_is_named_by_its_numbers_and_priced_by_its_row():
    identity = cpu_power.identify(CASCADE_LAKE)
    assert identity == cpu_power.Identity(
        "GenuineIntel", 6, 85, 7, "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"
    )
    row = generation_row("Intel Xeon Scalable 2nd Gen (Cascade Lake)")
    assert cpu_power.generation_of(identity) == row["name"]
    published = cpu_power.published(identity)
    figures = CCF["microarchitectures"][row["ccf"]]
    assert (published.watts, published.idle_watts) == (figures["max_w"], figures["min_w"])
    assert published.microarchitecture == row["ccf"]
    assert row["ccf"] in published.sentence() and CCF["name"] in published.sentence()
    assert identity.described() == f"{row['name']} (GenuineIntel family 6, model 85, stepping 7)"


def test_the_stepping_tells_apart_generations_that_share_a_model_number():
    skylake = cpu_power.identify(CASCADE_LAKE.replace("stepping\t: 7", "stepping\t: 4"))
    assert cpu_power.generation_of(skylake) == "Intel Xeon Scalable 1st Gen (Skylake)"
    expected = CCF["microarchitectures"][generation_row(cpu_power.generation_of(skylake))["ccf"]]
    assert cpu_power.published(skylake).watts == expected["max_w"]


def test_a_generic_model_string_is_named_by_family_and_model():
    identity = cpu_power.identify(GENERIC_EPYC)
    assert identity.name == "AMD EPYC" and (identity.family, identity.model) == (25, 17)
    row = generation_row("AMD EPYC 4th Gen (Genoa, Zen 4)")
    assert cpu_power.generation_of(identity) == row["name"]
    # The published model has no figures for this generation: its own average prices it.
    assert "ccf" not in row
    published = cpu_power.published(identity)
    assert published.watts == CCF["average"]["max_w"] and published.microarchitecture is None
    assert "has no figures for" in published.sentence()


def test_an_arm_processor_is_named_by_its_part_number():
    identity = cpu_power.identify(GRAVITON2)
    assert (identity.vendor, identity.family, identity.model) == ("ARM", 8, 0xD0C)
    row = generation_row("Arm Neoverse N1 (AWS Graviton2)")
    assert cpu_power.published(identity).watts == CCF["microarchitectures"][row["ccf"]]["max_w"]


@pytest.mark.parametrize("text", [UNKNOWN, "", "garbage without colons\n"])
def test_an_unknown_processor_gets_the_published_average_and_says_so(text):
    identity = cpu_power.identify(text)
    assert cpu_power.generation_of(identity) is None
    published = cpu_power.published(identity)
    assert (published.watts, published.idle_watts) == (
        CCF["average"]["max_w"],
        CCF["average"]["min_w"],
    )
    assert "a generation not in our table" in identity.described()


def codecarbon_known_model() -> str:
    """A CPU model CodeCarbon's own table prices (read from it, as it ships)."""
    from codecarbon.input import DataSource

    names = DataSource().get_cpu_power_data()["Name"]
    return next(name for name in names if "Xeon" in name)


def test_the_source_of_a_threads_power_follows_its_order(settings):
    settings.CPU_WATTS_PER_THREAD = 0.0
    known, generic = codecarbon_known_model(), "Intel(R) Xeon(R) Processor"
    identity = cpu_power.identify(CASCADE_LAKE)
    # A counter first: nothing is forced on CodeCarbon, which would switch it off.
    assert measure.power_source("intel_rapl", generic) == measure.POWER_COUNTER
    assert measure.forced_cpu_watts(True, generic, identity, 8) is None
    # CodeCarbon's TDP table where it knows the model.
    assert measure.power_source("cpu_load", known) == measure.POWER_TABLE
    assert measure.forced_cpu_watts(False, known, identity, 8) is None
    # Otherwise the published model, for the whole CPU as CodeCarbon takes it.
    assert measure.power_source("cpu_load", generic) == measure.POWER_PUBLISHED
    watts = cpu_power.published(identity).watts
    assert measure.forced_cpu_watts(False, generic, identity, 8) == pytest.approx(watts * 8)


def test_the_operators_figure_wins_over_any_table(settings):
    settings.CPU_WATTS_PER_THREAD = 2.5
    identity = cpu_power.identify(CASCADE_LAKE)
    for model in (codecarbon_known_model(), "Intel(R) Xeon(R) Processor"):
        assert measure.power_source("cpu_load", model) == measure.POWER_OPERATOR
        assert measure.forced_cpu_watts(False, model, identity, 4) == pytest.approx(10.0)


def test_the_range_is_the_load_curves_first_and_last_slopes():
    points = DATA["load_curve"]["points"]
    full = points[-1][1]
    (l0, p0), (l1, p1) = points[0], points[1]
    (lm, pm), (ln, pn) = points[-2], points[-1]
    low, high = cpu_power.range_factors()
    assert low == pytest.approx((pn - pm) / (ln - lm) * 100 / full)
    assert high == pytest.approx((p1 - p0) / (l1 - l0) * 100 / full)
    assert low < 1 < high  # the figure it bounds lies within


WATTS = 3.5  # the per-thread figure the runs below were priced at


def estimated_run(cpu: dict | None = None, **fields):
    """A run priced at WATTS per busy thread, with the range the load curve gives:
    0.2 s of CPU, 2e-7 kWh of CPU energy, 5e-8 of RAM, on a 700 g/kWh grid."""
    low, high = cpu_power.range_factors()
    estimate = {
        "method": "estimate",
        "watts_per_thread": WATTS,
        "range_w": [WATTS * low, WATTS * high],
        "power": f"{WATTS} W per busy thread",
    }
    values = {
        "cpu_seconds": 0.2,
        "energy_kwh": 2.5e-7,
        "cpu_energy_kwh": 2e-7,
        "ram_energy_kwh": 5e-8,
        "emissions_g": 2.5e-7 * 700,
        "carbon_intensity_g_per_kwh": 700,
        "provenance": {
            "cpu": estimate | (cpu or {}),
            "ram": {"method": "estimate", "source": "RAM"},
            "gpu": {"method": "none", "source": "no GPU"},
        },
    }
    return finished_run(**values | fields)


@pytest.mark.django_db
def test_every_estimated_figure_of_a_run_carries_the_range():
    low, high = cpu_power.range_factors()
    run = estimated_run(
        duration_s=0.25,
        sections=[
            {
                "name": "s",
                "calls": 1,
                "duration_s": 0.1,
                "cpu_seconds": 0.1,
                "energy_kwh": 1.1e-7,
                "share": 0.44,
            }
        ],
    )
    # Only the CPU part moves; RAM's constant stays.
    assert run.energy_range == pytest.approx((5e-8 + 2e-7 * low, 5e-8 + 2e-7 * high))
    assert run.emissions_range == pytest.approx(tuple(v * 700 for v in run.energy_range))
    # A section's CPU part is its share of the CPU energy by CPU time.
    section_cpu = 2e-7 * 0.1 / 0.2
    assert run.range_of(run.sections[0]) == pytest.approx(
        (1.1e-7 - section_cpu + section_cpu * low, 1.1e-7 - section_cpu + section_cpu * high)
    )
    # A counter's figure has no model range.
    run.provenance = {"cpu": {"method": "measured", "watts_per_thread": 3.5}}
    assert run.energy_range is None and run.emissions_range is None


def test_a_median_carries_the_medians_of_its_runs_ranges():
    low, high = cpu_power.range_factors()
    energies = [1e-6, 1.2e-6, 0.9e-6]
    measured = {
        n: Measured(e, None, 0.1, e * 500, 0.1, 0.1, (e * low, e * high))
        for n, e in enumerate(energies, start=1)
    }
    side = comparisons.side(measured, runs=[], succeeded=3, failed=0, ended_badly=set(), counted=3)
    assert side.energy_range == pytest.approx((1e-6 * low, 1e-6 * high))
    assert side.emissions_range == pytest.approx((1e-6 * low * 500, 1e-6 * high * 500))
    # One run without a range (a counter measured it): the median has none.
    measured[2] = measured[2]._replace(energy_range=None)
    assert (
        comparisons.side(
            measured, runs=[], succeeded=3, failed=0, ended_badly=set(), counted=3
        ).energy_range
        is None
    )


def test_a_verdict_is_the_same_whatever_prices_a_thread():
    """A comparison's sides run on one host priced by one model: a different model
    (any factor, e.g. CodeCarbon's flat guess against the published figure) scales A
    and B alike, and the verdict does not move."""
    a = [1.00e-6, 1.01e-6, 0.99e-6, 1.02e-6, 0.98e-6, 1.0e-6]
    b = [0.80e-6, 0.82e-6, 0.79e-6, 0.81e-6, 0.80e-6, 0.83e-6]

    def verdict(factor: float) -> stats.Comparison | None:
        variants = {
            name: comparisons.side(
                {
                    n: Measured(e * factor, None, 0.1, e * factor * 700, 0.1, 0.1)
                    for n, e in enumerate(values, start=1)
                },
                runs=[],
                succeeded=len(values),
                failed=0,
                ended_badly=set(),
                counted=6,
            )
            for name, values in (("A", a), ("B", b))
        }
        results = comparisons.Results(("A", "B"), variants, 12, 12, True)
        comparisons.compare(results, 6, 6)
        assert results.decision is not None
        return results.decision.comparison

    published = cpu_power.published(cpu_power.UNKNOWN).watts
    from codecarbon.core.cpu import DEFAULT_POWER_PER_CORE

    base = verdict(1.0)
    for factor in (DEFAULT_POWER_PER_CORE / published, *cpu_power.range_factors()):
        other = verdict(factor)
        assert base is not None and other is not None
        assert other.change == pytest.approx(base.change)
        assert (other.low, other.high) == pytest.approx((base.low, base.high))
        assert other.significant == base.significant


@pytest.mark.django_db
def test_the_range_reaches_the_page_the_api_the_export_and_the_terminal(client):
    from runs.figures import formatting

    run = estimated_run(
        {
            "source": "CPU time × 3.5 W per busy thread",
            "power": "3.5 W per busy thread, from Cloud Carbon Footprint",
            "identity": cpu_power.identify(GENERIC_EPYC).as_dict(),
        },
        machine_energy_kwh=4e-6,  # the whole machine's, priced by the same model
        machine_cpu_energy_kwh=3e-6,
        machine_ram_energy_kwh=1e-6,
    )
    low, high = cpu_power.range_factors()
    assert run.machine_range == pytest.approx((1e-6 + 3e-6 * low, 1e-6 + 3e-6 * high))
    energy_unit = formatting.Unit.fitting([run.energy_kwh], formatting.ENERGY_UNITS)
    machine_unit = formatting.Unit.fitting([run.machine_energy_kwh], formatting.ENERGY_UNITS)
    html = client.get(run.get_absolute_url()).text
    assert f'data-metric="energy-range">{energy_unit.range(run.energy_range)}<' in html
    machine_range = machine_unit.range(run.machine_range)
    assert f'data-metric="machine-energy-range">{machine_range}<' in html
    assert 'data-metric="co2-range">(' in html
    assert cpu_power.identify(GENERIC_EPYC).described() in html  # the processor, named
    assert "Quote the snippet's energy" in html and 'data-metric="equivalents-range"' in html

    data = client.get(f"/api/runs/{run.public_id}").json()
    assert data["energy_kwh_range"] == pytest.approx(list(run.energy_range))
    assert data["emissions_g_range"] == pytest.approx(list(run.emissions_range))
    assert data["machine_energy_kwh_range"] == pytest.approx(list(run.machine_range))

    header = b"".join(client.get("/runs.csv").streaming_content).decode().splitlines()[0]
    assert "energy_consumed_low,energy_consumed_high,emissions_low,emissions_high" in header

    summary = "\n".join(formatting.summary_lines(run))
    assert formatting.ranged(run.energy_range, formatting.ENERGY_UNITS) in summary
    assert formatting.ranged(run.machine_range, formatting.ENERGY_UNITS) in summary

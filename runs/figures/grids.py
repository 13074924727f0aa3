"""The grids a run can be priced at: every country (and region) CodeCarbon has carbon
data for, their intensity, and the same energy priced at other grids. CodeCarbon's
offline data only: no tracker, no hardware."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, NamedTuple

import pycountry


@functools.cache
def countries() -> dict[str, str]:
    """3-letter ISO code -> country name, for every country CodeCarbon has data for
    (loading CodeCarbon's data takes ~0.5 s: once per process, see playground.wsgi)."""
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    return {code: row["country_name"] for code, row in mix.items()}


class Grid(NamedTuple):
    """An electricity grid CodeCarbon has carbon data for: a country, or a region of one."""

    country: str
    region: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.country}/{self.region}" if self.region else self.country


def _regions() -> dict[str, list[tuple[str, str]]]:
    """Country code -> [(region as CodeCarbon reads it, its name)] for regional data."""
    from codecarbon.input import DataSource

    source = DataSource()
    usa = source.get_country_emissions_data("usa")
    canada = source.get_country_energy_mix_data("can")
    china = source.get_china_provincial_emissions_data()["data"]
    return {
        "USA": [(r, r.title()) for r in sorted(usa) if not r.startswith("_")],
        "CAN": [(r, r.title()) for r in sorted(canada)],
        "CHN": sorted((p["names"][0], p["description"]) for p in china.values()),
        "NOR": [(r.lower(), r) for r in ("NO1", "NO2", "NO3", "NO4", "NO5")],
        "SWE": [(r.lower(), r) for r in ("SE1", "SE2", "SE3", "SE4")],
    }


@functools.cache
def grids() -> dict[str, Grid]:
    """Every grid a run can be priced at, by key ("FRA", "USA/california"), by name."""
    every = {}
    regions = _regions()
    for code, name in sorted(countries().items(), key=lambda item: item[1]):
        every[code] = Grid(code, "", name)
        for region, region_name in regions.get(code, []):
            grid = Grid(code, region, f"{name} — {region_name}")
            every[grid.key] = grid
    return every


def grid_of(country: str, region: str = "") -> Grid:
    """The grid a run was priced at, named (an unknown one keeps its codes as its name)."""
    key = f"{country}/{region}" if region else country
    return grids().get(key) or Grid(country, region, key)


@functools.cache
def _zone_countries() -> dict[str, str]:
    """IANA time zone -> the ISO 3166 alpha-2 code of its country, from the tz database
    (the tzdata package): zone.tab for each zone's country, tzdata.zi's links for the
    old names browsers still give ("Asia/Calcutta" for "Asia/Kolkata")."""
    data = resources.files("tzdata").joinpath("zoneinfo")
    zones = {}
    for line in data.joinpath("zone.tab").read_text().splitlines():
        if line and not line.startswith("#"):
            alpha2, _, zone = line.split("\t")[:3]
            zones[zone] = alpha2
    for line in data.joinpath("tzdata.zi").read_text().splitlines():
        if line.startswith("L "):
            _, target, alias = line.split()
            if target in zones:
                zones.setdefault(alias, zones[target])
    return zones


def for_time_zone(zone: str) -> Grid | None:
    """The grid of the country a time zone lies in (None: a zone of no one country, such
    as UTC, or a country CodeCarbon has no data for)."""
    alpha2 = _zone_countries().get(zone)
    country = pycountry.countries.get(alpha_2=alpha2) if alpha2 else None
    return grids().get(country.alpha_3) if country else None


WHAT_IF_COUNTRIES = [
    "SWE", "FRA", "NOR", "BRA", "CAN", "GBR", "ESP", "DEU",
    "USA", "JPN", "CHN", "IND", "AUS", "ZAF", "POL",
]  # fmt: skip


@functools.cache
def intensity_for(country: str, region: str = "") -> float:
    """Grid carbon intensity (g CO₂e/kWh) from CodeCarbon's offline data, no tracker."""
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    name = countries().get(country)
    geo = GeoMetadata(country_iso_code=country, country_name=name, region=region or None)
    emissions = Emissions(DataSource())
    return emissions.get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo) * 1000


def what_if(energy_kwh: float, country: str, region: str = "") -> list[dict[str, Any]]:
    """The same energy priced at other grids, cleanest first; the run's own is marked."""
    names = countries()
    rows: list[dict[str, Any]] = []
    for code in dict.fromkeys([*WHAT_IF_COUNTRIES, country]):
        own = code == country
        intensity = intensity_for(code, region if own else "")
        rows.append(
            {
                "country": code,
                "name": names.get(code, code) + (f" ({region})" if own and region else ""),
                "intensity": intensity,
                "emissions_g": energy_kwh * intensity,
                "own": own,
            }
        )
    rows.sort(key=lambda row: row["intensity"])
    highest = max(row["intensity"] for row in rows) or 1
    for row in rows:
        row["width"] = round(100 * row["intensity"] / highest, 1)
    return rows

"""Everyday equivalents that make tiny energy and CO₂ figures tangible.

Each constant names its source; the methodology page lists them for users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .formatting import ENERGY_UNITS, KWH_IN_J, MASS_UNITS, scaled, significant


@dataclass(frozen=True)
class Constant:
    key: str
    value: float
    unit: str
    description: str
    source: str
    url: str


CAR_G_PER_KM = Constant(
    "car",
    400 / 1.609344,  # 400 g CO₂ per mile
    "g CO₂/km",
    "a typical passenger car",
    "US EPA, Greenhouse Gas Emissions from a Typical Passenger Vehicle (400 g CO₂ per mile)",
    "https://www.epa.gov/greenvehicles/greenhouse-gas-emissions-typical-passenger-vehicle",
)
PHONE_CHARGE_KWH = Constant(
    "phone",
    0.0124,
    "kWh per charge",
    "fully charging a smartphone",
    "US EPA, Greenhouse Gas Equivalencies Calculator — calculations and references "
    "(0.0124 kWh per smartphone charge)",
    "https://www.epa.gov/energy/greenhouse-gas-equivalencies-calculator-calculations-and-references",
)
LED_WATTS = Constant(
    "led",
    10.0,
    "W",
    "a 10 W LED bulb (about 800 lumens, a 60 W incandescent's light)",
    "US DOE, LED lighting: typical 60 W-equivalent LED bulbs draw 8–12 W",
    "https://www.energy.gov/energysaver/led-lighting",
)
KETTLE_KWH = Constant(
    "kettle",
    4186 * 1.0 * 80 / KWH_IN_J,  # heat 1 kg of water by 80 K, no losses
    "kWh",
    "boiling 1 litre of water from 20 °C (heat only, no losses)",
    "Physics: specific heat of water 4,186 J/(kg·K) × 1 kg × 80 K = 335 kJ",
    "https://en.wikipedia.org/wiki/Specific_heat_capacity",
)
CONSTANTS = [CAR_G_PER_KM, PHONE_CHARGE_KWH, LED_WATTS, KETTLE_KWH]


def _distance(km: float) -> str:
    return scaled(km, [(1, "km"), (1e-3, "m"), (1e-5, "cm"), (1e-6, "mm"), (1e-9, "µm")])


def _duration(seconds: float) -> str:
    return scaled(seconds, [(3600, "h"), (60, "min"), (1, "s"), (1e-3, "ms"), (1e-6, "µs")])


def _count(value: float, one: str, many: str, part_of: str) -> str:
    """'3.2 litres of water', '1 litre of water', '45% of a litre of water'."""
    if value >= 1:
        number = significant(value)
        return f"{number} {one if number == '1' else many}"
    return f"{significant(value * 100)}% of {part_of}"


# How many runs the equivalents describe: the fewest (one, a thousand, a million, a
# billion) at which they read as everyday sentences, "102 phone charges" and "3.6 km",
# not "0.102 millionths of a charge" and "3.64 µm". The rule: enough runs to charge a
# phone once.
SCALES = [(1, "one run"), (1_000, "1,000 runs"), (1_000_000, "1 million runs")]
SCALES.append((1_000_000_000, "1 billion runs"))


@dataclass(frozen=True)
class Everyday:
    runs: int
    runs_text: str
    energy: str
    emissions: str
    items: list[dict[str, Any]]
    # How much more or less each could be, by the power model's range ("" if measured).
    range_note: str = ""


def scale_for(energy_kwh: float) -> tuple[int, str]:
    for runs, text in SCALES:
        if energy_kwh * runs >= PHONE_CHARGE_KWH.value:
            return runs, text
    return SCALES[-1]


def for_figures(
    energy_kwh: float | None,
    emissions_g: float | None,
    energy_range: tuple[float, float] | None = None,
) -> Everyday | None:
    """The figures in everyday terms, at the scale where they read naturally (None for
    a run without them); `energy_range`, the power model's, carries into each."""
    if not energy_kwh or emissions_g is None:
        return None
    range_note = ""
    if energy_range:
        low, high = (significant(value / energy_kwh, 2) for value in energy_range)
        range_note = f"Each could be from {low} to {high} times as much: the power model's range."
    runs, runs_text = scale_for(energy_kwh)
    kwh, grams = energy_kwh * runs, emissions_g * runs
    items = [
        {
            "key": "phone",
            "text": _count(
                kwh / PHONE_CHARGE_KWH.value,
                "full charge of a smartphone",
                "full charges of a smartphone",
                "a smartphone's full charge",
            ),
        },
        {
            "key": "car",
            "text": f"the CO₂ of driving {_distance(grams / CAR_G_PER_KM.value)} in "
            f"{CAR_G_PER_KM.description}",
        },
        {
            "key": "led",
            "text": f"{LED_WATTS.description.split(' (')[0]} lit for "
            f"{_duration(kwh * KWH_IN_J / LED_WATTS.value)}",
        },
        {
            "key": "kettle",
            "text": "boiling "
            + _count(kwh / KETTLE_KWH.value, "litre", "litres", "a litre")
            + " of water from 20 °C (heat only, no losses)",
        },
    ]
    return Everyday(
        runs=runs,
        runs_text=runs_text,
        energy=scaled(kwh, ENERGY_UNITS),
        emissions=scaled(grams, MASS_UNITS),
        items=items,
        range_note=range_note,
    )

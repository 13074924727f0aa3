"""Everyday equivalents that make tiny energy and CO₂ figures tangible.

Each constant names its source; the methodology page lists them for users.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _share(fraction: float) -> str:
    if fraction >= 1:
        return f"{significant(fraction)}×"
    if fraction >= 1e-4:
        return f"{significant(fraction * 100)}%"
    return f"{significant(fraction * 1e6)} millionths"


def for_figures(energy_kwh: float | None, emissions_g: float | None) -> list[dict]:
    """[{'text', 'key'}] describing the figures in everyday terms."""
    if not energy_kwh or emissions_g is None:
        return []
    joules = energy_kwh * KWH_IN_J
    return [
        {
            "key": "car",
            "text": f"the CO₂ of driving {_distance(emissions_g / CAR_G_PER_KM.value)} "
            f"in {CAR_G_PER_KM.description}",
        },
        {
            "key": "phone",
            "text": f"{_share(energy_kwh / PHONE_CHARGE_KWH.value)} of "
            f"{PHONE_CHARGE_KWH.description}",
        },
        {
            "key": "led",
            "text": f"{LED_WATTS.description.split(' (')[0]} lit for "
            f"{_duration(joules / LED_WATTS.value)}",
        },
        {
            "key": "kettle",
            "text": f"{_share(energy_kwh / KETTLE_KWH.value)} of {KETTLE_KWH.description}",
        },
    ]


AT_SCALE_RUNS = 1_000_000


def at_scale(energy_kwh: float | None, emissions_g: float | None) -> str:
    """What the run would cost repeated AT_SCALE_RUNS times (a job in production, a test
    suite on every commit), in the same everyday terms."""
    if not energy_kwh or emissions_g is None:
        return ""
    kwh, grams = energy_kwh * AT_SCALE_RUNS, emissions_g * AT_SCALE_RUNS
    return (
        f"{scaled(kwh, ENERGY_UNITS)} and {scaled(grams, MASS_UNITS)} CO₂e: "
        f"{_count(kwh / PHONE_CHARGE_KWH.value)} phone charges, or driving "
        f"{_distance(grams / CAR_G_PER_KM.value)} in {CAR_G_PER_KM.description}."
    )


def _count(value: float) -> str:
    return significant(value) if value >= 1 else f"{significant(value)} of one"

"""Which CPU this is, and what one busy thread of it draws where no counter says.

The processor names itself twice: a model string, which a virtual machine often
makes generic ("AMD EPYC", "Intel(R) Xeon(R) Processor"), and its vendor, family,
model and stepping numbers, which name its generation exactly. CodeCarbon prices a
thread from the model string alone, and falls back to a flat guess; here the
numbers name the generation and a published model prices it (cpu_power.toml holds
the figures and their sources; docs/measurement.md the rule).

Every estimate also gets a range: a busy thread's power depends on what the rest of
the host is doing, and the published load curve says by how much.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("cpu_power.toml")
CPUINFO = Path("/proc/cpuinfo")
# Arm's "CPU implementer" codes that name a vendor (others are shown as numbers).
ARM_IMPLEMENTERS = {0x41: "ARM"}


@dataclass(frozen=True)
class Identity:
    """What the processor says of itself. None: it did not say."""

    vendor: str
    family: int | None
    model: int | None
    stepping: int | None
    name: str

    def numbers(self) -> str:
        """'family 25, model 17, stepping 1' (what is known of it)."""
        parts = [
            f"{label} {value}"
            for label, value in (
                ("family", self.family),
                ("model", self.model),
                ("stepping", self.stepping),
            )
            if value is not None
        ]
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Identity:
        return cls(**{name: stored.get(name) for name in ("family", "model", "stepping")},
                   vendor=stored.get("vendor") or "", name=stored.get("name") or "")  # fmt: skip

    def described(self) -> str:
        """'Intel Rocket Lake (GenuineIntel family 6, model 167, stepping 1)', or what
        the processor says where its numbers name no generation in the table."""
        numbers = " ".join(part for part in (self.vendor, self.numbers()) if part)
        generation = generation_of(self)
        if generation:
            return f"{generation} ({numbers})"
        return f"{self.name or 'a processor'} ({numbers or 'no family or model given'}; " \
            "a generation not in our table)"  # fmt: skip


UNKNOWN = Identity("", None, None, None, "")


def _integer(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip(), 0)  # Arm writes its numbers in hex ("0xd0c")
    except ValueError:
        return None


def identify(cpuinfo: str) -> Identity:
    """The first processor of a /proc/cpuinfo text (x86 or Arm)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # one processor is enough: a host's are all alike
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    name = fields.get("model name", "")
    if "vendor_id" in fields:
        return Identity(
            vendor=fields["vendor_id"],
            family=_integer(fields.get("cpu family")),
            model=_integer(fields.get("model")),
            stepping=_integer(fields.get("stepping")),
            name=name,
        )
    implementer = _integer(fields.get("cpu implementer"))
    if implementer is not None:
        return Identity(
            vendor=ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer:#x}"),
            family=_integer(fields.get("cpu architecture")),
            model=_integer(fields.get("cpu part")),
            stepping=_integer(fields.get("cpu variant")),
            name=name,
        )
    return dataclasses.replace(UNKNOWN, name=name)


@functools.cache
def host_identity() -> Identity:
    """This host's processor: what a run's provenance records."""
    try:
        return identify(CPUINFO.read_text(errors="replace"))
    except OSError:
        return UNKNOWN


@functools.cache
def _data() -> dict[str, Any]:
    with DATA.open("rb") as file:
        return tomllib.load(file)


def generation_of(identity: Identity) -> str | None:
    """The generation the processor's numbers name (None: not in the table)."""
    row = _generation_row(identity)
    return row["name"] if row else None


def _generation_row(identity: Identity) -> dict[str, Any] | None:
    row: dict[str, Any]
    for row in _data()["generation"]:
        if (
            row["vendor"] == identity.vendor
            and row["family"] == identity.family
            and identity.model in row["models"]
            and ("steppings" not in row or identity.stepping in row["steppings"])
        ):
            return row
    return None


@dataclass(frozen=True)
class Published:
    """A busy thread's power by the published model (Cloud Carbon Footprint)."""

    watts: float  # one thread of a fully busy processor: what a run is priced at
    idle_watts: float
    generation: str | None  # what the processor's numbers name
    microarchitecture: str | None  # the row that priced it; None: CCF's average

    def sentence(self) -> str:
        ccf = _data()["ccf"]
        figures = f"{self.idle_watts:g} W idle to {self.watts:g} W busy per vCPU"
        if self.microarchitecture:
            return f"{ccf['name']}'s SPECpower average for {self.microarchitecture}: {figures}"
        return (
            f"{ccf['name']}'s figure for a microarchitecture it has no figures for (its "
            f"average over those it has: {figures})"
        )


def published(identity: Identity) -> Published:
    """What the published model says one busy thread of this processor draws."""
    ccf = _data()["ccf"]
    row = _generation_row(identity)
    key = row.get("ccf") if row else None
    figures = ccf["microarchitectures"][key] if key else ccf["average"]
    return Published(
        watts=figures["max_w"],
        idle_watts=figures["min_w"],
        generation=row["name"] if row else None,
        microarchitecture=key,
    )


def reference() -> dict[str, str]:
    """Where the published figures come from, for provenance and the methodology page."""
    ccf, curve = _data()["ccf"], _data()["load_curve"]
    return {
        "model": ccf["name"],
        "model_url": ccf["url"],
        "model_licence": ccf["licence"],
        "model_retrieved": ccf["retrieved"],
        "curve": curve["name"],
        "curve_url": curve["url"],
    }


@functools.cache
def range_factors() -> tuple[float, float]:
    """What a thread's power may be, as fractions of its share of a fully busy
    processor (the figure every estimate quotes), by the published load curve:
    low, the power one more busy thread adds to a host that is already busy (the
    curve's last slope); high, what it adds to an idle host (its first slope, where
    turbo and waking the package cost most). A curve's slope is per percent of load;
    one thread of N is 100/N percent, and its share at full load is full/N."""
    points = _data()["load_curve"]["points"]
    full = points[-1][1]

    def slope(a: list[float], b: list[float]) -> float:
        return (b[1] - a[1]) / (b[0] - a[0])

    return (
        slope(points[-2], points[-1]) * 100 / full,
        slope(points[0], points[1]) * 100 / full,
    )


# (low, high): a figure's range, in its own unit.
Range = tuple[float, float]


def factors_of(cpu_provenance: dict[str, Any]) -> Range | None:
    """A run's range of a busy thread's power, as fractions of the figure it was priced
    at, from its stored provenance (None: a counter measured it, or it ran before
    ranges were kept)."""
    low_high, watts = cpu_provenance.get("range_w"), cpu_provenance.get("watts_per_thread")
    if not low_high or not watts:
        return None
    return (low_high[0] / watts, low_high[1] / watts)


def ranged(
    energy_kwh: float | None, cpu_energy_kwh: float | None, factors: Range | None
) -> Range | None:
    """An energy's range: its CPU part scaled by the model's range, the rest (RAM's
    constant, the GPU's counter) as it is."""
    if factors is None or energy_kwh is None or cpu_energy_kwh is None:
        return None
    rest = energy_kwh - cpu_energy_kwh
    return (rest + cpu_energy_kwh * factors[0], rest + cpu_energy_kwh * factors[1])


def scaled_range(values: Range | None, factor: float | None) -> Range | None:
    """A range in another unit (energy to CO₂e: × the grid's intensity)."""
    if values is None or factor is None:
        return None
    return (values[0] * factor, values[1] * factor)


def published_table() -> dict[str, Any]:
    """The published figures as the methodology page lists them."""
    ccf, curve = _data()["ccf"], _data()["load_curve"]
    low, high = range_factors()
    return {
        "microarchitectures": [
            {"name": name, "idle_w": row["min_w"], "busy_w": row["max_w"]}
            for name, row in ccf["microarchitectures"].items()
        ],
        "average": {"idle_w": ccf["average"]["min_w"], "busy_w": ccf["average"]["max_w"]},
        "load_curve": [{"load": load, "tdp": fraction} for load, fraction in curve["points"]],
        "low": low,
        "high": high,
        "generations": len(_data()["generation"]),
    } | reference()

"""Human-readable figures: adaptive units so tiny numbers stay readable."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

KWH_IN_J = 3.6e6
MISSING = "—"

# A snippet's output shown on a terminal: control characters would let it set the
# window title, write the clipboard (OSC 52) or clear the screen. C0 controls and DEL
# become their Unicode pictures, C1 controls the replacement character.
_TERMINAL_SAFE = {code: 0x2400 + code for code in range(0x20) if chr(code) not in "\n\t"}
_TERMINAL_SAFE |= {0x7F: 0x2421} | {code: 0xFFFD for code in range(0x80, 0xA0)}
# Bidirectional controls reorder what follows them on screen (U+202E shows "exe.txt"
# for "txt.exe"): shown as their escapes, so that nothing hides behind them.
BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_TERMINAL_SAFE |= {code: f"\\u{code:04x}" for code in BIDI_CONTROLS}


def terminal_safe(text: str) -> str:
    """`text` with every control character but newline and tab made visible, and every
    bidirectional control shown as its escape."""
    return text.translate(_TERMINAL_SAFE)


def _number(value: object) -> float | None:
    """The value as a number, or None for what templates pass when there is none ("")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def significant(value: float, digits: int = 3) -> str:
    """`digits` significant figures, no exponent, no trailing zeros: 999.8 -> '1,000'."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{round(value, decimals):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _rounded(value: float, digits: int) -> float:
    """`value` to `digits` significant digits, before the point too: 1442 -> 1400."""
    if value == 0:
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def scaled(value: float, units: list[tuple[float, str]]) -> str:
    """`value` in the largest unit it reaches (the smallest when it reaches none)."""
    return Unit.fitting([value], units)(value)


# Units by size, largest first, as (what one unit is in the stored unit, symbol).
ENERGY_UNITS = [(1, "kWh"), (1e-3, "Wh"), (1e-6, "mWh"), (1e-9, "µWh"), (1e-12, "nWh")]
MASS_UNITS = [(1000, "kg"), (1, "g"), (1e-3, "mg"), (1e-6, "µg"), (1e-9, "ng")]
DURATION_UNITS = [(1, "s"), (1e-3, "ms")]


@dataclass(frozen=True)
class Unit:
    """One unit for a group of figures read side by side (a column, a set of cards), so
    that they compare at a glance: '5.2 mWh' next to '0.31 mWh', not next to '310 µWh'."""

    factor: float
    symbol: str
    do_not_call_in_templates = True  # templates pass it to the in_unit filter

    def __call__(self, value: object) -> str:
        number = _number(value)
        if number is None:
            return MISSING
        return f"{significant(number / self.factor)} {self.symbol}"

    def range(self, values: tuple[float, float] | None) -> str:
        """'(0.16–0.59)': a figure's range beside it, in its unit, to two significant
        digits (a range is coarser than the figure it bounds); "" for none."""
        if not values:
            return ""
        low, high = (significant(_rounded(value / self.factor, 2), 2) for value in values)
        return f"({low}–{high})"

    @classmethod
    def fitting(cls, values: Iterable[object], units: list[tuple[float, str]]) -> Unit:
        """The largest unit the largest of `values` reaches (None and "" ignored)."""
        largest = max((abs(v) for v in map(_number, values) if v is not None), default=0)
        for factor, symbol in units:
            if largest >= factor:
                return cls(factor, symbol)
        return cls(*units[-1])


def units_for(rows: Sequence[object], **columns: str) -> dict[str, Unit]:
    """{column: Unit} for attributes of `rows`; `columns` maps a column to its kind
    ("energy", "mass" or "duration"), e.g. units_for(runs, energy_kwh="energy")."""
    tables = {"energy": ENERGY_UNITS, "mass": MASS_UNITS, "duration": DURATION_UNITS}
    return {
        column: Unit.fitting([getattr(row, column, None) for row in rows], tables[kind])
        for column, kind in columns.items()
    }


def percent(fraction: float | str | None) -> str:
    """0.4321 -> '43%'; below 1%, one decimal ("" from a template: none)."""
    number = _number(fraction)
    if number is None:
        return MISSING
    value = number * 100
    return f"{value:.0f}%" if value >= 1 else f"{value:.1f}%"


def watt_hours(kwh: float | None) -> str:
    """1.2e-06 kWh -> '1.2 mWh'."""
    kwh = _number(kwh)
    if kwh is None:
        return MISSING
    if kwh == 0:
        return "0 Wh"
    return scaled(kwh, ENERGY_UNITS)


def energy(kwh: float | None) -> str:
    """1.2e-06 kWh -> '1.2 mWh (4.32 J)'."""
    if _number(kwh) is None:
        return MISSING
    return f"{watt_hours(kwh)} ({joules(kwh)})"


def joules(kwh: float | None) -> str:
    kwh = _number(kwh)
    if kwh is None:
        return MISSING
    return scaled(kwh * KWH_IN_J, [(1e6, "MJ"), (1e3, "kJ"), (1, "J"), (1e-3, "mJ"), (1e-6, "µJ")])


def mass(grams: float | None) -> str:
    grams = _number(grams)
    if grams is None:
        return MISSING
    if grams == 0:
        return "0 g"
    return scaled(grams, MASS_UNITS)


def seconds(value: float | None) -> str:
    """A duration alone, by the rule every figure follows (its unit, three significant
    digits): the header's "10.1 ms" is the card's."""
    number = _number(value)
    if number is None:
        return MISSING
    return scaled(number, DURATION_UNITS)


def ranged(values: tuple[float, float] | None, units: list[tuple[float, str]]) -> str:
    """' (range 0.16–0.59 mWh)' for a figure estimated by the power model; "" for none."""
    if not values:
        return ""
    unit = Unit.fitting(values, units)
    return f" (range {unit.range(values)[1:-1]} {unit.symbol})"


def summary_lines(run: Any, grid_name: str = "") -> list[str]:
    """The metrics summary `runsnippet` prints under the snippet's output; `grid_name`
    names the grid the run was priced at (its codes when not given)."""
    lines = [
        "",
        f"── {run.get_status_display()}"
        + (f" (exit code {run.exit_code})" if run.exit_code is not None else ""),
    ]
    if run.error:
        lines.append(f"   {run.error}")
    if run.energy_kwh is not None:
        gpu = energy(run.gpu_energy_kwh) if run.gpu_energy_kwh is not None else "no GPU"
        parts = f"{energy(run.cpu_energy_kwh)} / {energy(run.ram_energy_kwh)} / {gpu}"
        lines += [
            f"   duration          {seconds(run.duration_s)} wall, {seconds(run.cpu_seconds)} CPU",
            f"   snippet energy    {energy(run.energy_kwh)}"
            + ranged(run.energy_range, ENERGY_UNITS),
            f"     CPU / RAM / GPU {parts}",
            f"   machine energy    {energy(run.machine_energy_kwh)}"
            + ranged(run.machine_range, ENERGY_UNITS)
            + " (whole machine, CodeCarbon)",
            f"   emissions         {mass(run.emissions_g)}{ranged(run.emissions_range, MASS_UNITS)}"
            " CO₂e at "
            f"{run.carbon_intensity_g_per_kwh:.0f} g/kWh ("
            + (grid_name or run.country_iso_code + (f", {run.region}" if run.region else ""))
            + ")",
            f"   CPU figure        {run.provenance.get('cpu', {}).get('method', '?')}: "
            f"{run.provenance.get('cpu', {}).get('source', '')}",
        ]
        if run.processor:
            lines.append(f"   processor         {run.processor}")
    for section in run.sections:
        calls = f"{section['calls']} call" + ("s" if section["calls"] != 1 else "")
        lines.append(
            f"   section {section['name']:<18} {calls:>9}  {seconds(section['cpu_seconds'])} CPU  "
            f"{watt_hours(section['energy_kwh'])}  {section['share'] * 100:.0f}%"
        )
    for line in sorted(run.lines, key=lambda line: -line["share"])[:3]:
        lines.append(
            f"   hot line {line['line']:<5}     {line['share'] * 100:.0f}% of the CPU time, "
            f"{watt_hours(line['energy_kwh'])}"
        )
    lines += [f"   note: {note}" for note in run.measurement_notes]
    env = run.environment
    lines.append(f"   environment       {env['name']} ({env.get('interpreter') or '—'})")
    lines.append(f"   isolation         {run.isolation or '—'}   run {run.public_id}")
    return lines


def p_value(p: float | None) -> str:
    p = _number(p)
    if p is None:
        return MISSING
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"

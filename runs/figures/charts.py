"""Charts drawn on the server: no charting library to ship.

Shapes are SVG stretched to the box (lines keep their width with non-scaling-stroke);
every text is HTML placed in percent, so axis labels keep the page's type size at any
width instead of scaling with a viewBox.
"""

from __future__ import annotations

from typing import Any

from .formatting import DURATION_UNITS, Unit, significant

# The SVG's own coordinates; the page stretches them to the box.
WIDTH, HEIGHT = 1000, 200
# Measured samples a chart needs: fewer, and it would be one flat step; say so in words.
MIN_SAMPLES = 2


def _nice_ceiling(value: float) -> float:
    """The next 1, 2 or 5 × 10^n at or above `value`, for a readable axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def power_chart(
    samples: list[list[float]], duration_s: float | None = None
) -> dict[str, Any] | None:
    """Geometry and a text alternative for watts over time, or None with too few
    samples to draw. The time axis ends at the run's length (its last sample while
    it runs).

    A finished run's last point only closes the series at its end, holding the level
    before it (runs.queue.execution): a run with one tick has one measurement, not two.
    """
    measured = samples[:-1] if duration_s is not None else samples
    if len(measured) < MIN_SAMPLES:
        return None
    t_max = max(duration_s or 0.0, samples[-1][0]) or 1.0
    w_max = _nice_ceiling(max(s[1] for s in samples) * 1.1)

    def x(t: float) -> float:
        return round(t / t_max * WIDTH, 1)

    def y(w: float) -> float:
        return round(HEIGHT - w / w_max * HEIGHT, 1)

    # Each sample is the average power since the previous one: draw it as a step.
    points = [f"{x(0)},{y(samples[0][1])}"]
    previous_t = 0.0
    for t, w in samples:
        points.append(f"{x(previous_t)},{y(w)}")
        points.append(f"{x(t)},{y(w)}")
        previous_t = t
    watts = [s[1] for s in samples]
    duration = samples[-1][0]
    starts = [0.0] + [s[0] for s in samples[:-1]]
    energy_j = sum(w * (t - start) for (t, w), start in zip(samples, starts, strict=True))
    average = energy_j / max(duration, 1e-9)
    time_unit = Unit.fitting([t_max], DURATION_UNITS)
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "points": " ".join(points),
        "area": " ".join([*points, f"{x(previous_t)},{y(0)}", f"{x(0)},{y(0)}"]),
        "grid_y": [y(w_max * f) for f in (0.5, 1)],
        "y_ticks": [{"percent": f * 100, "label": f"{w_max * f:g} W"} for f in (0, 0.5, 1)],
        "x_ticks": [
            {"percent": f * 100, "label": time_unit(t_max * f)} for f in (0, 0.25, 0.5, 0.75, 1)
        ],
        "peak_w": max(watts),
        "average_w": average,
        "summary": (
            f"Power of the snippet over {time_unit(duration)}, {len(measured)} samples: "
            f"average {significant(average)} W, peak {significant(max(watts))} W."
        ),
    }


def strip_chart(
    values: dict[str, list[float]], unit: Unit, labels: dict[str, str]
) -> dict[str, Any] | None:
    """Each repetition as a dot, one row per variant, on one shared axis (all HTML)."""
    every = [v for series in values.values() for v in series]
    if not every:
        return None
    low, high = min(every), max(every)
    span = (high - low) or abs(high) or 1.0
    rows = [
        {
            "key": key,
            "label": labels[key],
            "dots": [
                {"percent": round((v - low) / span * 100, 2), "title": unit(v)} for v in series
            ],
        }
        for key, series in values.items()
    ]
    return {
        "rows": rows,
        "low": unit(low),
        "high": unit(high),
        "summary": "; ".join(
            f"{labels[key]}: {len(vs)} runs from {unit(min(vs))} to {unit(max(vs))}"
            for key, vs in values.items()
            if vs
        ),
    }

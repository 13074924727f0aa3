"""The live power chart, drawn on the server as SVG: no charting library to ship."""

from __future__ import annotations

WIDTH, HEIGHT = 600, 160
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 52, 22, 10


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


def power_chart(samples: list) -> dict | None:
    """Geometry and a text alternative for watts over time, or None without samples."""
    if not samples:
        return None
    t_max = max(max(s[0] for s in samples), 0.5)
    w_max = _nice_ceiling(max(s[1] for s in samples) * 1.1)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP

    def x(t: float) -> float:
        return round(PAD_LEFT + t / t_max * plot_w, 1)

    def y(w: float) -> float:
        return round(PAD_TOP + plot_h - w / w_max * plot_h, 1)

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
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "points": " ".join(points),
        "area": " ".join([*points, f"{x(previous_t)},{y(0)}", f"{x(0)},{y(0)}"]),
        "y_ticks": [{"y": y(w_max * f), "label": f"{w_max * f:g} W"} for f in (0, 0.5, 1)],
        "x_ticks": [
            {"x": x(t_max * f), "label": f"{t_max * f:.1f} s"} for f in (0, 0.25, 0.5, 0.75, 1)
        ],
        "left": PAD_LEFT,
        "right": WIDTH - 8,
        "bottom": y(0),
        "peak_w": max(watts),
        "average_w": average,
        "summary": (
            f"Power of the snippet over {duration:.1f} s, {len(samples)} samples: "
            f"average {average:.2f} W, peak {max(watts):.2f} W."
        ),
    }


def strip_chart(values: dict[str, list[float]], unit_format) -> dict | None:
    """Each repetition as a dot, one row per variant, on one shared axis."""
    every = [v for series in values.values() for v in series]
    if not every:
        return None
    low, high = min(every), max(every)
    span = (high - low) or abs(high) or 1.0
    left, right, row_height = 40, WIDTH - 16, 34
    rows = []
    for index, (label, series) in enumerate(values.items()):
        y = 18 + index * row_height
        dots = [
            {
                "x": round(left + (v - low) / span * (right - left), 1),
                "y": y,
                "title": unit_format(v),
            }
            for v in series
        ]
        rows.append({"label": label, "y": y, "dots": dots})
    height = 18 + len(values) * row_height
    return {
        "width": WIDTH,
        "height": height + 14,
        "rows": rows,
        "left": left,
        "right": right,
        "axis_y": height,
        "low": unit_format(low),
        "high": unit_format(high),
        "summary": "; ".join(
            f"{label}: {len(vs)} runs from {unit_format(min(vs))} to {unit_format(max(vs))}"
            for label, vs in values.items()
            if vs
        ),
    }

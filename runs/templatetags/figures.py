from django import template

from runs.figures import formatting, stats

register = template.Library()

register.filter("energy", formatting.energy)
register.filter("watt_hours", formatting.watt_hours)
register.filter("joules", formatting.joules)
register.filter("mass", formatting.mass)
register.filter("seconds", formatting.seconds)
register.filter("p_value", formatting.p_value)
register.filter("signed_percent", stats.signed_percent)


@register.filter
def in_unit(value, unit: formatting.Unit) -> str:
    """`{{ run.cpu_energy_kwh|in_unit:units.energy }}`: one unit for figures read together."""
    return unit(value)


@register.filter
def range_in(values, unit: formatting.Unit) -> str:
    """`{{ run.energy_range|range_in:units.energy_kwh }}`: an estimate's range, "(0.16–0.59)"."""
    return unit.range(values)


@register.filter
def item(mapping: dict, key):
    return mapping.get(key)


@register.filter
def percent(fraction) -> str:
    return formatting.percent(fraction)


@register.filter
def percent_width(fraction) -> float:
    """A share as a bar's width in percent, never past the bar's box."""
    return round(min(max(fraction or 0.0, 0.0), 1.0) * 100, 1)

from django import template

from runs import formatting

register = template.Library()

register.filter("energy", formatting.energy)
register.filter("watt_hours", formatting.watt_hours)
register.filter("joules", formatting.joules)
register.filter("mass", formatting.mass)
register.filter("seconds", formatting.seconds)
register.filter("p_value", formatting.p_value)


@register.filter
def in_unit(value, unit: formatting.Unit) -> str:
    """`{{ run.cpu_energy_kwh|in_unit:units.energy }}`: one unit for figures read together."""
    return unit(value)


@register.filter
def item(mapping: dict, key):
    return mapping.get(key)

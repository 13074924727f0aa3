from django import template

from runs import formatting

register = template.Library()

register.filter("energy", formatting.energy)
register.filter("watt_hours", formatting.watt_hours)
register.filter("joules", formatting.joules)
register.filter("mass", formatting.mass)
register.filter("seconds", formatting.seconds)
register.filter("p_value", formatting.p_value)

from django.conf import settings
from django.core.checks import Error, register


@register()
def grid_country_is_known(app_configs, **kwargs) -> list[Error]:
    from .figures import grids

    if settings.CODECARBON_COUNTRY in grids.countries():
        return []
    return [
        Error(
            f"CODECARBON_COUNTRY={settings.CODECARBON_COUNTRY!r} is not in CodeCarbon's data.",
            hint="Use a 3-letter ISO code such as IND, USA, FRA or DEU.",
            id="runs.E001",
        )
    ]

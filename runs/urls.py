from django.urls import path, register_converter

from . import api, views


class ShortId:
    """The start of a public id, as titles show it (8 hex digits, or a few more)."""

    regex = "[0-9a-f]{8,31}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ShortId, "short")
app_name = "runs"

urlpatterns = [
    path("", views.playground, name="playground"),
    path("runs/", views.history, name="history"),
    path("runs/new", views.create, name="create"),
    path("code/format", views.format_code, name="format"),
    path("code/check", views.check_code, name="check"),
    path("runs/<uuid:public_id>/", views.detail, name="detail"),
    path("runs/<short:prefix>/", views.short_link, {"kind": "run"}, name="short-run"),
    path("runs/<uuid:public_id>/embed", views.embed, name="embed"),
    path("runs/<uuid:public_id>/rerun", views.rerun, name="rerun"),
    path("runs/<uuid:public_id>/cancel", views.cancel, name="cancel"),
    path(
        "runs/<uuid:public_id>/every-environment",
        views.compare_environments,
        name="compare-environments",
    ),
    path("runs/<uuid:public_id>.json", views.run_export, name="run-export"),
    path("runs.csv", views.history_export, name="history-export"),
    path("series/new", views.series_create, name="series-create"),
    path("series/<uuid:public_id>/", views.series_detail, name="series-detail"),
    path("series/<short:prefix>/", views.short_link, {"kind": "series"}, name="short-series"),
    path("series/<uuid:public_id>/embed", views.series_embed, name="series-embed"),
    path("series/<uuid:public_id>/cancel", views.series_cancel, name="series-cancel"),
    path("series/<uuid:public_id>.json", views.series_export, name="series-export"),
    path("compare/", views.compare, name="compare"),
    path("compare/new", views.compare_create, name="compare-create"),
    path("compare/<uuid:public_id>/", views.series_detail, name="compare-detail"),
    path("compare/<short:prefix>/", views.short_link, {"kind": "series"}, name="short-compare"),
    path("methodology/", views.methodology, name="methodology"),
    path("grid", views.grid_note, name="grid-note"),
    path("grid/zone", views.grid_zone, name="grid-zone"),
    # JSON API (POST /run and GET /healthz keep the original design's names).
    path("run", api.run, name="api-run"),
    path("api/runs", api.create, name="api-create"),
    path("api/environments", api.environment_list, name="api-environments"),
    path("api/comparisons", api.comparison_create, name="api-comparisons"),
    path("api/comparisons/<str:public_id>", api.comparison_detail, name="api-comparison"),
    path(
        "api/comparisons/<str:public_id>/cancel",
        api.comparison_cancel,
        name="api-comparison-cancel",
    ),
    # Any id: one that is not a run's gets a JSON 404, not the site's page.
    path("api/runs/<str:public_id>", api.detail, name="api-detail"),
    path("api/runs/<str:public_id>/cancel", api.cancel, name="api-cancel"),
    path("healthz", api.healthz, name="healthz"),
]

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .figures import formatting
from .models import Baseline, ControlRun, Run, Series, Worker

# What admins see of it: a record, read, never edited.
RUN_FIELDS: tuple[str, ...] = (
    "public_id",
    "status",
    "source",
    "session_key",
    "worker",
    "created_at",
    "started_at",
    "finished_at",
    "code",
    "stdin",
    "exit_code",
    "error",
    "limit",
    "stdout",
    "stdout_truncated",
    "stderr",
    "stderr_truncated",
    "timeout_s",
    "env",
    "isolation",
    "duration_s",
    "cpu_seconds",
    "peak_memory_bytes",
    "energy",
    "co2",
    "energy_kwh",
    "cpu_energy_kwh",
    "ram_energy_kwh",
    "gpu_energy_kwh",
    "machine_energy_kwh",
    "machine_cpu_energy_kwh",
    "machine_ram_energy_kwh",
    "machine_gpu_energy_kwh",
    "emissions_g",
    "machine_emissions_g",
    "carbon_intensity_g_per_kwh",
    "country_iso_code",
    "region",
    "provenance",
    "power_samples",
    "sections",
    "lines",
    "measurement_notes",
    "last_line",
    "host_repeatability",
    "in_series",
    "variant",
    "repetition",
)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "status",
        "country_iso_code",
        "energy",
        "co2",
        "duration",
        "source",
        "created_at",
    ]
    list_filter = ["status", "env", "country_iso_code", "isolation", "source", "limit"]
    search_fields = ["code", "stdout", "stderr", "=public_id"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # COUNT(*) over a big table on every page is slow
    fields = RUN_FIELDS
    # What was submitted and measured is a record: admins read it, they do not edit it.
    readonly_fields = RUN_FIELDS
    list_select_related = ["series"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Energy", ordering="energy_kwh")
    def energy(self, run: Run) -> str:
        return formatting.energy(run.energy_kwh) + formatting.ranged(
            run.energy_range, formatting.ENERGY_UNITS
        )

    @admin.display(description="CO₂", ordering="emissions_g")
    def co2(self, run: Run) -> str:
        return formatting.mass(run.emissions_g) + formatting.ranged(
            run.emissions_range, formatting.MASS_UNITS
        )

    @admin.display(description="Duration", ordering="duration_s")
    def duration(self, run: Run) -> str:
        return formatting.seconds(run.duration_s)

    @admin.display(description="Series")
    def in_series(self, run: Run) -> str:
        if not run.series_id:
            return "—"
        url = reverse("admin:runs_series_change", args=[run.series_id])
        return format_html('<a href="{}">{}</a>', url, run.series)


# What admins see of it: a record, read, never edited.
SERIES_RUN_FIELDS: tuple[str, ...] = (
    "repetition",
    "variant",
    "status",
    "energy",
    "duration",
    "cpu_seconds",
)


class SeriesRunInline(admin.TabularInline):
    """A series' runs, in their order: read only, each linking to its own page."""

    model = Run
    fields = SERIES_RUN_FIELDS
    readonly_fields = SERIES_RUN_FIELDS
    ordering = ["repetition", "variant"]
    show_change_link = True
    can_delete = False
    extra = 0
    max_num = 0  # no adding through the inline

    @admin.display(description="Energy")
    def energy(self, run: Run) -> str:
        return formatting.energy(run.energy_kwh)

    @admin.display(description="Duration")
    def duration(self, run: Run) -> str:
        return formatting.seconds(run.duration_s)

    def get_queryset(self, request):
        # Not the runs' code and output: up to 60 of each on one page.
        return super().get_queryset(request).only(*Series.RESULT_FIELDS, "cpu_seconds")


# What admins see of it: a record, read, never edited.
SERIES_FIELDS: tuple[str, ...] = (
    "public_id",
    "kind",
    "verdict",
    "session_key",
    "client",
    "source",
    "created_at",
    "finished_at",
    "stop_reason",
    "repetitions",
    "max_pairs",
    "warmup",
    "section",
    "env_a",
    "env_b",
    "code_a",
    "code_b",
    "stdin_a",
    "stdin_b",
    "others",
    "host_repeatability",
)


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    """Repeats and comparisons, with their verdict and their runs."""

    list_display = ["public_id", "kind", "verdict", "repetitions", "max_pairs", "created_at"]
    list_filter = ["kind", "warmup", "created_at"]
    search_fields = ["=public_id", "code_a", "code_b", "section"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = SERIES_FIELDS
    readonly_fields = SERIES_FIELDS
    inlines = [SeriesRunInline]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Verdict")
    def verdict(self, series: Series) -> str:
        if series.kind != Series.Kind.COMPARE:
            return "—"
        return series.headline(series.results(series.runs_for_results())) or "No verdict yet."


# What admins see of it: a record, read, never edited.
BASELINE_FIELDS: tuple[str, ...] = (
    "host",
    "env",
    "isolation",
    "runs",
    "energy_kwh",
    "cpu_seconds",
    "duration_s",
    "samples",
    "created_at",
)


@admin.register(Baseline)
class BaselineAdmin(admin.ModelAdmin):
    """What starting the interpreter costs on each host: every run's page subtracts it."""

    list_display = ["host", "env", "energy", "cpu_seconds", "duration_s", "runs", "created_at"]
    list_filter = ["host", "env", "isolation", "created_at"]
    date_hierarchy = "created_at"
    fields = BASELINE_FIELDS
    readonly_fields = BASELINE_FIELDS

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Energy", ordering="energy_kwh")
    def energy(self, baseline: Baseline) -> str:
        return formatting.energy(baseline.energy_kwh)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "started_at", "last_seen_at"]
    list_filter = ["kind"]
    readonly_fields = ["name", "kind", "started_at", "last_seen_at"]


@admin.register(ControlRun)
class ControlRunAdmin(admin.ModelAdmin):
    """The hosts' control runs: what the repeatability on every page comes from."""

    list_display = ["host", "cpu_seconds", "duration_s", "created_at"]
    list_filter = ["host", "created_at"]
    readonly_fields = ["host", "cpu_seconds", "duration_s", "created_at"]

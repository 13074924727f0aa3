from django.contrib import admin

from . import formatting
from .models import ControlRun, Run, Worker


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
    list_filter = ["status", "country_iso_code", "isolation", "source", "limit"]
    search_fields = ["code", "stdout", "stderr", "=public_id"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # COUNT(*) over a big table on every page is slow
    fields = [
        "public_id",
        "status",
        "source",
        "session_key",
        "worker",
        "created_at",
        "started_at",
        "finished_at",
        "code",
        "exit_code",
        "error",
        "limit",
        "stdout",
        "stdout_truncated",
        "stderr",
        "stderr_truncated",
        "timeout_s",
        "isolation",
        "duration_s",
        "cpu_seconds",
        "peak_memory_bytes",
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
    ]
    # What was submitted and measured is a record: admins read it, they do not edit it.
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Energy", ordering="energy_kwh")
    def energy(self, run: Run) -> str:
        return formatting.energy(run.energy_kwh)

    @admin.display(description="CO₂", ordering="emissions_g")
    def co2(self, run: Run) -> str:
        return formatting.mass(run.emissions_g)

    @admin.display(description="Duration", ordering="duration_s")
    def duration(self, run: Run) -> str:
        return formatting.seconds(run.duration_s)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "started_at", "last_seen_at"]
    list_filter = ["kind"]
    readonly_fields = ["name", "kind", "started_at", "last_seen_at"]


@admin.register(ControlRun)
class ControlRunAdmin(admin.ModelAdmin):
    """The hosts' control runs: what the repeatability on every page comes from."""

    list_display = ["host", "cpu_seconds", "duration_s", "created_at"]
    list_filter = ["host"]
    readonly_fields = ["host", "cpu_seconds", "duration_s", "created_at"]

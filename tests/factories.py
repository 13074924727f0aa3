"""Finished runs made directly in the database, for view tests that need many of them."""

import threading

from django.utils import timezone

from runs.models import Run, Worker
from runs.queue import execution
from runs.snippets import outputs


def finished_run(**fields) -> Run:
    now = timezone.now()
    values = {
        "code": "print('hi')",
        "status": Run.Status.SUCCEEDED,
        "timeout_s": 10,
        "started_at": now,
        "finished_at": now,
        "exit_code": 0,
        "stdout": "hi\n",
        "duration_s": 0.05,
        "cpu_seconds": 0.03,
        "energy_kwh": 3.4e-8,
        "cpu_energy_kwh": 3.3e-8,
        "ram_energy_kwh": 1e-9,
        "machine_energy_kwh": 5e-7,
        "machine_cpu_energy_kwh": 1e-7,
        "machine_ram_energy_kwh": 4e-7,
        "emissions_g": 2.4e-5,
        "machine_emissions_g": 3.6e-4,
        "carbon_intensity_g_per_kwh": 713.4,
        "country_iso_code": "IND",
        "isolation": "bubblewrap+cgroup-v1+seccomp+landlock",
        "provenance": {
            "cpu": {
                "method": "estimate",
                "source": "CPU time × 4 W per busy thread: CodeCarbon has no power figure for "
                "this CPU model ('Intel(R) Xeon(R) Processor') and assumes 4 W per thread",
                "power": "4 W per busy thread, CodeCarbon's default for an unknown CPU",
                "power_source": "codecarbon-default",
            },
            "ram": {"method": "estimate", "source": "20 W × share"},
            "gpu": {"method": "none", "source": "no NVIDIA GPU on this host"},
            "codecarbon_version": "3.3.2",
            "host": "test",
        },
        "power_samples": [[0.05, 3.9]],
    }
    values |= fields
    values.setdefault("stdout_digest", outputs.digest(values["stdout"]))
    return Run.objects.create(**values)


def running_run() -> tuple[Run, execution.ProgressWriter]:
    """A run its (live) worker is running, and the writer that worker appends with."""
    Worker.objects.create(name="w", kind="queue")
    run = finished_run(
        status=Run.Status.RUNNING, finished_at=None, energy_kwh=None, stdout="", worker="w"
    )
    return run, execution.ProgressWriter(run, tell=None, stop=threading.Event())

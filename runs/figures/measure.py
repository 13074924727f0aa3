"""Energy and emissions of one run, from CodeCarbon and the sandbox's CPU accounting.

Two figures per run (docs/measurement.md):
- the snippet's own energy: CPU energy attributed to its process tree from its exact
  CPU-seconds (where an energy counter such as RAPL exists, the counter's delta times
  the tree's share of all CPU time in the window); RAM by the tree's share of the
  machine's memory over time; GPU from NVML's energy counter;
- the whole machine's energy during the run, CodeCarbon's own task figure.

One OfflineEmissionsTracker per (country, region) lives for the whole process: its
first start costs ~1.3 s of hardware detection, later tasks ~1 ms.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psutil
from django.conf import settings

from ..sandbox import CPU_FROM_CGROUP, Outcome
from . import cpu_power
from .formatting import KWH_IN_J
from .grids import intensity_for

logger = logging.getLogger(__name__)

# CPU modes in which CodeCarbon reads an energy counter rather than estimating.
MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "windows_emi", "powermetrics"}
# Where the power of a busy thread comes from (Hardware.cpu_power_source).
POWER_COUNTER = "counter"  # an energy counter: no constant at all
POWER_OPERATOR = "operator"  # CPU_WATTS_PER_THREAD
POWER_TABLE = "codecarbon-table"  # CodeCarbon's TDP for this CPU model
POWER_PUBLISHED = "published"  # the published model, for a model CodeCarbon does not know
# How the CPU time is obtained, by its source (runs.sandbox).
CPU_TIME_SOURCES = {
    CPU_FROM_CGROUP: "the kernel's CPU accounting of the run's cgroup: every process ever "
    "in it, whatever it did with its signals",
    "supervisor": "counted by the sandbox's supervisor, which waits for every process of "
    "the run (a snippet may not change how SIGCHLD is handled here: the kernel would then "
    "discard its children's CPU time)",
}

_trackers: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def tracker_for(country: str, region: str = "") -> Any:
    key = (country.upper(), region.lower())
    with _lock:
        tracker = _trackers.get(key)
        if tracker is None:
            from codecarbon import OfflineEmissionsTracker

            # CodeCarbon sets its own logger to INFO on import; we report its figures.
            logging.getLogger("codecarbon").setLevel(logging.ERROR)

            # Offline: the online tracker calls the network for every new tracker and
            # quietly falls back to Canada when it cannot.
            # Left out unless set: CodeCarbon's default reads its own configuration.
            whole_cpu_w = _forced_cpu_watts()
            forced: dict[str, Any] = {"force_cpu_power": whole_cpu_w} if whole_cpu_w else {}
            tracker = OfflineEmissionsTracker(
                **forced,
                country_iso_code=key[0],
                region=key[1] or None,
                output_methods=[],  # we store the figures ourselves
                log_level="error",
                measure_power_secs=1,
                tracking_mode="machine",
                allow_multiple_runs=True,
            )
            # CodeCarbon's __init__ swallows its own exceptions and returns half a
            # tracker; refuse it here rather than fail obscurely in the first run.
            if not hasattr(tracker, "_hardware"):
                raise RuntimeError(f"CodeCarbon could not start a tracker for {key}")
            monitor = tracker._scheduler_monitor_power  # private: see Hardware.of
            assert monitor is not None, "CodeCarbon made no power monitor"
            replaced: Any = _Monitor(monitor.interval, monitor.function)
            tracker._scheduler_monitor_power = replaced
            _trackers[key] = tracker
        return tracker


class _Monitor:
    """In place of the scheduler of CodeCarbon's power monitor, which starts a thread
    for every task and waits for it to run: ~0.5 ms of every run before its code can
    start, more on a busy host. This one keeps one thread for the life of the tracker,
    which `start` and `stop` never wait for or wake (each wake costs the run a hand-over
    of the GIL), and calls `function` as CodeCarbon's does: every `interval` seconds
    while started, the first an interval after `start`."""

    def __init__(self, interval: float, function: Callable[[], None]):
        self.interval = interval
        self.function = function
        self._lock = threading.Lock()
        self._stopped = True
        self._started = 0  # how many times: a restart begins a new interval
        self._started_at = 0.0
        self._thread: threading.Thread | None = None

    def start(self, from_run: bool = False) -> None:
        with self._lock:
            if not self._stopped:
                return
            self._stopped = False
            self._started += 1
            self._started_at = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="codecarbon-monitor", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True

    def _serve(self) -> None:
        seen, due = 0, 0.0
        while True:
            with self._lock:
                stopped, started = self._stopped, self._started
                if started != seen:
                    seen, due = started, self._started_at + self.interval
            left = due - time.monotonic()
            if stopped or left > 0:
                # Never longer than an interval (`left` is at most one): a start
                # meanwhile is seen in time.
                time.sleep(self.interval if stopped else left)
                continue
            due += self.interval
            try:
                self.function()
            except Exception:
                logger.exception("CodeCarbon's power monitor failed")


def warm(country: str | None = None, region: str | None = None) -> None:
    """Pay CodeCarbon's one-off hardware detection now, not in the first run."""
    Session(country, region).end()


def _threads() -> int:
    return psutil.cpu_count() or 1


def _forced_cpu_watts() -> float | None:
    """What tracker_for gives CodeCarbon as the whole CPU's power (None: nothing)."""
    from codecarbon.core import cpu
    from codecarbon.core.hardware_cache import get_cached_tdp

    return forced_cpu_watts(
        cpu.is_rapl_available(),
        get_cached_tdp(cpu).model or "",
        cpu_power.host_identity(),
        _threads(),
    )


def forced_cpu_watts(
    counter: bool, model: str, identity: cpu_power.Identity, threads: int
) -> float | None:
    """The whole CPU's power we give CodeCarbon, so that its machine figure prices a
    busy thread as the snippet's figure does: the operator's, or the published
    model's where CodeCarbon would guess. None: CodeCarbon's own (an energy counter,
    which a forced figure would switch off, or its TDP table)."""
    if settings.CPU_WATTS_PER_THREAD:
        return settings.CPU_WATTS_PER_THREAD * threads
    if counter or _codecarbon_knows(model):
        return None
    return cpu_power.published(identity).watts * threads


def power_source(cpu_mode: str, model: str) -> str:
    """What prices a busy thread, best first: an energy counter, the operator's
    figure, CodeCarbon's TDP for this model, the published model for its generation."""
    if cpu_mode in MEASURED_CPU_MODES:
        return POWER_COUNTER
    if settings.CPU_WATTS_PER_THREAD:
        return POWER_OPERATOR
    return POWER_TABLE if _codecarbon_knows(model) else POWER_PUBLISHED


@dataclass(frozen=True)
class Hardware:
    cpu_mode: str
    cpu_model: str
    cpu_threads: int
    cpu_tdp_w: float
    ram_total_bytes: int
    ram_w: float
    gpu_count: int
    gpu_model: str
    cpu_power_source: str = POWER_TABLE
    cpu_identity: cpu_power.Identity = cpu_power.UNKNOWN

    @property
    def cpu_measured(self) -> bool:
        return self.cpu_mode in MEASURED_CPU_MODES

    @property
    def watts_per_thread(self) -> float:
        return self.cpu_tdp_w / max(self.cpu_threads, 1)

    @property
    def range_w(self) -> tuple[float, float] | None:
        """What a busy thread may draw, by the published load curve (None: a counter
        measures it)."""
        if self.cpu_measured:
            return None
        low, high = cpu_power.range_factors()
        return (self.watts_per_thread * low, self.watts_per_thread * high)

    @property
    def published(self) -> cpu_power.Published:
        return cpu_power.published(self.cpu_identity)

    def cpu_power(self) -> str:
        """Where the power of a busy thread comes from, in a few words (the card)."""
        return {
            POWER_COUNTER: f"{self.cpu_mode} energy counter",
            POWER_OPERATOR: f"{self.watts_per_thread:g} W per busy thread, set by the operator",
            POWER_TABLE: f"{self.watts_per_thread:g} W per busy thread, from CodeCarbon's "
            "TDP table",
            POWER_PUBLISHED: f"{self.watts_per_thread:g} W per busy thread, from "
            f"{cpu_power.reference()['model']}",
        }[self.cpu_power_source]

    def cpu_power_sentence(self) -> str:
        """The same, in a sentence that says what the figure rests on."""
        per_thread = f"CPU time × {self.watts_per_thread:g} W per busy thread"
        return {
            POWER_OPERATOR: f"{per_thread}, set by this server's operator (CPU_WATTS_PER_THREAD)",
            POWER_TABLE: f"{per_thread}: CodeCarbon's {self.cpu_tdp_w:g} W TDP for the "
            f"{self.cpu_model} shared by its {self.cpu_threads} threads",
            POWER_PUBLISHED: f"{per_thread}: CodeCarbon has no power figure for this CPU model "
            f"({self.cpu_model!r}), so its generation is priced by "
            f"{self.published.sentence()}",
        }[self.cpu_power_source]

    @classmethod
    def of(cls, tracker: Any) -> Hardware:
        # CodeCarbon has no public API for what it detected: we read its private
        # attributes (_hardware, _conf and the CPU's _mode, _model, _tdp, _cpu_count),
        # which is safe only because requirements.txt pins its exact version, and
        # tests/test_execution.py checks they are still there.
        from codecarbon.external.hardware import CPU
        from codecarbon.external.ram import RAM

        cpu = next(h for h in tracker._hardware if isinstance(h, CPU))
        ram = next((h for h in tracker._hardware if isinstance(h, RAM)), None)
        conf = tracker._conf
        model = cpu._model or conf.get("cpu_model") or "unknown CPU"
        return cls(
            cpu_mode=cpu._mode,
            cpu_model=model,
            cpu_threads=cpu._cpu_count or _threads(),
            cpu_tdp_w=float(cpu._tdp or 0),
            ram_total_bytes=psutil.virtual_memory().total,
            ram_w=ram.total_power().W if ram else 0.0,
            gpu_count=int(conf.get("gpu_count") or 0),
            gpu_model=str(conf.get("gpu_model") or ""),
            cpu_power_source=power_source(cpu._mode, model),
            cpu_identity=cpu_power.host_identity(),
        )


def _codecarbon_knows(model: str) -> bool:
    """Whether CodeCarbon's TDP table has a figure for this CPU model: without one it
    assumes a default per thread (private API, see Hardware.of)."""
    from codecarbon.core import cpu
    from codecarbon.core.hardware_cache import get_cached_tdp

    return get_cached_tdp(cpu)._get_cpu_power_from_registry(model) is not None


@functools.cache
def _hardware_of(tracker: Any) -> Hardware:
    # What CodeCarbon detected does not change for a tracker's life: read it once.
    return Hardware.of(tracker)


@dataclass
class Figures:
    """Everything measured about one run, ready to store on the Run."""

    energy_kwh: float
    cpu_energy_kwh: float
    ram_energy_kwh: float
    gpu_energy_kwh: float | None
    machine_energy_kwh: float
    machine_cpu_energy_kwh: float
    machine_ram_energy_kwh: float
    machine_gpu_energy_kwh: float | None
    emissions_g: float
    machine_emissions_g: float
    carbon_intensity_g_per_kwh: float
    country_iso_code: str
    region: str
    provenance: dict[str, Any] = field(default_factory=dict[str, Any])


class Session:
    """One run's measurement: a CodeCarbon task plus our own attribution."""

    def __init__(self, country: str | None = None, region: str | None = None):
        self.country = (country or settings.CODECARBON_COUNTRY).upper()
        self.region = (region if region is not None else settings.CODECARBON_REGION).lower()
        self.tracker = tracker_for(self.country, self.region)
        self.task = uuid.uuid4().hex
        self.machine_cpu_start = _machine_cpu_seconds()
        self.tracker.start_task(self.task)
        # CodeCarbon's task spans more than the run: the sandbox's start and end, and,
        # in a fresh process, whatever its tracker had not yet accounted.
        self.window_start = time.perf_counter()
        self.stopped = False
        self.hardware = _hardware_of(self.tracker)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()

    def end(self) -> None:
        """Stop measuring, if `finish` has not: a task left open (a run that ended in
        an exception) makes the tracker refuse every later one ("A task is already
        under measure"), and every later run of this grid fails."""
        if not self.stopped:
            self._stop()

    def _stop(self) -> Any:
        """Stop CodeCarbon's task, once; its figures."""
        self.stopped = True
        task = self.tracker.stop_task(self.task)
        # CodeCarbon keeps every finished task forever (~2.6 KB each); we have read
        # ours, so drop it and the tracker's memory stays flat in a long-lived worker.
        # (_tasks is private: see Hardware.of on the pinned version.)
        self.tracker._tasks.pop(self.task, None)
        return task

    def live_watts(self, cpu_threads_busy: float, memory_bytes: int) -> float:
        """The snippet's power right now: busy threads and memory share (GPU excluded)."""
        hw = self.hardware
        ram_share = memory_bytes / hw.ram_total_bytes if hw.ram_total_bytes else 0.0
        return cpu_threads_busy * hw.watts_per_thread + hw.ram_w * ram_share

    def finish(self, outcome: Outcome) -> Figures:
        task = self._stop()
        window = time.perf_counter() - self.window_start
        machine_cpu = max(_machine_cpu_seconds() - self.machine_cpu_start, outcome.cpu_s)
        hw = self.hardware
        if hw.cpu_measured and machine_cpu > 0:
            cpu_kwh = task.cpu_energy * min(outcome.cpu_s / machine_cpu, 1.0)
        else:
            cpu_kwh = outcome.cpu_s * hw.watts_per_thread / KWH_IN_J
        ram_share_seconds = (
            outcome.memory_byte_seconds / hw.ram_total_bytes if hw.ram_total_bytes else 0
        )
        ram_kwh = hw.ram_w * ram_share_seconds / KWH_IN_J
        gpu_kwh = task.gpu_energy if hw.gpu_count else None
        energy = cpu_kwh + ram_kwh + (gpu_kwh or 0.0)
        intensity = intensity_for(self.country, self.region)
        machine = machine_figures(task, hw, outcome.wall_s, window, energy)
        return Figures(
            energy_kwh=energy,
            cpu_energy_kwh=cpu_kwh,
            ram_energy_kwh=ram_kwh,
            gpu_energy_kwh=gpu_kwh,
            machine_energy_kwh=machine.energy,
            machine_cpu_energy_kwh=machine.cpu,
            machine_ram_energy_kwh=machine.ram,
            machine_gpu_energy_kwh=machine.gpu if hw.gpu_count else None,
            emissions_g=energy * intensity,
            machine_emissions_g=machine.energy * intensity,
            carbon_intensity_g_per_kwh=intensity,
            country_iso_code=self.country,
            region=self.region,
            provenance=self.provenance(task, outcome),
        )

    def provenance(self, task: Any, outcome: Outcome) -> dict[str, Any]:
        hw = self.hardware
        if hw.cpu_measured:
            cpu: dict[str, Any] = {
                "method": "measured",
                "source": f"{hw.cpu_mode} energy counter × the snippet's share of all CPU time",
            }
        else:
            cpu = {
                "method": "estimate",
                "source": f"{hw.cpu_power_sentence()}; no energy counter (RAPL) readable "
                "on this host",
                "range_w": list(hw.range_w or ()),
                "reference": cpu_power.reference(),
            }
        cpu |= {
            "identity": hw.cpu_identity.as_dict(),
            "generation": cpu_power.generation_of(hw.cpu_identity),
            "power": hw.cpu_power(),
            "power_source": hw.cpu_power_source,
            "time": CPU_TIME_SOURCES.get(outcome.cpu_source, ""),
            "time_source": outcome.cpu_source,
            "codecarbon_mode": hw.cpu_mode,
            "model": hw.cpu_model,
            "tdp_w": hw.cpu_tdp_w,
            "threads": hw.cpu_threads,
            "watts_per_thread": hw.watts_per_thread,
        }
        ram = {
            "method": "estimate",
            "source": f"{hw.ram_w:g} W for this machine's {hw.ram_total_bytes / 2**30:.1f} GiB "
            "(CodeCarbon's DIMM model) × the snippet's share of memory over time",
            "machine_w": hw.ram_w,
            "total_bytes": hw.ram_total_bytes,
        }
        if hw.gpu_count:
            gpu = {
                "method": "measured",
                "source": "NVML total-energy counter of every GPU on the host, whole device",
                "model": hw.gpu_model,
                "count": hw.gpu_count,
            }
        else:
            gpu = {"method": "none", "source": "no NVIDIA GPU on this host", "count": 0}
        return {
            "cpu": cpu,
            "ram": ram,
            "gpu": gpu,
            "machine": "CodeCarbon's task figure for the whole machine (tracking mode "
            f"{self.tracker._conf.get('tracking_mode')}), other processes included, taken over "
            "the run's own duration (its average power over the task × the run's time) and "
            "held between the snippet's own energy and the machine's power bound (CPU TDP + "
            "RAM) × that time",
            "intensity_source": "CodeCarbon offline data (Our World in Data energy mix; "
            "regional tables for USA/Canada)",
            "pue": task.pue,
            "codecarbon_version": task.codecarbon_version,
            "host": settings.HOST_NAME,
            "python": outcome.python_version,
        }


class Machine(NamedTuple):
    """The whole machine's energy during a run (kWh), and its parts."""

    energy: float
    cpu: float
    ram: float
    gpu: float


def machine_figures(task: Any, hw: Hardware, wall_s: float, window_s: float, own: float) -> Machine:
    """CodeCarbon's task figure, which spans `window_s` (the sandbox's start and end,
    and what a fresh tracker had not accounted yet), taken over the run's own `wall_s`:
    its average power × the run's time. Then held where it is physically possible:
    never below the snippet's `own` energy, never above the machine's power bound (its
    CPU's TDP and its RAM's power, and the GPU's measured share) × the run's time."""
    scale = min(wall_s / window_s, 1.0) if window_s > 0 else 1.0
    cpu, ram = task.cpu_energy * scale, task.ram_energy * scale
    gpu = (task.gpu_energy or 0.0) * scale
    bound = (hw.cpu_tdp_w + hw.ram_w) * wall_s / KWH_IN_J
    cpu_ram = min(cpu + ram, bound)
    if cpu + ram > cpu_ram:  # both parts kept in their proportion
        cpu, ram = cpu * cpu_ram / (cpu + ram), ram * cpu_ram / (cpu + ram)
    energy = max(cpu + ram + gpu, own)
    return Machine(energy, cpu, ram, gpu)


def _machine_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))

"""GPU check: a snippet's reported GPU energy against NVML's own counter.

Run on a machine with an NVIDIA GPU (as root, after `make setup`):

    SECRET_KEY=x .venv/bin/python benchmarks/gpu_check.py

It runs a snippet that keeps the GPU busy for about SECONDS seconds (CUDA driver API
through ctypes, so the snippet needs no CUDA Python package), through the same path as
every run (sandbox + CodeCarbon), and compares the run's `gpu_energy_kwh` with the
increase of NVML's total-energy counter, summed over all GPUs, read around the run.
Exits 0 when they agree within 2%.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / 'gpu-check.sqlite3'}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

import django  # noqa: E402

django.setup()

import pynvml  # noqa: E402
from django.core.management import call_command  # noqa: E402

from runs import sandbox  # noqa: E402
from runs.figures import measure  # noqa: E402
from runs.models import Run  # noqa: E402
from runs.queue import baselines, execution, heartbeat  # noqa: E402

SECONDS = 20
TOLERANCE = 0.02
GPU_SNIPPET = f"""
import ctypes, time
cuda = ctypes.CDLL("libcuda.so.1")
def check(status, what):
    if status != 0:
        raise SystemExit(f"{{what}} failed with CUDA error {{status}}")
check(cuda.cuInit(0), "cuInit")
device, context, buffer = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
check(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
check(cuda.cuCtxCreate_v2(ctypes.byref(context), 0, device), "cuCtxCreate")
words = 1 << 28  # 1 GiB of 32-bit words
check(cuda.cuMemAlloc_v2(ctypes.byref(buffer), words * 4), "cuMemAlloc")
deadline, passes = time.time() + {SECONDS}, 0
while time.time() < deadline:
    for value in range(64):
        check(cuda.cuMemsetD32_v2(buffer, value, ctypes.c_size_t(words)), "cuMemsetD32")
    check(cuda.cuCtxSynchronize(), "cuCtxSynchronize")
    passes += 64
print(f"{{passes}} passes over 1 GiB of GPU memory")
"""


def nvml_total_mj() -> int:
    return sum(
        pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i))
        for i in range(pynvml.nvmlDeviceGetCount())
    )


def main() -> int:
    (ROOT / "var").mkdir(exist_ok=True)
    call_command("migrate", verbosity=0)
    pynvml.nvmlInit()
    print(f"GPUs: {pynvml.nvmlDeviceGetCount()}, sandbox devices: {sandbox.gpu_devices()}")
    measure.warm()
    baselines.current_baseline()
    run = Run.objects.submit(GPU_SNIPPET, timeout_s=SECONDS + 30)
    before = nvml_total_mj()
    execution.execute(run)
    after = nvml_total_mj()
    heartbeat.stop()
    run.refresh_from_db()
    print(f"run {run.public_id}: {run.status}; {run.stdout.strip()} {run.error}")
    if run.status != Run.Status.SUCCEEDED or run.gpu_energy_kwh is None:
        print(run.stderr[-2000:])
        return 1
    counter_j = (after - before) / 1000
    reported_j = run.gpu_energy_kwh * 3.6e6
    ratio = reported_j / counter_j
    print(f"NVML counter over the run: {counter_j:.1f} J")
    print(f"reported gpu_energy_kwh:   {reported_j:.1f} J ({run.gpu_energy_kwh:.6g} kWh)")
    print(f"ratio {ratio:.4f}: {'PASS' if abs(ratio - 1) <= TOLERANCE else 'FAIL'} (within 2%)")
    return 0 if abs(ratio - 1) <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())

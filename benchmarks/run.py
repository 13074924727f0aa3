"""`make bench`: the numbers DESIGN.md aims at, each measured against a baseline taken in
the same run (these machines are shared and noisy: ratios, not absolute timings).

Uses its own SQLite database (var/bench.sqlite3) and starts its own worker.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = ROOT / "var" / "bench.sqlite3"
os.environ["DATABASE_URL"] = f"sqlite:///{BENCH_DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from runs import measure, sandbox  # noqa: E402
from runs.models import Run  # noqa: E402

BUSY = "import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < {s}: pass\n"


def line(name: str, value: str, target: str, ok: bool) -> None:
    print(f"  {name:<58} {value:>16}   target {target:<14} {'ok' if ok else 'MISSED'}")


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def bare_python_seconds(n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([settings.SNIPPET_PYTHON, "-I", "-c", "print('hi')"], capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def bench_overhead(n: int = 40) -> None:
    print("Run overhead: POST /run for print('hi'), through the queue and the sandbox")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "worker"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for out in worker.stdout:
            if "ready" in out:
                break
        client = Client()
        api, bare = [], []
        for i in range(n + 3):
            start = time.perf_counter()
            response = client.post("/run", {"code": "print('hi')"}, content_type="application/json")
            elapsed = time.perf_counter() - start
            assert response.status_code == 200 and response.json()["stdout"] == "hi\n", response
            if i >= 3:  # warm-up
                api.append(elapsed)
                bare.extend(bare_python_seconds(1))
        sandbox_only = []
        limits = sandbox.Limits.from_settings()
        for _ in range(n):
            start = time.perf_counter()
            sandbox.run("print('hi')", limits)
            sandbox_only.append(time.perf_counter() - start)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    overhead = median_ms(api) - median_ms(bare)
    print(f"  bare `python -I -c \"print('hi')\"`: median {median_ms(bare):.1f} ms")
    print(f"  sandbox.run alone:                    median {median_ms(sandbox_only):.1f} ms")
    print(f"  POST /run, submit to finished:        median {median_ms(api):.1f} ms")
    line(
        "overhead of POST /run over bare python (median)",
        f"{overhead:.1f} ms",
        "<= 40 ms",
        overhead <= 40,
    )


def attributed_cpu_kwh(code: str) -> float:
    session = measure.Session()
    outcome = sandbox.run(code, sandbox.Limits.from_settings(30))
    return session.finish(outcome).cpu_energy_kwh


def bench_energy(repeats: int = 3) -> None:
    print("Attributed CPU energy (the snippet's own, from its CPU time)")
    measure.warm()
    one = [attributed_cpu_kwh(BUSY.format(s=1.0)) for _ in range(repeats)]
    two = [attributed_cpu_kwh(BUSY.format(s=2.0)) for _ in range(repeats)]
    idle = [attributed_cpu_kwh("import time\ntime.sleep(1)") for _ in range(repeats)]
    ratio = statistics.median(two) / statistics.median(one)
    line("busy 2 s / busy 1 s", f"{ratio:.3f}", "2.00 ± 0.05", abs(ratio - 2) <= 0.05)
    sleep_share = statistics.median(idle) / statistics.median(one)
    line("sleep(1) / busy 1 s", f"{sleep_share:.2%}", "<= 2%", sleep_share <= 0.02)


def main() -> None:
    BENCH_DB.parent.mkdir(exist_ok=True)
    BENCH_DB.unlink(missing_ok=True)
    call_command("migrate", verbosity=0)
    Run.objects.all().delete()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"CodeCarbon Playground benchmarks, {when}, {os.cpu_count()} CPUs\n")
    bench_overhead()
    print()
    bench_energy()


if __name__ == "__main__":
    main()

"""How far a run travels through the code: the modules its path visits.

Run after `make setup` (the playground's static files collected), from a checkout:

    SECRET_KEY=x .venv/bin/python benchmarks/paths.py

Two paths: a playground POST to runs:create until its response (no worker runs, so it
is the plain path: stored, queued, waited for), and that queued run through the
worker's task until it is stored. Every first call of a function in a `runs.*` module
on this thread is recorded (a loop's later calls, such as the sandbox's ticks, are the
same visit), and consecutive calls in one module are one stop. It prints, per path:
stops, distinct modules, climbs (a stop in a higher part of runs/architecture.py than
the one before) and returns (a stop in a module the path had already left). The counts
describe the code, not this machine; run it on two commits to compare them.
"""

import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# A database of its own; the built environments and static files are the checkout's.
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/paths.sqlite3"
os.environ["HANDOVER"] = "0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from runs.architecture import layer_of  # noqa: E402
from runs.models import Run  # noqa: E402
from runs.queue import tasks  # noqa: E402


def traced(call):
    """`call()`, and the counts of the path it took."""
    stops, seen = [], set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code not in seen:
            seen.add(frame.f_code)
            module = frame.f_globals.get("__name__", "")
            if module.startswith("runs.") and (not stops or stops[-1] != module):
                stops.append(module)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    left, climbs, returns = set(), 0, 0
    for before, module in itertools.pairwise(stops):
        left.add(before)
        climbs += layer_of(module) < layer_of(before)
        returns += module in left
    return {
        "stops": len(stops),
        "modules": len(set(stops)),
        "climbs": climbs,
        "returns": returns,
        "path": " > ".join(m.removeprefix("runs.") for m in stops),
    }


def main() -> None:
    call_command("migrate", verbosity=0)
    client = Client(REMOTE_ADDR="127.9.9.9", HTTP_HOST="localhost")
    client.get(reverse("runs:playground"))  # the session, as a visitor's
    form = {"code": "print('hi')"}
    web = traced(lambda: client.post(reverse("runs:create"), form, HTTP_HX_REQUEST="true"))
    run = Run.objects.get()
    worker = traced(lambda: tasks.execute_run.call(run.pk))
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, (run.status, run.error)
    print(json.dumps({"request": web, "worker": worker}, indent=2))


if __name__ == "__main__":
    main()

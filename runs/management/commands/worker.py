from django.conf import settings
from django.core.management.base import BaseCommand

from runs.queue import worker


class Command(BaseCommand):
    help = (
        "Run queued snippets, one at a time (measurements are machine-wide, so runs "
        "on one machine must not overlap). Start more workers on more machines to scale."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=float,
            default=settings.WORKER_POLL_INTERVAL,
            help="Seconds between polls of an empty queue; a run queued on this machine "
            "wakes the worker at once (default: %(default)s).",
        )
        parser.add_argument(
            "--max-tasks", type=int, default=None, help="Exit after this many runs."
        )

    def handle(self, *, interval: float, max_tasks: int | None, **options) -> None:
        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()  # read by whoever waits for "ready" (bin/serve, tests)

        worker.serve(interval, max_tasks, say, self.stderr.write)

from django.conf import settings
from django.core.management.base import BaseCommand
from django_tasks_db.management.commands.db_worker import Worker as QueueWorker

from runs import cgroups, execution, measure
from runs.models import Run


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
            help="Seconds to wait between polls of an empty queue (default: %(default)s).",
        )
        parser.add_argument(
            "--max-tasks", type=int, default=None, help="Exit after this many runs."
        )

    def handle(self, *, interval: float, max_tasks: int | None, **options) -> None:
        beat = execution.heartbeat()
        failed = Run.objects.fail_orphans()
        if failed:
            self.stderr.write(f"Marked {failed} run(s) of dead workers as errors.")
        swept = cgroups.sweep_orphans()
        if swept:
            self.stderr.write(f"Stopped what was left of {swept} dead worker run(s).")
        measure.warm()
        self.stdout.write(f"Worker {beat.worker.name} ready.")
        worker = QueueWorker(
            queue_names=["default"],
            interval=interval,
            batch=False,
            backend_name="default",
            startup_delay=False,
            max_tasks=max_tasks,
            worker_id=beat.worker.name[-64:],
            excluded_queue_names=[],
        )
        worker.configure_signals()
        try:
            worker.run()
        finally:
            execution.stop_heartbeat()

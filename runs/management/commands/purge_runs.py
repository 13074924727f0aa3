from django.core.management.base import BaseCommand

from runs.models import retention


class Command(BaseCommand):
    help = (
        "Delete runs past RUN_RETENTION_DAYS (a repeat or comparison with all its runs), "
        "trim output past RUN_OUTPUT_RETENTION_DAYS and clear expired sessions. Workers "
        "do this hourly; run it from cron where no worker runs."
    )

    def handle(self, **options) -> None:
        done = retention.purge()
        self.stdout.write(
            f"Deleted {done['series']} series and {done['runs']} single runs; "
            f"trimmed the output of {done['trimmed']} streams."
        )

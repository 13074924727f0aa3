from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Snippet runs"

    def ready(self) -> None:
        from . import checks, logins  # noqa: F401 (register the system checks, signals)
        from .queue.direct import waiting  # noqa: F401 (register the system checks, signals)

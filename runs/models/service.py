"""What the service keeps about its own upkeep: fleet-wide chores, failed logins."""

from django.db import models
from django.utils import timezone


class Maintenance(models.Model):
    """When a fleet-wide chore (retention) last ran: one row per chore."""

    name = models.CharField(max_length=32, unique=True)
    last_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} (last {self.last_run_at})"


class LoginFailure(models.Model):
    """A failed admin login, counted per client to slow password guessing."""

    client = models.CharField(max_length=64)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["client", "at"], name="login_failure_idx")]

    def __str__(self) -> str:
        return f"{self.client} at {self.at}"

"""What the service keeps about its own upkeep: fleet-wide chores, failed logins, the
bytes each client's runs stored."""

from django.db import connections, models, router
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


def column(model: type[models.Model], name: str) -> str:
    """The database column of `model`'s field `name`, for SQL written by hand."""
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field), f"{name} is a relation, not a column"
    return str(field.column)


class StoredBytes(models.Model):
    """What one client's runs stored in the database on one day (UTC): code, input,
    output and figures, counted as each run ends. The storage budget reads it
    (runs.models.limits): one indexed row per check, however many runs the client sent."""

    client = models.CharField(max_length=64)
    day = models.DateField()
    bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "day"], name="stored_bytes_client_day")
        ]

    def __str__(self) -> str:
        return f"{self.client} on {self.day}: {self.bytes} bytes"

    @classmethod
    def charge(cls, client: str, amount: int, using: str | None = None) -> None:
        """Add `amount` bytes to `client`'s today (nothing for the operator's own runs,
        which have no client). One statement, on a run's end path: an upsert, which
        SQLite and PostgreSQL both spell so."""
        if not client or amount <= 0:
            return
        connection = connections[using or router.db_for_write(cls)]
        quote, meta = connection.ops.quote_name, cls._meta
        table = quote(meta.db_table)
        client_, day, bytes_ = (quote(column(cls, f)) for f in ("client", "day", "bytes"))
        sql = (
            f"INSERT INTO {table} ({client_}, {day}, {bytes_}) VALUES (%s, %s, %s) "  # noqa: S608
            f"ON CONFLICT ({client_}, {day}) DO UPDATE SET {bytes_} = {table}.{bytes_} + %s"
        )
        today = connection.ops.adapt_datefield_value(timezone.now().date())
        with connection.cursor() as cursor:
            cursor.execute(sql, [client, today, amount, amount])

    @classmethod
    def used_today(cls, client: str) -> int:
        row = cls.objects.filter(client=client, day=timezone.now().date()).first()
        return row.bytes if row else 0

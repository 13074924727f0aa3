import hashlib

from django.db import migrations, models


def digest_series_outputs(apps, schema_editor):
    """The runs of series already stored get their digest, so their pages can say
    whether their outputs agree (runs.snippets.outputs.digest, copied: a migration
    must not change when the code does)."""
    Run = apps.get_model("runs", "Run")
    finished = Run.objects.filter(series__isnull=False).exclude(status__in=["queued", "running"])
    for pk, stdout in finished.values_list("pk", "stdout").iterator(chunk_size=200):
        value = hashlib.sha256(stdout.encode("utf-8", "surrogatepass")).hexdigest()
        Run.objects.filter(pk=pk).update(stdout_digest=value)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0013_standard_input"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="stdout_digest",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(digest_series_outputs, migrations.RunPython.noop),
    ]

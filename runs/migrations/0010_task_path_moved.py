from django.db import migrations

OLD, NEW = "runs.tasks.", "runs.queue.tasks."


def follow_the_move(apps, schema_editor):
    """Tasks queued before the queue moved to runs.queue: their path follows it, so a
    worker of the new code runs them instead of failing to import them."""
    results = apps.get_model("django_tasks_database", "DBTaskResult")
    for result in results.objects.filter(task_path__startswith=OLD).only("task_path"):
        result.task_path = NEW + result.task_path.removeprefix(OLD)
        result.save(update_fields=["task_path"])


def back(apps, schema_editor):
    results = apps.get_model("django_tasks_database", "DBTaskResult")
    for result in results.objects.filter(task_path__startswith=NEW).only("task_path"):
        result.task_path = OLD + result.task_path.removeprefix(NEW)
        result.save(update_fields=["task_path"])


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0009_live_output_chunks"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [migrations.RunPython(follow_the_move, back)]

"""Two indexes fewer on the events every create writes: event_id (nothing looks it up) and
created_at (prune_changes walks the primary key). SQLite rebuilds the table to drop the
unique constraint, which drops its trigger: it is made again here."""

import uuid

from django.db import migrations, models

from changes.migrations import _event_guard


class Migration(migrations.Migration):
    dependencies = [("changes", "0002_event_triggers")]

    operations = [
        migrations.RemoveIndex(model_name="event", name="changes_event_created_idx"),
        migrations.AlterField(
            model_name="event",
            name="event_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False),
        ),
        migrations.RunPython(_event_guard.recreate_on_sqlite, migrations.RunPython.noop),
    ]

"""The audit trail moves to an app of its own (audit/): its model leaves this app's state;
its table, artifacts_auditevent, stays where it is, with its triggers and its rows."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("artifacts", "0009_lifecycle_and_truncate_guards"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEvent")],
            database_operations=[],
        ),
    ]

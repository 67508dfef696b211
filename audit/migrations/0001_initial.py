"""The audit trail, moved from the artifacts app: the model enters this app's state over the
table it already has (artifacts_auditevent: made by artifacts/0001, with its triggers and
rows), and its content type moves with it, so the permissions given on it (the editors'
view_auditevent) follow."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="audit", model="auditevent").exists():
        ContentType.objects.filter(app_label="artifacts", model="auditevent").update(app_label="audit")


def move_content_type_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="audit", model="auditevent").update(app_label="artifacts")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("artifacts", "0010_auditevent_moves_to_audit"),
        ("stories", "0003_orderings_scene_index"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("action", models.CharField(db_index=True, max_length=40)),
                        ("target_type", models.CharField(max_length=40)),
                        ("target_id", models.UUIDField()),
                        ("from_value", models.JSONField(blank=True, null=True)),
                        ("to_value", models.JSONField(blank=True, null=True)),
                        ("request_id", models.CharField(blank=True, db_index=True, default="", max_length=64)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "story",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="audit_events",
                                to="stories.story",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "artifacts_auditevent",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [
                            models.Index(fields=["target_type", "target_id", "-created_at"], name="audit_target_idx"),
                            models.Index(fields=["action", "-created_at"], name="audit_action_created_idx"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]

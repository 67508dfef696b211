"""Indexes that match the reads (artifacts/selectors.py names each reader).

Dropped: artifact_story_scene_type_idx (every lookup it could serve has a unique stream
index), the story and scene foreign-key indexes (each is the leading column of a new
composite), the created_by index (nothing reads by author) and the full content_sha256
index (only media rows have a digest: a partial index holds just those).

On SQLite, altering the foreign keys rebuilds artifacts_artifact, which drops its
immutability triggers: the last operation re-creates them.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from artifacts.migrations._immutability import recreate_on_sqlite

# The table's columns at this migration, in the triggers' order.
ARTIFACT_COLUMNS = [
    "id", "story_id", "scene_id", "type", "version", "parent_id", "kind", "payload", "content",
    "content_sha256", "content_size", "mime_type", "lifecycle_state", "request_id",
    "created_by_step_id", "created_by_id", "created_at", "pruned_at",
]


class Migration(migrations.Migration):

    dependencies = [
        ('artifacts', '0005_lineage_walk'),
        ('runs', '0003_list_indexes'),
        ('stories', '0003_orderings_scene_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='artifact',
            options={'ordering': ['-created_at', '-id'], 'permissions': [('override_planning_lock', 'Can create planning artifacts on a locked scene')]},
        ),
        migrations.AlterModelOptions(
            name='auditevent',
            options={'ordering': ['-created_at', '-id']},
        ),
        migrations.RemoveIndex(
            model_name='artifact',
            name='artifact_story_scene_type_idx',
        ),
        migrations.AlterField(
            model_name='artifact',
            name='content_sha256',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AlterField(
            model_name='artifact',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True),
        ),
        migrations.AlterField(
            model_name='artifact',
            name='created_by',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='artifact',
            name='scene',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='artifacts', to='stories.scene'),
        ),
        migrations.AlterField(
            model_name='artifact',
            name='story',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='artifacts', to='stories.story'),
        ),
        migrations.AddIndex(
            model_name='artifact',
            index=models.Index(fields=['scene', '-created_at', '-id'], name='artifact_scene_created_idx'),
        ),
        migrations.AddIndex(
            model_name='artifact',
            index=models.Index(fields=['story', '-created_at', '-id'], name='artifact_story_created_idx'),
        ),
        migrations.AddIndex(
            model_name='artifact',
            index=models.Index(fields=['-created_at', '-id'], name='artifact_created_idx'),
        ),
        migrations.AddIndex(
            model_name='artifact',
            index=models.Index(condition=models.Q(('content_sha256', ''), _negated=True), fields=['content_sha256'], name='artifact_content_sha256_idx'),
        ),
        migrations.AddIndex(
            model_name='artifact',
            index=models.Index(condition=models.Q(('content_sha256', ''), _negated=True), fields=['story', '-created_at', '-id'], name='artifact_story_media_idx'),
        ),
        migrations.RunPython(recreate_on_sqlite(ARTIFACT_COLUMNS), migrations.RunPython.noop),
    ]

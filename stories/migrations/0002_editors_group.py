"""The ``editors`` group of SPEC §7: the write permissions of the API and the admin, and
``artifacts.override_planning_lock``. Nothing is deletable, so no delete permission."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

EDITORS = "editors"
MODELS = {
    "artifacts": ["artifact", "artifactrelation"],
    "stories": ["story", "scene", "storyartifactlink"],
    "runs": ["run", "agentstep", "runartifactlink"],
}
EXTRA = [("artifacts", "override_planning_lock"), ("artifacts", "view_auditevent")]


def create_editors(apps, schema_editor):
    # Permissions are normally made by post_migrate, after every migration; make them now
    # so a fresh database gets a complete group.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    wanted = [
        (app_label, f"{action}_{model}")
        for app_label, models in MODELS.items()
        for model in models
        for action in ("add", "change", "view")
    ] + EXTRA
    group, _ = Group.objects.get_or_create(name=EDITORS)
    for app_label, codename in wanted:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_editors(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=EDITORS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("stories", "0001_initial"),
        ("artifacts", "0003_immutability_triggers"),
        ("runs", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_editors, remove_editors)]

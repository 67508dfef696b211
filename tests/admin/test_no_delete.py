"""Nothing is deletable in the admin, and immutable records cannot be added or changed."""

import pytest
from django.contrib import admin
from django.urls import reverse

from artifacts.models import Artifact, ArtifactRelation
from audit.models import AuditEvent
from runs.models import AgentStep, Run, RunArtifactLink
from stories.models import Scene, Story, StoryArtifactLink

from .conftest import admin_view_url, change_url, changelist_url

ALL = [Artifact, ArtifactRelation, AuditEvent, Story, Scene, StoryArtifactLink, Run, AgentStep, RunArtifactLink]
VIEW_ONLY = [ArtifactRelation, AuditEvent, StoryArtifactLink, Run, AgentStep, RunArtifactLink]


@pytest.mark.parametrize("model", ALL, ids=lambda m: m._meta.model_name)
def test_no_delete_view_and_no_bulk_delete(editor_client, world, model, superuser, rf):
    obj = model.objects.first()
    assert editor_client.get(admin_view_url(obj, "delete")).status_code == 403
    assert editor_client.post(admin_view_url(obj, "delete"), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()

    response = editor_client.get(changelist_url(model))
    action_form = response.context["action_form"]
    choices = [name for name, _ in action_form.fields["action"].choices] if action_form else []
    assert "delete_selected" not in choices
    request = rf.get("/")
    request.user = superuser
    assert admin.site._registry[model].has_delete_permission(request, obj) is False


@pytest.mark.parametrize("model", [Artifact, *VIEW_ONLY], ids=lambda m: m._meta.model_name)
def test_immutable_records_cannot_be_added(editor_client, world, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    assert url == changelist_url(model) + "add/"
    assert editor_client.get(url).status_code == 403
    assert editor_client.post(url, {}).status_code == 403


@pytest.mark.parametrize("model", VIEW_ONLY, ids=lambda m: m._meta.model_name)
def test_view_only_records_render_read_only_and_refuse_a_post(editor_client, world, model):
    obj = model.objects.first()
    response = editor_client.get(change_url(obj))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert editor_client.post(change_url(obj), {}).status_code == 403


def test_artifact_immutable_fields_are_not_editable(editor_client, world):
    artifact = world.artifacts[1]
    response = editor_client.get(change_url(artifact))
    assert list(response.context["adminform"].form.fields) == ["payload"]

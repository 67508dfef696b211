"""The admin's side of SPEC §14: a change made in the admin writes its event; webhooks and
deliveries are listed, and "redeliver" is a POST (with CSRF) calling the service, allowed
to those who may register webhooks."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from changes.models import Delivery, DeliveryStatus, Event, Webhook
from changes.services import event_record
from tests.admin.conftest import admin_view_url


@pytest.fixture
def superuser(make_user):
    return make_user("boss", superuser=True)


def test_a_planning_lock_in_the_admin_writes_scene_locked(client, superuser, scene):
    client.force_login(superuser)
    client.post(admin_view_url(scene, "lock"))
    assert list(Event.objects.values_list("type", flat=True)) == ["scene.locked"]


def failed_delivery(story):
    from django.db import transaction

    hook = Webhook.objects.create(url="https://example.com/hook", secret="whsec_QUFB")
    with transaction.atomic():
        event_record(type="scene.locked", story_id=story.pk, data={})
    delivery = Delivery.objects.get(webhook=hook)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED, attempts=6)
    return delivery


def test_webhooks_and_deliveries_are_listed_and_redeliver_is_a_post(client, superuser, story):
    delivery = failed_delivery(story)
    client.force_login(superuser)
    assert client.get("/admin/changes/webhook/").status_code == 200
    page = client.get("/admin/changes/delivery/")
    assert page.status_code == 200 and b"Redeliver" in page.content and b"scene.locked" in page.content
    answer = client.post(
        "/admin/changes/delivery/", {"action": "redeliver", "_selected_action": [delivery.pk]}, follow=True
    )
    assert answer.status_code == 200
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)


def test_redeliver_needs_csrf_and_the_webhook_permission(make_user, story):
    delivery = failed_delivery(story)
    viewer = make_user("viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    client = Client()
    client.force_login(viewer)
    client.post("/admin/changes/delivery/", {"action": "redeliver", "_selected_action": [delivery.pk]})
    delivery.refresh_from_db()
    assert delivery.status == "failed"  # no such action for this user
    boss = make_user("boss2", superuser=True)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(boss)
    refused = strict.post("/admin/changes/delivery/", {"action": "redeliver", "_selected_action": [delivery.pk]})
    assert refused.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "failed"

"""Webhooks (SPEC §14, §12) against a real HTTP receiver on loopback, started by the test:
Standard Webhooks signatures, retries after 500s, the attempts listed, SSRF refusals at
registration and at connect time, and a receiver that never answers, which delays no writer."""

import http.server
import json
import threading
import time

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from artifacts import services as artifact_services
from changes import delivery, wakeup
from changes.models import Delivery, DeliveryAttempt, Webhook
from tests.api.conftest import client_for
from tests.conftest import SCENE_INTENT
from tests.operations.conftest import run


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers the statuses it is given
    in turn (then 200); ``hang`` makes it hold every request until released."""

    def __init__(self, statuses=(), hang=False):
        self.requests = []
        self.statuses = list(statuses)
        self.release = threading.Event()
        self.hang = hang
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers), body))
                if receiver.hang:
                    receiver.release.wait(30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**options):
        made.append(Receiver(**options))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0, 0, 0]
    yield
    delivery.stop()
    wakeup.stop_listening()


@pytest.fixture
def admin_client(make_user):
    return client_for(make_user("boss", superuser=True))


def register(client, url, **body):
    answer = client.post("/v1/webhooks", {"url": url, **body}, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_registering_shows_the_secret_once_and_needs_the_permission(admin_client, make_user, receiver, story):
    hook = register(admin_client, receiver().url, types=["artifact.created"], story_id=str(story.pk))
    assert hook["secret"].startswith("whsec_") and set(hook) == {
        "webhook_id",
        "url",
        "types",
        "story_id",
        "secret",
        "created_at",
    }
    listed = admin_client.get("/v1/webhooks").json()["results"]
    assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]] and "secret" not in listed[0]
    plain = client_for(make_user("plain"))
    assert plain.get("/v1/webhooks").status_code == 403
    assert plain.post("/v1/webhooks", {"url": "http://127.0.0.1/"}, format="json").status_code == 403
    granted = make_user("granted")
    granted.user_permissions.add(Permission.objects.get(codename="add_webhook"))
    assert client_for(granted).get("/v1/webhooks").status_code == 200
    assert admin_client.delete(f"/v1/webhooks/{hook['webhook_id']}").status_code == 204
    assert admin_client.delete(f"/v1/webhooks/{hook['webhook_id']}").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://224.0.0.1/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
        "http:///nohost",
    ],
)
def test_private_loopback_link_local_and_multicast_urls_are_400_invalid_url(admin_client, url, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    answer = admin_client.post("/v1/webhooks", {"url": url}, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_url", answer.content
    assert Webhook.objects.count() == 0


def test_an_event_is_posted_signed_and_verifiable_with_standardwebhooks(admin_client, receiver, scene):
    hook_receiver = receiver()
    hook = register(admin_client, hook_receiver.url, types=["artifact.created"])
    made = artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    assert delivery.deliver_due() == {"delivered": 1}
    [(headers, body)] = hook_receiver.requests
    event = json.loads(body)
    assert event["type"] == "artifact.created" and event["data"]["artifact_id"] == str(made.pk)
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["webhook-id"] == event["event_id"]
    Verifier(hook["secret"]).verify(body, lower)  # raises when the signature is wrong
    with pytest.raises(WebhookVerificationError):
        Verifier("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB").verify(body, lower)


def test_a_webhook_takes_only_its_types_and_story(admin_client, receiver, story, scene):
    hook_receiver = receiver()
    register(admin_client, hook_receiver.url, types=["scene.locked"])
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    assert Delivery.objects.count() == 0


def test_500s_are_retried_until_a_2xx_and_every_attempt_is_listed(admin_client, receiver, scene):
    hook_receiver = receiver(statuses=[500, 500])
    hook = register(admin_client, hook_receiver.url)
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    # With no delay between tries, one run of the deliverer tries until the receiver takes it.
    assert delivery.deliver_due() == {"pending": 2, "delivered": 1}
    attempts = admin_client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries").json()["results"]
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(3, 200), (2, 500), (1, 500)]
    assert set(attempts[0]) == {"event_id", "attempt", "status_code", "error", "duration_ms", "at"}
    assert len({r[0]["webhook-id"] for r in hook_receiver.requests}) == 1  # one event, three tries


def test_six_failed_attempts_leave_it_failed_and_redeliver_tries_again(admin_client, receiver, scene):
    hook_receiver = receiver(statuses=[500] * 6)
    register(admin_client, hook_receiver.url)
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    for _ in range(8):
        delivery.deliver_due()
    [one] = Delivery.objects.all()
    assert (one.status, one.attempts, len(hook_receiver.requests)) == ("failed", 6, 6)
    outcome = run("deliver_webhooks")
    assert outcome.code == 0 and len(hook_receiver.requests) == 6
    from changes import services

    services.deliveries_redeliver(delivery_ids=[one.pk])
    assert delivery.deliver_due() == {"delivered": 1}


def test_the_retry_waits_for_its_schedule(admin_client, receiver, scene, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [3600]
    hook_receiver = receiver(statuses=[500])
    register(admin_client, hook_receiver.url)
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    assert delivery.deliver_due() == {"pending": 1}
    assert delivery.deliver_due() == {}  # not due for an hour
    assert len(hook_receiver.requests) == 1


def test_the_address_is_checked_again_at_delivery(admin_client, receiver, scene, settings):
    hook_receiver = receiver()
    hook = register(admin_client, hook_receiver.url)
    settings.WEBHOOK_RETRY_SCHEDULE = [3600]
    settings.WEBHOOK_ALLOWED_HOSTS = []  # loopback no longer allowed when the delivery connects
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    assert delivery.deliver_due() == {"pending": 1}
    assert hook_receiver.requests == []
    [attempt] = DeliveryAttempt.objects.filter(webhook_id=hook["webhook_id"])
    assert attempt.status_code is None and attempt.error.startswith("refused")


def test_deliver_webhooks_delivers_what_is_due(admin_client, receiver, scene):
    hook_receiver = receiver()
    register(admin_client, hook_receiver.url)
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    outcome = run("deliver_webhooks")
    assert outcome.code == 0, outcome.err
    assert len(hook_receiver.requests) == 1 and "delivered  1" in outcome.out


@pytest.mark.django_db(transaction=True)
def test_the_serving_process_delivers_after_commit_and_a_dead_receiver_delays_no_writer(make_user, receiver, scene):
    admin_client = client_for(make_user("boss", superuser=True))
    hanging = receiver(hang=True)
    register(admin_client, hanging.url)
    started = time.monotonic()
    made = [
        artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
        for _ in range(3)
    ]
    writing = time.monotonic() - started
    deadline = time.monotonic() + 20
    while not hanging.requests and time.monotonic() < deadline:  # the deliverer thread took it
        time.sleep(0.05)
    assert hanging.requests, "the background deliverer never posted"
    # Three writes while the receiver holds the first delivery: none waited for it (the
    # receiver holds it up to 30 s, the delivery's timeout is 10 s).
    assert len(made) == 3 and writing < 5
    hanging.release.set()
    connections.close_all()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_deliverers_at_once_never_send_one_attempt_twice(make_user, receiver, story):
    from django.db import transaction

    from changes import services

    hook_receiver = receiver()
    services.webhook_create(url=hook_receiver.url)
    wakeup._delivery_hooks.clear()  # only the two deliverers below deliver
    try:
        with transaction.atomic():
            services.events_record([services.NewEvent("scene.locked", story.pk, None, {"n": i}) for i in range(120)])
        results = []

        def deliver():
            try:
                results.append(delivery.deliver_due(limit=10))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [headers["webhook-id"] for headers, _ in hook_receiver.requests]
        assert len(ids) == len(set(ids)) == 120
        assert sum(r.get("delivered", 0) for r in results) == 120
    finally:
        wakeup.on_deliveries(delivery.kick)

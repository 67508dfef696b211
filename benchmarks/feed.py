"""The change feed and its webhooks (SPEC §14, issue 24), each figure beside its baseline.

1. **What events cost a create**: one writer creating on one hot stream through the service
   (``artifact_create``), with its ``artifact.created`` event (on PostgreSQL written by the
   version's own INSERT statement) against the same service with the event writer switched
   off, in alternating rounds of ``--seconds``. Target: the events cost at most 10%
   (ratio >= 0.9).
2. **The feed to one reader**: ``--events`` events (100,000; 5,000 with ``--quick``) written in
   batches of 1,000, then read in order with ``GET /v1/changes?limit=1000`` through DRF
   (rendering included) and with the selector alone, in events/s. Target >= 10,000/s.
3. **Webhook delivery**: a receiver on loopback (``http.server``, threaded) and one webhook;
   ``--deliveries`` events (2,000; 200 with ``--quick``), then ``deliver_due`` delivers them,
   in deliveries/s. Target >= 200/s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_feed .venv/bin/python benchmarks/feed.py
    DATABASE_URL=sqlite:////tmp/artifacts_bench_feed.sqlite3 .venv/bin/python benchmarks/feed.py --quick

On PostgreSQL the database (its name must contain "bench") is dropped and created afresh.
"""

import argparse
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")
os.environ.setdefault("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")

import django  # noqa: E402

django.setup()
warnings.filterwarnings("ignore", message="No directory at")

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from artifacts import services as artifact_services  # noqa: E402
from artifacts.payloads import ARTIFACT_TYPES  # noqa: E402
from benchmarks import databases  # noqa: E402
from benchmarks.figures import figure  # noqa: E402
from changes import delivery, selectors, wakeup  # noqa: E402
from changes import services as change_services  # noqa: E402
from changes.models import Event, Webhook  # noqa: E402
from stories import services as story_services  # noqa: E402

PAYLOAD = ARTIFACT_TYPES["render_spec"].example


def creates_per_second(scene_id, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        artifact_services.artifact_create(scene_id=scene_id, type="render_spec", payload=PAYLOAD)
        done += 1
    return done / (time.perf_counter() - started)


class EventsOff:
    """The service with its event writer switched off: the baseline of figure 1."""

    def __enter__(self):
        self.saved = (
            change_services.with_artifact_created,
            change_services.written,
            change_services.artifacts_created,
        )
        change_services.with_artifact_created = lambda sql: (
            sql.replace(", id, story_id, scene_id, type", ", 0"),
            [],
        )
        change_services.written = lambda **kwargs: None
        change_services.artifacts_created = lambda artifacts: 0

    def __exit__(self, *exc):
        (
            change_services.with_artifact_created,
            change_services.written,
            change_services.artifacts_created,
        ) = self.saved


def event_cost(story, seconds: float, rounds: int) -> None:
    scene = story_services.scene_create(story_id=story.pk, title="hot stream")
    creates_per_second(scene.pk, min(seconds, 1.0))  # warm-up
    with EventsOff():
        creates_per_second(scene.pk, min(seconds, 1.0))
    with_events, without = [], []
    for _ in range(rounds):
        with EventsOff():
            without.append(creates_per_second(scene.pk, seconds))
        with_events.append(creates_per_second(scene.pk, seconds))
    best_with, best_without = max(with_events), max(without)
    print(f"hot stream, 1 writer: with events {best_with:.0f}/s, without {best_without:.0f}/s (best of {rounds})")
    figure("hot-stream create with events / without", best_with / best_without, "x", (">=", 0.9))


def write_events(story, count: int) -> None:
    for start in range(0, count, 1000):
        batch = [
            change_services.NewEvent("artifact.transitioned", story.pk, None, {"artifact_id": str(i), "to": "x"})
            for i in range(start, min(start + 1000, count))
        ]
        with transaction.atomic():
            change_services.events_record(batch)


def feed_rate(story, count: int) -> None:
    Event.objects.all().delete()
    write_events(story, count)
    user = get_user_model().objects.create_user(f"reader{time.time()}")
    client = APIClient()
    client.force_authenticate(user)
    client.get("/v1/changes", {"limit": "10"})  # warm-up
    started, seen, since = time.perf_counter(), 0, None
    while True:
        answer = client.get("/v1/changes", {"limit": "1000", **({"since": since} if since else {})})
        page = answer.json()
        if not page["results"]:
            break
        seen += len(page["results"])
        since = page["next"]
    api_rate = seen / (time.perf_counter() - started)
    started, after, read = time.perf_counter(), selectors.start_position(), 0
    while page := selectors.feed_page(after=after, limit=1000):
        read += len(page)
        after = page[-1].position
    selector_rate = read / (time.perf_counter() - started)
    assert seen == read == count, (seen, read, count)
    print(f"feed of {count:,} events, pages of 1,000: API {api_rate:,.0f}/s, selector {selector_rate:,.0f}/s")
    figure("feed to one reader through the API, events/s", api_rate, "/s", (">=", 10_000))


# The receiver runs in a process of its own, as a real one would: in this one it would
# share the interpreter's lock with the deliverer's threads. It answers 200 to each POST and
# tells how many it took on GET.
RECEIVER = """
import http.server, sys
count = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        count += 1
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.request_queue_size = 128
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def delivery_rate(story, count: int) -> None:
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(receiver.stdout.readline())
        url = f"http://127.0.0.1:{port}/hook"
        hook, _ = change_services.webhook_create(url=delivery.check_url(url), types=["scene.locked"])
        # Only the measured deliverer delivers: not this process's background thread too.
        wakeup._delivery_hooks.clear()
        batch = [change_services.NewEvent("scene.locked", story.pk, None, {"n": i}) for i in range(count)]
        with transaction.atomic():
            change_services.events_record(batch)
        started = time.perf_counter()
        outcomes = delivery.deliver_due(limit=200)
        rate = count / (time.perf_counter() - started)
        received = int(urllib.request.urlopen(url).read())
        assert outcomes == {"delivered": count} and received == count, (outcomes, received)
        print(f"{count:,} webhook deliveries to a loopback receiver (another process): {rate:,.0f}/s")
        figure("webhook deliveries to a loopback receiver, per second", rate, "/s", (">=", 200))
        Webhook.objects.filter(pk=hook.pk).delete()
    finally:
        receiver.terminate()
        receiver.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts, short rounds")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=2_000)
    options = parser.parse_args()
    if connection.vendor == "postgresql":
        databases.prepare(fresh=True)
    call_command("migrate", verbosity=0)
    seconds, rounds = (0.5, 1) if options.quick else (options.seconds, 3)
    events = 5_000 if options.quick else options.events
    deliveries = 200 if options.quick else options.deliveries
    story = story_services.story_create(title=f"benchmark {time.time()}")
    event_cost(story, seconds, rounds)
    feed_rate(story, events)
    delivery_rate(story, deliveries)


if __name__ == "__main__":
    main()

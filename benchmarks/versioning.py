"""Concurrent writers on one version stream: the seed's design against ArtifactService.

The baseline is the seed's own algorithm (read max(version) + 1, insert, retry up to 3
times on IntegrityError, no lock), run in the same process, on the same database, with
the same writers. Prints lost writes and throughput for each, and their ratio; the
headline figures (``FIGURE`` lines, benchmarks/figures.py) are the ratio at each number of
writers and the service's lost writes (target: none).

Warm-up: both ways first run once, untimed, with 4 writers on a scene of their own, so
neither pays for the first queries' compilation, the triggers' first calls or cold pages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_versioning \\
        .venv/bin/python benchmarks/versioning.py [--quick]

The database (its name must contain "bench") is dropped, created and migrated on every run;
``make bench`` names it ``artifacts_bench_versioning``.
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import IntegrityError, connection, transaction  # noqa: E402
from django.db.models import Max  # noqa: E402

from artifacts.models import Artifact  # noqa: E402
from artifacts.payloads import ARTIFACT_TYPES  # noqa: E402
from artifacts.services import ArtifactService  # noqa: E402
from benchmarks import databases  # noqa: E402
from benchmarks.figures import figure  # noqa: E402
from stories import services as story_services  # noqa: E402

TYPE = "render_spec"  # not a planning type: no scene-row lock, only the stream matters
PAYLOAD = ARTIFACT_TYPES[TYPE].example
WRITES_PER_WRITER = 10


def seed_create(scene) -> bool:
    """The seed's design, reproduced as the baseline: it bypasses the service on purpose."""
    for _ in range(3):
        try:
            with transaction.atomic():
                stream = Artifact.objects.filter(scene=scene, type=TYPE)
                latest = stream.order_by("-version").first()
                version = (stream.aggregate(v=Max("version"))["v"] or 0) + 1
                Artifact(story_id=scene.story_id, scene=scene, type=TYPE, version=version, parent=latest,
                         payload=PAYLOAD).save()  # fmt: skip
                return True
        except IntegrityError:
            continue
    return False


def service_create(scene) -> bool:
    ArtifactService().create_artifact(scene.pk, TYPE, PAYLOAD)
    return True


def run(create, scene, writers: int) -> tuple[int, int, float]:
    barrier = threading.Barrier(writers)
    outcomes = []
    lock = threading.Lock()

    def writer():
        barrier.wait()
        ok = 0
        try:
            for _ in range(WRITES_PER_WRITER):
                try:
                    ok += create(scene)
                except Exception:  # the baseline's failures are what we count
                    pass
        finally:
            connection.close()
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return sum(outcomes), writers * WRITES_PER_WRITER, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 writers only")
    options = parser.parse_args()
    if connection.vendor != "postgresql" or "bench" not in connection.settings_dict["NAME"]:
        sys.exit("run this against a PostgreSQL database whose name contains 'bench': DATABASE_URL=postgres://...")
    databases.prepare(fresh=True)  # afresh: an earlier run's rows would only slow the reads
    call_command("migrate", verbosity=0)
    story = story_services.story_create(title=f"benchmark {time.time()}")
    for create in (seed_create, service_create):  # the warm-up, untimed
        run(create, story_services.scene_create(story_id=story.pk, title=f"warm-up {create.__name__}"), 4)
    print(f"{'writers':>7} | {'seed: lost':>10} {'writes/s':>9} | {'service: lost':>13} {'writes/s':>9} | ratio")
    for writers in (4,) if options.quick else (4, 16, 32):
        results = {}
        for name, create in (("seed", seed_create), ("service", service_create)):
            scene = story_services.scene_create(story_id=story.pk, title=f"{name} x{writers}")
            done, attempted, elapsed = run(create, scene, writers)
            versions = list(Artifact.objects.filter(scene=scene).order_by("version").values_list("version", flat=True))
            assert versions == list(range(1, len(versions) + 1)), "versions must stay gapless"
            results[name] = (1 - done / attempted, done / elapsed)
        (seed_lost, seed_rate), (svc_lost, svc_rate) = results["seed"], results["service"]
        print(
            f"{writers:>7} | {seed_lost:>10.0%} {seed_rate:>9.0f} | {svc_lost:>13.0%} {svc_rate:>9.0f} |"
            f" service/seed committed writes/s = {svc_rate / seed_rate:.2f}x"
        )
        figure(f"{writers} writers: service / seed, committed writes/s", svc_rate / seed_rate, "x")
        figure(f"{writers} writers: the service's lost writes", svc_lost * 100, "%", ("<=", 0))


if __name__ == "__main__":
    main()

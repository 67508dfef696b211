"""The storyboard's server time (SPEC §13): a 50-scene story at 1,000,000 artifacts.

On PostgreSQL the story is added to ``dataset.py``'s 1,000,000 artifacts (the database
``reads`` and ``api`` share, loaded on first use and kept; the story is added once, under a
title of its own, and found again by later runs). Each of its 50 scenes has the 11 pipeline
streams in 3 versions (the render an image), a published primary render, 2 candidates and
every other scene a planning lock. On SQLite (``make bench-smoke``) the same story alone.

Measured, median of several rounds, each round back to back:

- the raw SQL of what the page shows, through the raw client (psycopg on PostgreSQL, the
  sqlite3 cursor otherwise): the scenes, the head of each pipeline stream of each scene, the
  scene images' primaries, the story's newest candidates;
- the page, ``GET /admin/stories/story/<id>/storyboard/`` as a superuser through Django's
  test client (in-process: no network), its queries and its database time.

Headline figures: the page's server time (target: under 300 ms) and its ratio to the raw SQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_reads .venv/bin/python benchmarks/storyboard.py
    DATABASE_URL=sqlite:////tmp/bench_storyboard.sqlite3 .venv/bin/python benchmarks/storyboard.py --quick
"""

import argparse
import hashlib
import os
import sys
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()
warnings.filterwarnings("ignore", message="No directory at")

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from artifacts.models import Artifact  # noqa: E402
from artifacts.payloads import ARTIFACT_TYPES  # noqa: E402
from benchmarks.figures import figure  # noqa: E402
from benchmarks.reads import QueryTimer, Timed, measure, superuser  # noqa: E402
from runs.pipeline.nodes import NODES  # noqa: E402
from stories.models import Scene, Story, StoryArtifactLink  # noqa: E402

TITLE = "storyboard benchmark: 50 scenes"
SCENE_COUNT, VERSIONS, CANDIDATES = 50, 3, 2
PIPELINE = [node.name for node in NODES]
PAGE_TARGET = ("<", 300)  # ms of server time (SPEC §13)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@transaction.atomic
def add_story() -> Story:
    """The 50-scene story, written in bulk (a benchmark's load, like dataset.py's SQL)."""
    story = Story.objects.create(title=TITLE, description="fifty scenes, for the storyboard's benchmark")
    scenes = Scene.objects.bulk_create(
        Scene(story=story, position=p, title=f"Scene {p}", source_text=f"Scene {p}: the keeper climbs.")
        for p in range(1, SCENE_COUNT + 1)
    )
    rows, primaries = [], []
    for index, scene in enumerate(scenes):
        for type_name in PIPELINE:
            image = type_name == "render_result"
            parent = None
            for version in range(1, VERSIONS + CANDIDATES * image + 1):
                state = "published" if version <= VERSIONS else "candidate"
                artifact = Artifact(
                    id=uuid.uuid4(),
                    story=story,
                    scene=scene,
                    type=type_name,
                    version=version,
                    parent_id=parent,
                    kind="image" if image else "json",
                    payload=ARTIFACT_TYPES[type_name].example,
                    content_sha256=digest(f"{scene.pk} {version}") if image else "",
                    content=f"content/bench/{scene.pk}-{version}" if image else "",
                    content_size=1000 if image else None,
                    mime_type="image/png" if image else "",
                    lifecycle_state=state if image else "intermediate",
                    fingerprint=digest(f"{scene.pk} {type_name} {version}"),
                )
                rows.append(artifact)
                parent = artifact.id
                if image and version == VERSIONS:
                    primaries.append(
                        StoryArtifactLink(
                            story=story, artifact=artifact, role="scene_image", scene=scene, is_primary=True
                        )
                    )
        if index % 2:
            Scene.objects.filter(pk=scene.pk).update(planning_locked=True)
    Artifact.objects.bulk_create(rows, batch_size=2000)
    StoryArtifactLink.objects.bulk_create(primaries)
    return story


def the_story() -> Story:
    story = Story.objects.filter(title=TITLE).first()
    return story if story is not None else add_story()


TYPES_CTE = "WITH t(type) AS (VALUES " + ", ".join(f"('{name}')" for name in PIPELINE) + ")"
CARD = (
    "a.id, a.story_id, a.scene_id, a.type, a.version, a.kind, a.mime_type, a.lifecycle_state, a.pruned_at,"
    " a.content_sha256, a.fingerprint, a.created_at"
)
RAW = [
    "SELECT id, position, title, source_text, planning_locked, planning_locked_at, planning_locked_by_id"
    " FROM stories_scene WHERE story_id = %s ORDER BY position",
    f"{TYPES_CTE} SELECT {CARD} FROM artifacts_artifact a WHERE a.id IN ("
    " SELECT (SELECT b.id FROM artifacts_artifact b WHERE b.scene_id = s.id AND b.type = t.type"
    " ORDER BY b.version DESC LIMIT 1) FROM stories_scene s CROSS JOIN t WHERE s.story_id = %s)",
    "SELECT l.id, l.role, l.scene_id, a.id, a.type, a.version, a.kind, a.lifecycle_state, a.pruned_at, a.mime_type"
    " FROM stories_storyartifactlink l JOIN artifacts_artifact a ON a.id = l.artifact_id"
    " WHERE l.story_id = %s AND l.is_primary",
    f"SELECT {CARD} FROM artifacts_artifact a WHERE a.story_id = %s AND a.lifecycle_state = 'candidate'"
    " ORDER BY a.created_at DESC, a.id DESC LIMIT 400",
]


def raw_client():
    """The baseline's client: psycopg without Django on PostgreSQL, the sqlite3 cursor otherwise."""
    if connection.vendor == "postgresql":
        from benchmarks.databases import raw_connection

        return raw_connection()
    connection.ensure_connection()
    return connection.connection


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed rounds (median); default 9")
    parser.add_argument("--quick", action="store_true", help="one timed round, no 1,000,000-artifact dataset")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    if connection.vendor == "postgresql":
        from benchmarks.dataset import ensure

        ensure()
    else:
        call_command("migrate", verbosity=0)
    story = the_story()
    total = Artifact.objects.count()
    print(
        f"{connection.vendor}: a story of {SCENE_COUNT} scenes among {total:,} artifacts; median of {args.runs} rounds"
    )
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    client = Client()
    client.force_login(superuser())
    url = f"/admin/stories/story/{story.pk}/storyboard/"
    story_param = story.pk if connection.vendor == "postgresql" else story.pk.hex
    captured = []
    raw = raw_client()

    def baseline():
        cursor = raw.cursor()
        for statement in RAW:
            cursor.execute(statement.replace("%s", "?") if connection.vendor == "sqlite" else statement, [story_param])
            cursor.fetchall()

    def page():
        timer = QueryTimer()
        with connection.execute_wrapper(timer):
            response = client.get(url)
        assert response.status_code == 200, response.status_code
        assert response.content.count(b'class="storyboard-scene"') == SCENE_COUNT
        captured.append((timer.seconds, timer.count))

    timed = measure({"raw": baseline, "page": page}, args.runs)
    base, shown = timed["raw"], timed["page"]
    db = Timed([seconds for seconds, _ in captured[1:]], None)
    print(
        f"\n{'storyboard, 50 scenes':<28} | {'raw SQL':>9} | {'db time':>8} {'queries':>7} | {'server':>9} {'/raw':>6}"
    )
    print(
        f"{'GET as a superuser':<28} | {base.median * 1e3:>6.1f} ms | {db.median * 1e3:>5.1f} ms {captured[-1][1]:>7}"
        f" | {shown.median * 1e3:>6.1f} ms {shown.ratio(base):>5.2f}x",
        flush=True,
    )
    figure("storyboard 50 scenes: server time", shown.median * 1e3, "ms", PAGE_TARGET)
    figure("storyboard 50 scenes: server / raw SQL", shown.ratio(base), "x")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if connection.vendor == "postgresql":
        raw.close()


if __name__ == "__main__":
    main()

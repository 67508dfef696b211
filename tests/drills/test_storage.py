"""Drill 3: the media storage fills up under a load of image uploads.

While full, every upload answers a JSON 507 ``storage_full``; it leaves no artifact row and
no file, not even the part of one that fitted. JSON writes go on meanwhile. Once space is
freed, uploads succeed again, with no restart; every acknowledged upload is stored whole.
"""

import time

import pytest

from .harness import DATABASE_BLIP, WRITERS, Load, request, wait_until

pytestmark = pytest.mark.drill

# Room for less than one upload: each write gets part of the way, then meets ENOSPC.
LEAVE = 8 * 1024
UPLOAD = 16 * 1024


def test_a_full_media_storage_answers_507_and_leaves_nothing_behind(site):
    master = site.service.master_pid
    with Load(site.base, site.token, site.scenes, drill="storage", kind="image", size=UPLOAD) as load:
        time.sleep(1.5)
        with site.storage_filled(leave=LEAVE):
            full = time.monotonic()
            wait_until(
                lambda: load.answered_since(full, 507) >= WRITERS, timeout=30, what="uploads refused 507", load=load
            )
            intent = {"mood": "calm", "pacing": "slow", "key_beats": ["the disk is full"]}
            json_write = request(
                site.base,
                "POST",
                f"/v1/scenes/{site.scenes[0]}/artifacts",
                token=site.token,
                body={"type": "scene_intent", "payload": intent},
            )
            assert json_write.status == 201, ("JSON writes go on while media storage is full", json_write.body)
        freed = time.monotonic()
        wait_until(
            lambda: load.answered_since(freed) >= WRITERS, timeout=30, what="uploads acknowledged once freed", load=load
        )
    report = site.check(load.writes, drill="storage", refusals={507: "storage_full", **DATABASE_BLIP})
    report.counts["storage"] = "tmpfs" if site.quota is None else "quota"
    site.assert_clean(report)
    assert report.counts["507s"] > 0
    assert site.service.alive() and site.service.master_pid == master, "gunicorn was restarted"

"""Generators plugged in through PIPELINE_GENERATORS by the pipeline tests: real callables
behind the same contract as the shipped ones (SPEC §10), not mocks of the engine. Those
used by worker tests keep their state in files, since each attempt may run in another
process."""

import os
import time
from pathlib import Path

from runs.pipeline import generators


def failing_layout(ctx):
    raise RuntimeError("the layout model is down")


failing_layout.version = "1"


def bad_payload_spec(ctx):
    return {"prompt": 42}  # not a render_spec: the service refuses it


bad_payload_spec.version = "1"


def slow_render(ctx):
    """The shipped render, after a pause: long enough for a worker to be killed mid-node."""
    time.sleep(float(os.environ.get("PIPELINE_TEST_SLEEP", "2")))
    return generators.generate_render_result(ctx)


slow_render.version = "1"


def flaky_layout(ctx):
    """Fails on its first two calls, then does what the shipped layout does."""
    counter = Path(os.environ["PIPELINE_TEST_STATE"]) / "flaky_layout"
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    if calls <= 2:
        raise RuntimeError(f"the layout model is down (call {calls})")
    return generators.generate_layout_template(ctx)


flaky_layout.version = "1"


def slow_intent(ctx):
    """The shipped scene_intent, after a pause, leaving a mark in PIPELINE_TEST_STATE when it
    starts and when it returns: a test can tell what had happened when a request answered."""
    state = Path(os.environ["PIPELINE_TEST_STATE"])
    (state / "slow_intent.started").touch()
    time.sleep(float(os.environ.get("PIPELINE_TEST_SLEEP", "2")))
    (state / "slow_intent.returned").touch()
    return generators.generate_scene_intent(ctx)


slow_intent.version = "1"

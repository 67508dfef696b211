"""Generators plugged in through PIPELINE_GENERATORS by the pipeline tests: real callables
behind the same contract as the shipped ones (SPEC §10), not mocks of the engine."""


def failing_layout(ctx):
    raise RuntimeError("the layout model is down")


failing_layout.version = "1"


def bad_payload_spec(ctx):
    return {"prompt": 42}  # not a render_spec: the service refuses it


bad_payload_spec.version = "1"

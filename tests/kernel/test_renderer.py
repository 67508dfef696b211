"""The API's JSON renderer writes a payload read as text (RawJSON) as it is, in its place."""

import json

from kernel.api_defaults import JSONRenderer, RawJSON


def test_raw_json_goes_in_as_it_is_and_the_rest_as_drf_writes_it():
    payload = '{"line": "a\\u2028b", "nested": [1, 2.5, {"x": null}], "tricky": "\\u0000abc:0\\u0000"}'
    data = {"results": [{"id": "1", "payload": RawJSON(payload)}, {"id": "2", "payload": None}], "note": "ok\u2028"}
    body = JSONRenderer().render(data)
    parsed = json.loads(body)
    assert parsed["results"][0]["payload"] == json.loads(payload)
    assert parsed["results"][1]["payload"] is None
    assert parsed["note"] == "ok\u2028" and b"\\u2028" in body  # DRF's JS-safe escape is kept
    assert payload.encode() in body  # verbatim, not parsed and written again


def test_an_answer_without_raw_json_is_drfs_byte_for_byte():
    from rest_framework.renderers import JSONRenderer as DRFRenderer

    data = {"a": [1, "ü", None], "b": {"c": 1.5}}
    assert JSONRenderer().render(data) == DRFRenderer().render(data)

"""A check of our own for the schemathesis run of fuzz_api.py (loaded as its hooks module).

schemathesis's ``positive_data_acceptance`` counts any 400 to a request the schema allows as a
failure. Some rules no OpenAPI schema can state: an id in the body that names nothing, bytes
that are no image, a parent from another stream, a cursor this API did not make. The run lets
``positive_data_acceptance`` take a 400 (tests/api/schemathesis.toml) and this check takes its
place, stricter: such a refusal must carry one of those codes (``errors.BEYOND_SCHEMA``); any
other 400 (a type, a length, an enum, a required field) means the schema and the service
disagree, and fails the run.
"""

import schemathesis

from kernel.errors import BEYOND_SCHEMA

# A multipart form's payload is a JSON part whose schema is the type's (one form serves
# several types), so a payload fit for another type is a rule the form cannot state either.
BEYOND_THE_FORM = frozenset({"invalid_payload"})
# The diff's `to` must name an artifact of the same type as the path's: a rule between two
# ids that a schema cannot state (SPEC §13 gives it 400 invalid_parameter).
BEYOND_THE_PARAMETERS = {("GET", "/artifacts/{artifact_id}/diff"): frozenset({"invalid_parameter"})}


@schemathesis.check
def refused_only_beyond_the_schema(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    allowed = BEYOND_SCHEMA | (BEYOND_THE_FORM if (case.media_type or "").startswith("multipart/") else set())
    for (method, path), codes in BEYOND_THE_PARAMETERS.items():
        if case.method.upper() == method and case.path.endswith(path):
            allowed |= codes
    if code not in allowed:
        raise AssertionError(
            f"a request the schema allows was refused with 400 {code!r}: the schema and the service disagree "
            f"(a refusal the schema cannot state is one of {', '.join(sorted(allowed))})"
        )
    return None

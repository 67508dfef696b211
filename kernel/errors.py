"""One exception hierarchy for the whole domain, each error with a stable ``code``, and the
table of every code the API answers with (``CODES``).

Its families decide the HTTP status once, in the API's exception handler:
``InvalidInput`` (400), ``NotFound`` (404), ``Conflict`` (409: a well-formed request that
a rule refuses), ``Gone`` (410) and ``ServerFault`` (5xx: the service's own state or
resources failed, not the request).

``CODES`` is the one list of codes: the exception handler answers no other (an unlisted
code becomes its status's generic one), the schema's per-operation ``code`` enums are drawn
from it, and the README's table is printed from it (``python -m kernel.errors``;
a test compares the two).
"""

from dataclasses import dataclass


class ArtifactError(Exception):
    code = "artifact_error"

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message or self.code)
        self.message = message or self.code
        self.field = field


# 400: the request itself is wrong.
class InvalidInput(ArtifactError):
    code = "invalid"


class InvalidPayload(InvalidInput):
    code = "invalid_payload"


class UnknownType(InvalidInput):
    code = "unknown_type"


class InvalidKind(InvalidInput):
    code = "invalid_kind"


class InvalidContent(InvalidInput):
    code = "invalid_content"


class InvalidParent(InvalidInput):
    code = "invalid_parent"


class InvalidScope(InvalidInput):
    code = "invalid_scope"


class InvalidRelation(InvalidInput):
    code = "invalid_relation"


class InvalidLink(InvalidInput):
    code = "invalid_link"


class InvalidParameter(InvalidInput):
    """A query parameter that is present and not valid: never ignored (SPEC §7)."""

    code = "invalid_parameter"


class InvalidJSON(InvalidInput):
    code = "parse_error"  # DRF's code for a body it cannot parse, kept for every JSON text


class JSONTooDeep(InvalidInput):
    code = "json_too_deep"


class InvalidText(InvalidInput):
    code = "invalid_text"


class OutOfRange(InvalidInput):
    code = "out_of_range"


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"


class InvalidUrl(InvalidInput):
    code = "invalid_url"


# 404: something named does not exist.
class NotFound(ArtifactError):
    code = "not_found"


# 409: a rule refuses a well-formed request.
class Conflict(ArtifactError):
    code = "conflict"


class PlanningLocked(Conflict):
    code = "planning_locked"


class AlreadyLocked(Conflict):
    code = "already_locked"


class NotLocked(Conflict):
    code = "not_locked"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class NotPublished(Conflict):
    code = "not_published"


class StillPrimary(Conflict):
    code = "still_primary"


class Cycle(Conflict):
    code = "cycle"


class DuplicateRelation(Conflict):
    code = "duplicate_relation"


class DuplicateLink(Conflict):
    code = "duplicate_link"


class Pruned(Conflict):
    code = "pruned"


class NotAnImage(Conflict):
    """A thumbnail of an artifact whose content is no picture Pillow can draw."""

    code = "not_an_image"


class AlreadyLatest(Conflict):
    """A restore of the stream's latest version: it would only repeat it."""

    code = "already_latest"


class ImmutableRow(Conflict):
    """An UPDATE or DELETE that would rewrite history (the model-layer guard; triggers are the real one)."""

    code = "immutable"


class VersionConflict(Conflict):
    """The stream's version could not be assigned even after the safety-net retries."""

    code = "version_conflict"


# 410: it existed, and what was asked for is gone for good.
class Gone(ArtifactError):
    code = "gone"


class ContentPruned(Gone):
    code = "pruned"


class CursorExpired(Gone):
    code = "cursor_expired"


# 5xx: nothing the client sent is wrong.
class ServerFault(ArtifactError):
    code = "server_error"
    status = 500


class ContentMissing(ServerFault):
    """A row names a stored file that storage no longer has."""

    code = "content_missing"


class StorageFull(ServerFault):
    """Storage refused the bytes for want of space (ENOSPC, or a quota): nothing was stored,
    and the request may succeed once an operator frees space."""

    code = "storage_full"
    status = 507


class BrokerUnavailable(ServerFault):
    """The pipeline's broker cannot be reached to hand work to the workers."""

    code = "broker_unavailable"
    status = 503


# Not an answer of the API: a pipeline node that cannot run (an input it reads has no
# version yet; planning is locked and its type has none to keep) fails its step with it.
class NodeRefused(Exception):
    code = "node_refused"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# -- the table of codes ------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    status: int
    code: str
    meaning: str
    # A rule that an OpenAPI schema cannot state (an id that names nothing, bytes that are no
    # image, a parent from another stream, a cursor not made here): a request the schema
    # allows may meet it. Every other 400 means the request broke the schema.
    beyond_schema: bool = False


CODES: tuple[Code, ...] = (
    # 400: the request is wrong; nothing was written.
    Code(400, "invalid_parameter", "a query parameter is present but not valid (`field` names it)"),
    Code(400, "invalid_cursor", "a `cursor` this API did not make", beyond_schema=True),
    Code(
        400,
        "invalid_url",
        "a webhook URL that is not http(s) or whose host is loopback, private, link-local or multicast",
        beyond_schema=True,
    ),
    Code(400, "parse_error", "a body that cannot be read: not JSON, NaN, Infinity, a number that overflows"),
    Code(400, "json_too_deep", "JSON nested deeper than 64 levels"),
    Code(400, "invalid_text", "text a database cannot store: NUL, lone surrogates, over a column's length"),
    Code(400, "out_of_range", "an integer beyond its column"),
    Code(
        400, "invalid_payload", "the payload breaks its type's schema (`field` is the path, e.g. `payload.panels[0]`)"
    ),
    Code(400, "unknown_type", "an artifact type that is not registered (body or `?type=`)"),
    Code(400, "invalid_kind", "a kind the type does not have", beyond_schema=True),
    Code(400, "invalid_scope", "a type that does not belong where it was posted (a scene type on a story...)"),
    Code(
        400,
        "invalid_content",
        "bytes that are not what the kind or their declared type says, or missing bytes",
        beyond_schema=True,
    ),
    Code(400, "invalid_parent", "a parent that is not a version of the same stream", beyond_schema=True),
    Code(400, "invalid_relation", "a relation the rules refuse (an artifact related to itself...)", beyond_schema=True),
    Code(
        400,
        "invalid_link",
        "a link the rules refuse (another story's artifact, a kind the role does not take...)",
        beyond_schema=True,
    ),
    Code(400, "not_found", "an id in the body names nothing (`field` names it)", beyond_schema=True),
    Code(400, "invalid", "a value the rules or a column refuse (`field` names it)", beyond_schema=True),
    Code(400, "required", "a required body field is missing"),
    Code(400, "null", "null where a value is required"),
    Code(400, "blank", "an empty string where text is required"),
    Code(400, "max_length", "a string or list over its length"),
    Code(400, "min_length", "a string or list under its length"),
    Code(400, "max_value", "a number over its maximum"),
    Code(400, "min_value", "a number under its minimum"),
    Code(400, "max_string_length", "a number written with too many digits"),
    Code(400, "invalid_choice", "a value outside the field's enum"),
    Code(400, "not_a_list", "a list was expected"),
    Code(400, "not_a_dict", "a JSON object was expected"),
    Code(400, "empty", "an empty list, object or file where one is required"),
    Code(400, "no_name", "an uploaded file without a file name"),
    Code(400, "bad_request", "a request Django itself refuses (a malformed header or multipart form)"),
    # 401, 403
    Code(401, "not_authenticated", "no credentials (`WWW-Authenticate: Token`)"),
    Code(401, "authentication_failed", "a token or session that is not valid"),
    Code(403, "permission_denied", "the user lacks the model permission the write needs"),
    # 404, 405
    Code(404, "not_found", "an unknown or malformed id in the path, or no such endpoint"),
    Code(405, "method_not_allowed", "a method the path does not offer (artifacts have no PUT, PATCH or DELETE)"),
    Code(406, "not_acceptable", "an `Accept` header that JSON does not meet"),
    # 409: a rule refuses a well-formed request.
    Code(409, "planning_locked", "a planning type on a scene whose planning is locked"),
    Code(409, "invalid_transition", "a lifecycle, run or step change the rules do not allow"),
    Code(409, "not_published", "a primary link needs a published artifact"),
    Code(409, "still_primary", "an artifact that is primary somewhere cannot be archived"),
    Code(409, "cycle", "the relation would close a derived_from or transcoded_from cycle"),
    Code(409, "duplicate_relation", "the same relation (from, to, type) exists"),
    Code(409, "duplicate_link", "the artifact is already linked in that role"),
    Code(409, "pruned", "the artifact was pruned: it can no longer change"),
    Code(409, "not_an_image", "a thumbnail of an artifact that is no raster image (json, audio, video, svg)"),
    Code(409, "already_latest", "the version to restore is its stream's latest already: nothing to restore"),
    Code(409, "version_conflict", "no version could be assigned after the retries; retry"),
    Code(409, "conflict", "a constraint the database enforced, or a deadlock that outlived the retries; retry"),
    # 410, 413, 415, 416
    Code(410, "pruned", "the content of a pruned artifact is gone"),
    Code(410, "cursor_expired", "a change feed cursor older than `CHANGES_RETENTION_DAYS`: list again, then follow"),
    Code(413, "payload_too_large", "the body is over `ARTIFACT_MAX_BODY_BYTES`"),
    Code(415, "unsupported_media_type", "a body in a media type the operation does not take"),
    # 5xx: nothing the client sent is wrong.
    Code(500, "content_missing", "the stored file of the content is missing (named in the message)"),
    Code(500, "server_error", "a fault of the service; quote the `request_id`"),
    Code(503, "database_unavailable", "the database cannot be reached; retry after `Retry-After`"),
    Code(503, "broker_unavailable", "the pipeline's broker cannot be reached; retry after `Retry-After`"),
    Code(507, "storage_full", "media storage has no room left; nothing was stored"),
)

# Status -> the code an unlisted one becomes (and the code of a bare status).
GENERIC = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "pruned",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "server_error",
    503: "database_unavailable",
    507: "storage_full",
}
# DRF's codes for text a database cannot store are ours, under one name.
ALIASES = {"null_characters_not_allowed": "invalid_text", "surrogate_characters_not_allowed": "invalid_text"}

_KNOWN = {(c.status, c.code) for c in CODES}
BEYOND_SCHEMA = frozenset(c.code for c in CODES if c.beyond_schema)


def public_code(status: int, code: str | None) -> str:
    """The code the API answers for ``code`` at ``status``: itself when listed, else the
    status's generic code (so every answer's code is in the schema's enum)."""
    code = ALIASES.get(code, code)
    if (status, code) in _KNOWN:
        return code
    return GENERIC.get(status, GENERIC[500] if status >= 500 else GENERIC[400])


def markdown_table() -> str:
    """The README's table of error codes."""
    lines = ["| status | code | when |", "|---|---|---|"]
    lines += [f"| {c.status} | `{c.code}` | {c.meaning} |" for c in CODES]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())

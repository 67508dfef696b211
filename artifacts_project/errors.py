"""One exception hierarchy for the whole domain, each error with a stable ``code``.

Its families decide the HTTP status once, in the API's exception handler:
``InvalidInput`` (400), ``NotFound`` (404), ``Conflict`` (409: a well-formed request that
a rule refuses), ``Gone`` (410) and ``ServerFault`` (5xx: the service's own state or
resources failed, not the request).
"""


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

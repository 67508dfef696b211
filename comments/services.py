"""Comment actions: write a comment on an artifact, resolve one. Each is one action in its
own transaction (``atomic_write``)."""

from __future__ import annotations

from django.utils import timezone

from artifacts.models import Artifact
from audit.services import acting_user
from changes import services as change_services
from kernel.errors import InvalidInput
from kernel.input_limits import check_text
from kernel.lookups import get_or_not_found, parse_uuid
from kernel.transactions import atomic_write

from .models import BODY_MAX_LENGTH, Comment


def _check_body(body) -> str:
    if not isinstance(body, str) or not body.strip():
        raise InvalidInput("body must be a non-empty string", field="body")
    if len(body) > BODY_MAX_LENGTH:
        raise InvalidInput(f"body is {len(body):,} characters; at most {BODY_MAX_LENGTH:,}", field="body")
    check_text(body, field="body")
    return body


@atomic_write
def comment_create(*, artifact_id, body: str, actor) -> Comment:
    """A comment by ``actor`` (a signed-in user) on an artifact, any version or state: a
    pruned one can still be discussed."""
    author = acting_user(actor)
    if author is None:
        raise InvalidInput("a comment needs a signed-in author", field="author")
    body = _check_body(body)
    artifact = get_or_not_found(Artifact.objects.only("id", "story_id", "scene_id"), artifact_id, what="artifact")
    comment = Comment.objects.create(artifact_id=artifact.pk, author=author, body=body)
    change_services.comment_created(
        comment_id=comment.pk, artifact_id=artifact.pk, story_id=artifact.story_id, scene_id=artifact.scene_id
    )
    return comment


@atomic_write
def comment_resolve(*, comment_id, actor) -> Comment:
    """Resolve a comment; one already resolved stays as it is (who and when resolved it first),
    so a retry is safe. A conditional UPDATE: of two resolving at once, one sets it."""
    user = acting_user(actor)
    if user is None:
        raise InvalidInput("resolving needs a signed-in user", field="resolved_by")
    pk = parse_uuid(comment_id, what="comment")
    Comment.objects.filter(pk=pk, resolved_at__isnull=True).update(resolved_at=timezone.now(), resolved_by=user)
    return get_or_not_found(Comment.objects.select_related("author", "resolved_by"), pk, what="comment")

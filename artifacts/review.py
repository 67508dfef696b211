"""The review queue (SPEC §13): ``/admin/artifacts/artifact/review/``, the candidates newest
first, of one story and/or type, each with its thumbnail or the start of its payload, and
"approve" (publish), "approve and make primary" (for the role its kind serves) and "reject"
(archive), each with an optional note kept on the audit event; several approved at once.

Fast at millions of artifacts: the query reads one page from a partial index that holds only
candidates (``selectors.candidates_page``), pages by keyset (the last row's created_at and
id, in an opaque ``cursor``), never counts, and cuts JSON payloads in the database. Every
write goes through the actions: ``artifact_transition``, ``story_publish_and_set_primary``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from kernel.admin_kit import BULK_ACTION_LIMIT, report_refusals, short_id
from kernel.api import domain_error_response
from kernel.errors import ArtifactError, InvalidParameter
from stories import services as story_services
from stories.models import ROLE_SCENE_IMAGE, StoryArtifactLink, role_of

from . import selectors
from . import services as artifact_services
from .models import Artifact, LifecycleState
from .payloads import ARTIFACT_TYPES
from .thumbnails import thumbnail_tag

PAGE_SIZE = 50
THUMBNAIL_SIZE = 96
PRIMARY_PERMISSION = f"{StoryArtifactLink._meta.app_label}.change_{StoryArtifactLink._meta.model_name}"
APPROVE, APPROVE_PRIMARY, REJECT = "approve", "approve_primary", "reject"
DECISIONS = {
    APPROVE: "approved (published)",
    APPROVE_PRIMARY: "approved and made primary",
    REJECT: "rejected (archived)",
}


def encode_cursor(artifact: Artifact) -> str:
    raw = f"{artifact.created_at.isoformat()}|{artifact.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime.datetime, uuid.UUID]:
    """The keyset of a cursor this page made; anything else is ``invalid_parameter``."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        created_at, pk = raw.split("|")
        moment = datetime.datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment, uuid.UUID(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter("cursor: not a cursor this page made", field="cursor") from None


@dataclass(frozen=True)
class Filters:
    story_id: uuid.UUID | None = None
    type: str | None = None
    after: tuple | None = None


def parse_filters(query) -> Filters:
    """``story``, ``type`` and ``cursor``, strictly: a present value must be valid."""
    known = {"story", "type", "cursor"}
    for name in query:
        if name not in known:
            raise InvalidParameter(f"unknown parameter {name!r}; this page takes story, type, cursor", field=name)
    story_id = type_name = after = None
    if "story" in query:
        try:
            story_id = uuid.UUID(query["story"])
        except ValueError:
            raise InvalidParameter("story: not a story id", field="story") from None
    if "type" in query:
        type_name = query["type"]
        if type_name not in ARTIFACT_TYPES:
            raise InvalidParameter(f"type: {type_name!r} is not a registered type", field="type")
    if "cursor" in query:
        after = decode_cursor(query["cursor"])
    return Filters(story_id, type_name, after)


def review_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    try:
        filters = parse_filters(request.GET)
    except ArtifactError as exc:
        return domain_error_response(exc)
    if request.method == "POST":
        return _decide(model_admin, request)
    rows = selectors.candidates_page(
        story_id=filters.story_id, type=filters.type, after=filters.after, limit=PAGE_SIZE + 1
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    change = reverse("admin:artifacts_artifact_change", args=[uuid.UUID(int=0)])
    thumbnail = reverse("admin:artifacts_artifact_thumbnail", args=[uuid.UUID(int=0)])
    entries = [
        {
            "artifact": artifact,
            "url": change.replace(str(uuid.UUID(int=0)), str(artifact.pk)),
            "thumbnail": thumbnail_tag(
                artifact,
                size=THUMBNAIL_SIZE,
                url=thumbnail.replace(str(uuid.UUID(int=0)), str(artifact.pk)),
            )
            if artifact.kind == "image"
            else "",
            "excerpt": _excerpt(artifact),
            "role": role_of(artifact),
        }
        for artifact in rows
    ]
    base = {key: value for key, value in (("story", filters.story_id), ("type", filters.type)) if value}
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Review queue: candidates awaiting review",
        "entries": entries,
        "filters": filters,
        "story_title": rows[0].story.title if rows and filters.story_id else "",
        "types": list(ARTIFACT_TYPES),
        "next_query": _query({**base, "cursor": encode_cursor(rows[-1])}) if more else "",
        "first_query": _query(base) if filters.after else "",
        "can_decide": model_admin.has_change_permission(request),
        "can_make_primary": request.user.has_perm(PRIMARY_PERMISSION),
        "bulk_limit": BULK_ACTION_LIMIT,
    }
    return TemplateResponse(request, "admin/artifacts/artifact/review.html", context)


def _query(params: dict) -> str:
    return "?" + urlencode({key: str(value) for key, value in params.items()})


def _excerpt(artifact: Artifact) -> str:
    text = artifact.excerpt or ""
    if len(text) > selectors.EXCERPT_CHARACTERS:
        return text[: selectors.EXCERPT_CHARACTERS] + "…"
    return text


def _decide(model_admin, request):
    """One row's decision (``decide=<id>|<decision>``, its note in ``note-<id>``) or the
    selected rows approved at once (``bulk=approve``, ``selected``, ``bulk-note``)."""
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    back = HttpResponseRedirect(request.get_full_path())
    if request.POST.get("bulk") == APPROVE:
        _approve_selected(request)
        return back
    artifact_id, _, decision = request.POST.get("decide", "").partition("|")
    if decision not in DECISIONS:
        messages.error(request, "Choose approve, approve and make primary, or reject.")
        return back
    if decision == APPROVE_PRIMARY and not request.user.has_perm(PRIMARY_PERMISSION):
        raise PermissionDenied
    note = request.POST.get(f"note-{artifact_id}", "").strip() or None
    artifact = Artifact.objects.filter(pk=_uuid_or_none(artifact_id)).only(*selectors.CARD_COLUMNS).first()
    if artifact is None:
        messages.error(request, f"No artifact {artifact_id[:40]!r}: nothing was changed.")
        return back
    label = f"{artifact.type} v{artifact.version} ({short_id(artifact.pk)})"
    try:
        if decision == APPROVE:
            artifact_services.artifact_transition(
                artifact_id=artifact.pk, to=LifecycleState.PUBLISHED, actor=request.user, note=note
            )
        elif decision == REJECT:
            artifact_services.artifact_transition(
                artifact_id=artifact.pk, to=LifecycleState.ARCHIVED, actor=request.user, note=note
            )
        else:
            role = role_of(artifact)
            if role is None:
                messages.error(request, f"{label} serves no curated role; approve it instead.")
                return back
            story_services.story_publish_and_set_primary(
                story_id=artifact.story_id,
                role=role,
                artifact_id=artifact.pk,
                scene_id=artifact.scene_id if role == ROLE_SCENE_IMAGE else None,
                actor=request.user,
                note=note,
            )
    except ArtifactError as exc:
        messages.error(request, f"{label} not changed ({exc.code}): {exc.message}")
    else:
        messages.success(request, f"{label} {DECISIONS[decision]}" + (f", with the note {note!r}." if note else "."))
    return back


def _approve_selected(request) -> None:
    ids = [pk for pk in (_uuid_or_none(value) for value in request.POST.getlist("selected")) if pk]
    if not ids:
        messages.error(request, "Select the candidates to approve.")
        return
    if len(ids) > BULK_ACTION_LIMIT:
        messages.error(request, f"Select at most {BULK_ACTION_LIMIT} candidates at once; nothing was changed.")
        return
    note = request.POST.get("bulk-note", "").strip() or None
    done, refused = 0, []
    for pk in ids:
        try:
            artifact_services.artifact_transition(
                artifact_id=pk, to=LifecycleState.PUBLISHED, actor=request.user, note=note
            )
            done += 1
        except ArtifactError as exc:
            refused.append((short_id(pk), exc))
    if done:
        messages.success(request, f"{done} candidate{'s' if done != 1 else ''} approved (published).")
    report_refusals(request, refused, verb="approve")


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None

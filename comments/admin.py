"""Comments in the admin: the thread panel of the artifact page (with its form and "resolve"
buttons, POSTs with CSRF through comments.services), and a view-only list of every comment.
A comment is never edited or deleted, so nothing here edits or deletes one."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.urls import path
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from artifacts.models import Artifact
from kernel.admin_kit import BaseAdmin, EstimatedCountPaginator, ViewOnlyMixin, admin_url, artifact_link, uuid_or_none
from kernel.errors import ArtifactError

from . import selectors, services
from .models import BODY_MAX_LENGTH, Comment

# The newest of a long thread are the ones the page leaves out: the API pages through all.
THREAD_SHOWN = 100
ADD_PERMISSION = "comments.add_comment"
RESOLVE_PERMISSION = "comments.change_comment"


def thread_context(request, artifact) -> dict:
    """The artifact page's thread panel (admin/comments/_thread.html): its comments oldest
    first with their authors, in one query, and what this user may do there."""
    comments = list(selectors.artifact_thread(artifact.pk)[: THREAD_SHOWN + 1])
    return {
        "comments": comments[:THREAD_SHOWN],
        "comments_truncated": len(comments) > THREAD_SHOWN,
        "comment_max_length": BODY_MAX_LENGTH,
        "can_comment": request.user.has_perm(ADD_PERMISSION),
        "can_resolve": request.user.has_perm(RESOLVE_PERMISSION),
    }


class ResolvedFilter(admin.SimpleListFilter):
    title = "resolved"
    parameter_name = "resolved"

    def lookups(self, request, model_admin):
        return [("no", "open"), ("yes", "resolved")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(resolved_at__isnull=self.value() == "no")
        return queryset


@admin.register(Comment)
class CommentAdmin(ViewOnlyMixin, BaseAdmin):
    list_display = ("created_at", "artifact_column", "author", "excerpt", "resolved_at", "resolved_by")
    list_select_related = ("artifact", "author", "resolved_by")
    list_filter = (ResolvedFilter,)
    sortable_by = ("created_at",)
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = ("id", "artifact", "author", "created_at", "body", "resolved_at", "resolved_by")
    readonly_fields = fields
    object_select_related = ("artifact", "author", "resolved_by")

    @admin.display(description="artifact")
    def artifact_column(self, obj):
        return artifact_link(obj.artifact)

    @admin.display(description="comment")
    def excerpt(self, obj):
        return Truncator(obj.body).chars(80)

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("on/<path:artifact_id>/", wrap(require_POST(self.add_view_for)), name=f"{prefix}_add_to"),
            path("<path:object_id>/resolve/", wrap(require_POST(self.resolve_view)), name=f"{prefix}_resolve"),
            *super().get_urls(),
        ]

    def add_view_for(self, request, artifact_id):
        """Comment on an artifact: the API's permission (``comments.add_comment``) on an
        artifact this user may see."""
        artifact = Artifact.objects.only("id").filter(pk=uuid_or_none(artifact_id)).first()
        if artifact is None:
            raise Http404("no such artifact")
        if not (request.user.has_perm("artifacts.view_artifact") and request.user.has_perm(ADD_PERMISSION)):
            raise PermissionDenied
        try:
            services.comment_create(artifact_id=artifact.pk, body=request.POST.get("body", ""), actor=request.user)
        except ArtifactError as exc:
            messages.error(request, f"Comment not added ({exc.code}): {exc.message}")
        else:
            messages.success(request, "Comment added.")
        return HttpResponseRedirect(admin_url(artifact) + "#comments")

    def resolve_view(self, request, object_id):
        comment = Comment.objects.only("id", "artifact_id").filter(pk=uuid_or_none(unquote(object_id))).first()
        if comment is None:
            raise Http404("no such comment")
        if not (request.user.has_perm("artifacts.view_artifact") and request.user.has_perm(RESOLVE_PERMISSION)):
            raise PermissionDenied
        services.comment_resolve(comment_id=comment.pk, actor=request.user)
        messages.success(request, "Comment resolved.")
        return HttpResponseRedirect(admin_url(Artifact(pk=comment.artifact_id)) + "#comments")

"""Reads of comments shared by the API and the admin."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Comment


def artifact_thread(artifact_id) -> QuerySet:
    """An artifact's comments oldest first, as a thread reads, with their authors and
    resolvers (comment_thread_idx; two joins by primary key)."""
    return (
        Comment.objects.filter(artifact_id=artifact_id)
        .select_related("author", "resolved_by")
        .order_by("created_at", "id")
    )

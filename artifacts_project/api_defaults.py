"""The API's default permission and pagination classes.

They live apart from ``artifacts_project.api`` because DRF imports its defaults while
importing its own views: this module must not import those back.
"""

from rest_framework import pagination, permissions


class ModelPermissions(permissions.DjangoModelPermissions):
    """Reads need a signed-in user; writes the model's Django permission (add for POST,
    change for PATCH). A view acting on an existing object with a POST (a transition, a
    lock) names what it needs in ``required_permissions``."""

    def has_permission(self, request, view):
        if not hasattr(view, request.method.lower()):
            # A method the route does not offer is 405 for everyone signed in, not a 403
            # about a permission (delete) that nobody is ever given.
            return bool(request.user and request.user.is_authenticated)
        required = getattr(view, "required_permissions", None)
        if required is None or request.method in permissions.SAFE_METHODS:
            return super().has_permission(request, view)
        return bool(request.user and request.user.is_authenticated and request.user.has_perms(required))


class CursorPagination(pagination.CursorPagination):
    """Cursor pagination; a view names its ordering in ``cursor_ordering``.

    The first field is the cursor's position: it must be immutable and indexed, and unique
    (a version, a position, a sequence) or nearly so (a creation timestamp in microseconds,
    with the id after it so equal timestamps still sort deterministically).
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = ("-created_at", "-id")

    def get_ordering(self, request, queryset, view):
        ordering = getattr(view, "cursor_ordering", None) or self.ordering
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)

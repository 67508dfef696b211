"""The admin's shared kit: what the artifact, story and run admins all use (SPEC §8).

Lists that stay fast at millions of rows (``EstimatedCountPaginator``, ``IndexedSearchMixin``),
nothing deletable (``NoDeleteMixin``), read-only records (``ViewOnlyMixin``,
``ViewOnlyInline``), and the small pieces of display every change page repeats: links to
objects, lifecycle badges, the audit trail.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.db import connections, models, router
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from kernel.transactions import composing

# How many rows a bulk action may touch: each is its own service call and transaction.
BULK_ACTION_LIMIT = 500
# The parameters Django's own list filters put in a list's URL for a field (choices and
# booleans: __exact, __isnull; dates: __gte, __lt; relations: __id__exact), and the bare
# field name that links use (?story=<id>).
_FILTER_SUFFIXES = ("", "__exact", "__isnull", "__gte", "__lt", "__id__exact")


class EstimatedCountPaginator(Paginator):
    """Counts exactly, except an unfiltered list on PostgreSQL, where it reads the
    planner's row estimate (``pg_class.reltuples``) instead of a full-table COUNT(*).

    The estimate is refreshed by (auto)vacuum/analyze; page links near the end may be a
    little off, which is the price of a list that opens instantly at millions of rows.
    Small tables (below ``estimate_above``) are counted exactly, where it costs nothing.
    """

    estimate_above = 10_000

    @cached_property
    def count(self):
        estimate = self._estimate()
        if estimate is not None and estimate >= self.estimate_above:
            return estimate
        return Paginator.count.func(self)

    def _estimate(self) -> int | None:
        queryset = self.object_list
        if not isinstance(queryset, models.QuerySet):
            return None
        query = queryset.query
        if query.where or query.distinct or query.combinator or query.is_sliced:
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [queryset.model._meta.db_table]
            )
            row = cursor.fetchone()
        # -1 means "never analyzed": no estimate to trust.
        return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def _is_uuid_path(model, lookup: str) -> bool:
    field = None
    for part in lookup.split("__"):
        field = model._meta.get_field(part)
        if field.is_relation:
            model = field.related_model
    if field.is_relation:
        field = field.target_field
    return isinstance(field, models.UUIDField)


class IndexedSearchMixin:
    """Search that an index can answer.

    ``search_fields`` keep Django's prefixes: ``=field`` is an exact match (ids,
    request ids, type names) and a bare name is ``icontains`` (titles, on small
    tables only). An id field is matched only when the term is a UUID, so a title
    search never compares text against UUID columns, and a pasted id hits the index.
    """

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if "\x00" in term:
            # No stored text holds a NUL (the services refuse it), and PostgreSQL cannot even
            # compare one: the autocomplete's ?term=%00 was a 500.
            return queryset.none(), False
        try:
            term_uuid = uuid.UUID(term)
        except ValueError:
            term_uuid = None
        condition = models.Q()
        for spec in self.get_search_fields(request):
            exact = spec.startswith("=")
            name = spec.lstrip("=")
            try:
                is_uuid = _is_uuid_path(self.model, name)
            except FieldDoesNotExist:
                is_uuid = False
            if is_uuid:
                if term_uuid is not None:
                    condition |= models.Q(**{name: term_uuid})
            elif exact:
                condition |= models.Q(**{name: term})
            else:
                condition |= models.Q(**{f"{name}__icontains": term})
        if not condition:
            return queryset.none(), False
        return queryset.filter(condition), False


class NoDeleteMixin:
    """Nothing is deletable in this admin (SPEC §8): no delete view, no bulk delete."""

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class BaseAdmin(NoDeleteMixin, admin.ModelAdmin):
    """What every admin of this site shares: the query string of a list holds only what
    the page offers, and a bulk action only ids."""

    # Fields that other pages' links filter this list by (``?story=<id>``), beside list_filter.
    link_lookups: tuple[str, ...] = ()

    class Media:
        css = {"all": ("artifacts/admin/admin.css",)}

    def lookup_allowed(self, lookup, value, request=None):
        """Only the lookups of the list's filters and its ``link_lookups``. Django allows
        any lookup on a field of the model: ``?title__regex=(`` and ``?created_at__year=99999``
        were 500s, a regex on SQLite runs in Python's backtracking engine, and none of those
        lookups is served by an index (SPEC §8: lists stay fast at millions of rows). A
        lookup refused here is Django's 400 (DisallowedModelAdminLookup)."""
        fields = list(self.link_lookups)
        for item in self.get_list_filter(request):
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                if lookup == item.parameter_name:
                    return True
            else:
                fields.append(item[0] if isinstance(item, list | tuple) else item)
        return any(lookup == field + suffix for field in fields for suffix in _FILTER_SUFFIXES)

    # What a change page names of other rows, read with its object in one joined query, and
    # the big columns of those rows it only names, left out.
    object_select_related: tuple[str, ...] = ()
    object_defer: tuple[str, ...] = ()

    def get_object(self, request, object_id, from_field=None):
        """The object of a change page: by its UUID (a malformed id is no object: Django's
        404), with ``object_select_related``; kept on the request, as change_view asks twice."""
        cache = request.__dict__.setdefault("_admin_objects", {})
        key = (self.model, object_id)
        if key not in cache:
            pk = uuid_or_none(object_id)
            rows = self.model._default_manager.select_related(*self.object_select_related).defer(*self.object_defer)
            cache[key] = rows.filter(pk=pk).first() if pk is not None else None
        return cache[key]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Django runs the change form in one transaction, so the form's save and its inlines
        # stand or fall together; the services it calls are actions that compose into it on
        # purpose (Django's own changeform_view opens a plain atomic, which they refuse).
        with composing(using=router.db_for_write(self.model)):
            return self._changeform_view(request, object_id, form_url, extra_context)

    def get_changelist_instance(self, request):
        # PostgreSQL cannot compare text holding a NUL (psycopg refuses the query: a 500 on
        # ?type=%00), and nothing stored holds one. Django's answer to parameters it cannot
        # use: back to the list, with its "?e=1" flag.
        if any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
            raise IncorrectLookupParameters("a query parameter holds a NUL character")
        return super().get_changelist_instance(request)

    def response_action(self, request, queryset):
        # Django filters the queryset by the selected ids as they were posted, and a value
        # that is no id of this model raised there (a 500). The changelist redirects back
        # to itself when this answers None.
        pk = self.model._meta.pk
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                pk.to_python(value)
            except ValidationError:
                self.message_user(
                    request,
                    f"{str(value)[:40]!r} is not the id of a {self.opts.verbose_name}; nothing was changed.",
                    messages.ERROR,
                )
                return None
        return super().response_action(request, queryset)


class ViewOnlyMixin(NoDeleteMixin):
    """Rows written only by services (pipeline, curation): the admin shows them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ArtifactRowColumns:
    """Columns for rows that point at an artifact and maybe a scene (story links, run links)."""

    @admin.display(description="artifact")
    def artifact_column(self, obj):
        return artifact_link(obj.artifact)

    @admin.display(description="state")
    def artifact_state(self, obj):
        return state_badge(obj.artifact)

    @admin.display(description="scene")
    def scene_label(self, obj):
        return f"#{obj.scene.position} {obj.scene.title}" if obj.scene else "—"


class ViewOnlyInline(admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def admin_url(obj, view: str = "change") -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk])


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def uuid_or_none(value) -> uuid.UUID | None:
    """An admin URL's object id, or None when it is not a UUID (the page then 404s)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def short_id(pk) -> str:
    return str(pk)[:8]


def state_badge(artifact) -> str:
    state = "pruned" if artifact.pruned_at else artifact.lifecycle_state
    return format_html('<span class="lc-badge lc-{}">{}</span>', state, state)


def artifact_link(artifact) -> str:
    return format_html('<a href="{}">{} v{}</a>', admin_url(artifact), artifact.type, artifact.version)


def report_refusals(request, refusals, *, verb: str) -> None:
    """One error message per refused row (bounded), each with the rule's own words."""
    for label, exc in refusals[:10]:
        messages.error(request, f"Refused to {verb} {label} ({exc.code}): {exc.message}")
    if len(refusals) > 10:
        messages.error(request, f"… and {len(refusals) - 10} more refused.")

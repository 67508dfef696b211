"""What every /v1 endpoint shares: one error shape, the body limit, permissions, pagination.

Errors are mapped to HTTP here and only here: the domain's ``ArtifactError`` families
(400 / 404 / 409), DRF's own exceptions, and what Django raises outside DRF (its 404,
500 and oversized-body 400) all answer ``{"code", "message", "field"?, "request_id"}``.
A database that cannot be reached answers 503 ``database_unavailable`` with ``Retry-After``
wherever it is noticed: in a DRF view (``exception_handler``), in any other view
(``kernel.outages``) or in a middleware (``handler500``).
"""

import datetime
import logging
import sys

import psycopg
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, models
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import reverse
from django.views import defaults
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, permissions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from kernel import api_schema, errors
from kernel.request_id import get_request_id
from kernel.transactions import is_retryable

logger = logging.getLogger(__name__)

API_PREFIX = "/v1/"


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "payload_too_large"
    default_detail = "request body is over the limit"


def _printable(text: str) -> str:
    """Messages may quote the input; a lone surrogate in it would make the answer itself
    unencodable (a 500 about a 400), so it is shown escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(code: str, message: str, field: str | None = None) -> dict:
    body = {"code": code, "message": _printable(str(message))}
    if field:
        body["field"] = _printable(str(field))
    body["request_id"] = get_request_id()
    return body


def domain_status(exc: errors.ArtifactError, path_kwargs=None) -> int:
    """The HTTP status of a domain error, decided by its family."""
    if isinstance(exc, errors.InvalidInput):
        return 400
    if isinstance(exc, errors.NotFound):
        # An unknown id in the path is 404; one sent in the body is a field error.
        return 404 if not exc.field or exc.field in (path_kwargs or {}) else 400
    if isinstance(exc, errors.Gone):
        return 410
    if isinstance(exc, errors.ServerFault):
        return exc.status
    return 409


def domain_error_response(exc: errors.ArtifactError, path_kwargs=None) -> JsonResponse:
    """A domain error as the API's JSON error, for views outside DRF (the admin's content view)."""
    status = domain_status(exc, path_kwargs)
    return JsonResponse(error_body(errors.public_code(status, exc.code), exc.message, exc.field), status=status)


def _first_error(detail, path: str = ""):
    """The first leaf of a ValidationError detail and its field path, e.g. ``panels[0].weight``."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                sub = path
            elif isinstance(key, int):
                sub = f"{path}[{key}]"
            else:
                sub = f"{path}.{key}" if path else str(key)
            found = _first_error(value, sub)
            if found is not None:
                return found
        return None
    if isinstance(detail, list):
        for index, item in enumerate(detail):
            found = _first_error(item, path if isinstance(item, str) else f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return path, detail


def database_refusal(exc) -> tuple[int, str, str] | None:
    """A database error that input or a concurrent write caused, as (status, code, message):
    a constraint (409 naming it), a value the column cannot hold (400), a deadlock that
    outlived the retries (409). None for anything else: that is a real fault."""
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    if isinstance(exc, IntegrityError):
        name = getattr(diag, "constraint_name", None) or str(exc).splitlines()[0]
        return 409, "conflict", f"the database refused the write: {name}"
    if isinstance(exc, DataError):
        detail = getattr(diag, "message_primary", None) or str(exc).splitlines()[0]
        return 400, "invalid", f"a value does not fit its column: {detail}"
    if isinstance(exc, OperationalError) and is_retryable(exc):
        return 409, "conflict", "the write collided with another one (deadlock or serialization failure); retry it"
    return None


# SQLSTATEs that say the server cannot serve now, not that the request is wrong: connection
# exceptions (class 08), insufficient resources (class 53: too many connections, disk full,
# out of memory), an administrator's or a crash's shutdown and a server still starting
# (57P01, 57P02, 57P03), and a statement cancelled by ``statement_timeout`` (57014).
_UNAVAILABLE_CLASSES = frozenset({"08", "53"})
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014"})
# SQLite: the lock was not granted within its timeout, or the file cannot be opened (the
# extended codes, e.g. SQLITE_BUSY_TIMEOUT, start with these).
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN")
# How long a client should wait before retrying: a PostgreSQL restart or failover takes seconds.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_MESSAGE = "the database is unavailable (unreachable, restarting or too slow); retry after Retry-After"


def database_unavailable(exc) -> bool:
    """True when ``exc`` says the database is down, unreachable, restarting, out of connections
    or too slow (SPEC §7: 503, not 500): the request may succeed unchanged a little later.

    psycopg reports a refused, lost or closed connection and a connect timeout as an
    OperationalError without SQLSTATE (the server never answered); anything the server
    answered carries one and counts only when it is one of the codes above."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    cause = exc.__cause__
    if (getattr(cause, "sqlite_errorname", None) or "").startswith(_SQLITE_UNAVAILABLE):
        return True
    if not isinstance(cause, psycopg.Error):
        return False
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is None:
        return True
    return sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES


def database_unavailable_response(request) -> HttpResponse:
    """The 503 of an outage: the JSON error under /v1 and /healthz, a short page elsewhere
    (the admin); ``Retry-After`` on both."""
    if answers_json(request.path):
        response = JsonResponse(error_body("database_unavailable", UNAVAILABLE_MESSAGE), status=503)
    else:
        response = HttpResponse(
            "<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
            f"<p>The database cannot be reached. Try again in {RETRY_AFTER_SECONDS} seconds.</p>",
            status=503,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def exception_handler(exc, context):
    if database_unavailable(exc):
        set_rollback()
        logger.warning("database unavailable, answered 503: %s", exc)
        return Response(
            error_body("database_unavailable", UNAVAILABLE_MESSAGE),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    refusal = database_refusal(exc)
    if refusal is not None:
        set_rollback()
        status, code, message = refusal
        logger.warning("database refusal answered %s %s: %s", status, code, exc)
        return Response(error_body(code, message), status=status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(str(exc) or PayloadTooLarge.default_detail)
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc), code="bad_request")
    if isinstance(exc, errors.ArtifactError):
        set_rollback()
        status = domain_status(exc, context.get("kwargs"))
        return Response(error_body(errors.public_code(status, exc.code), exc.message, exc.field), status=status)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's handler500 (JSON under /v1) answers
    # Only codes of errors.CODES are answered: the schema's enums promise no other.
    if isinstance(exc, exceptions.ValidationError):
        field, detail = _first_error(exc.detail) or ("", "invalid input")
        code = errors.public_code(response.status_code, getattr(detail, "code", None))
        response.data = error_body(code, f"{field}: {detail}" if field else str(detail), field or None)
    else:
        code = errors.public_code(response.status_code, getattr(exc.detail, "code", None) or exc.default_code)
        response.data = error_body(code, str(exc.detail))
    return response


class LimitedBodyMixin:
    """Checks every request meets before a view reads it (after authentication, so an
    anonymous request is still a 401): a declared body length within
    ``ARTIFACT_MAX_BODY_BYTES``, and a query string of the operation's own parameters, each
    given once and not empty (SPEC §7, strict parameters). The values themselves are checked
    where they are read: the filterset, the paginator, ``query_serializer``.

    DRF parses JSON straight from the stream and Django never limits file parts, so
    DATA_UPLOAD_MAX_MEMORY_SIZE alone does not bound a request; the declared length does.
    """

    # The actions whose GET is a page of a cursor-paginated list.
    paged_actions: tuple[str, ...] = ("list",)
    # Per action: a serializer of the query parameters it takes besides the page's and the filters'.
    query_serializers: dict = {}
    # Parameters that are lists (``fields=a&fields=b``): the only ones that may be given twice.
    repeatable_query: frozenset = frozenset({"fields"})

    def initial(self, request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.ARTIFACT_MAX_BODY_BYTES
        if length > limit:
            raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {limit} bytes")
        super().initial(request, *args, **kwargs)
        self.check_query_names(request)

    def query_names(self) -> set[str]:
        """The query parameters this request's operation takes."""
        names = set()
        action = getattr(self, "action", None)
        if self.request.method == "GET" and action in self.paged_actions and getattr(self, "paginator", None):
            names |= {self.paginator.cursor_query_param, self.paginator.page_size_query_param}
            filterset_class = getattr(self, "filterset_class", None)
            if filterset_class is not None and getattr(self, "filter_backends", None):
                names |= filter_query_names(filterset_class)
        query_serializer = self.query_serializers.get(action)
        if query_serializer is not None:
            names |= set(query_serializer().fields)
        return names

    def check_query_names(self, request) -> None:
        if not request.query_params or not hasattr(self, request.method.lower()):
            return  # a method the route does not offer is 405 whatever its query says
        names = self.query_names()
        for name, values in request.query_params.lists():
            if name not in names:
                takes = ", ".join(sorted(names)) or "none"
                raise errors.InvalidParameter(
                    f"unknown query parameter {name!r}; this operation takes: {takes}", field=name
                )
            if len(values) > 1 and name not in self.repeatable_query:
                raise errors.InvalidParameter(f"{name} is given {len(values)} times; give it once", field=name)
            if "" in values:
                raise errors.InvalidParameter(f"{name} is empty: give a value or leave the parameter out", field=name)

    def validated_query(self) -> dict:
        """This action's ``query_serializers`` entry, validated: a bad value is 400
        ``invalid_parameter`` naming the parameter."""
        serializer = self.query_serializers[self.action](data=self.request.query_params)
        if not serializer.is_valid():
            field, detail = _first_error(serializer.errors) or ("", "invalid")
            raise errors.InvalidParameter(f"{field}: {detail}", field=field or None)
        return serializer.validated_data


def filter_query_names(filterset_class) -> set[str]:
    """The query parameters of a filterset: a range filter reads two (``created_at_after``...)."""
    names = set()
    for name, filter_ in filterset_class.base_filters.items():
        suffixes = getattr(filter_.field.widget, "suffixes", None)
        names |= {f"{name}_{suffix}" for suffix in suffixes} if suffixes else {name}
    return names


class StrictFilterSet(filters.FilterSet):
    """A filterset whose invalid value is 400 ``invalid_parameter`` naming the parameter, never
    a filter silently left out (django-filter drops an empty or unreadable value)."""

    def is_valid(self):
        for name, filter_ in self.filters.items():
            # django-filter reads anything but true/false as "no filter" for a boolean.
            if isinstance(filter_, filters.BooleanFilter) and self.data.get(name, "true") not in ("true", "false"):
                raise errors.InvalidParameter(f"{name} must be true or false", field=name)
        if not self.form.is_valid():
            name, problems = next(iter(self.form.errors.items()))
            present = [key for key in self.data if key == name or key.startswith(f"{name}_")]
            field = present[0] if present else name
            raise errors.InvalidParameter(f"{field}: {' '.join(problems)}", field=field)
        return True


class TimeRangeFilter(filters.IsoDateTimeFromToRangeFilter):
    """``<name>_after`` / ``<name>_before``: ISO 8601 times, compared in UTC. PostgreSQL takes
    offsets up to 15:59 only; ISO 8601 allows 23:59, and such a time is still a valid one."""

    def filter(self, qs, value):
        if value:
            value = slice(self._utc(value.start, "after"), self._utc(value.stop, "before"))
        return super().filter(qs, value)

    def _utc(self, moment, suffix):
        if moment is None:
            return None
        try:
            return moment.astimezone(datetime.UTC)
        except OverflowError:
            raise errors.InvalidParameter(
                f"{self.field_name}_{suffix}: the time lies beyond the years 1 to 9999 in UTC",
                field=f"{self.field_name}_{suffix}",
            ) from None


# -- body fields that take JSON's own types only ---------------------------------------------
# DRF reads "5" as the integer 5, 5 as the string "5", "yes" as true and 7 as a UUID. A client
# sending the wrong type has a bug the schema names; an answer that guesses hides it.


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data):
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "A JSON boolean (true or false) is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictUUIDField(serializers.UUIDField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class QueryIntegerField(serializers.IntegerField):
    """An integer in a query string: digits, nothing else ("5.0", " 5" and "+5" are refused)."""

    def to_internal_value(self, data):
        if not (isinstance(data, str) and data.isascii() and data.isdigit()):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose fields made from model fields take JSON's own types only."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        **{field: StrictCharField for field in (models.CharField, models.TextField, models.SlugField)},
        models.IntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.BooleanField: StrictBooleanField,
        models.UUIDField: StrictUUIDField,
    }
    serializer_choice_field = StrictChoiceField


def validated(serializer_class, data, **kwargs) -> dict:
    """The serializer's validated data, or the one error shape (ValidationError -> 400)."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def created(request, data, *, viewname: str, kwargs: dict) -> Response:
    """201 with the new resource's address in Location."""
    location = request.build_absolute_uri(reverse(viewname, kwargs=kwargs))
    return Response(data, status=201, headers={"Location": location})


@extend_schema(exclude=True)
class UnknownEndpoint(LimitedBodyMixin, APIView):
    """Every /v1 path no route matches, a malformed id included: JSON 404 (401 when anonymous),
    never Django's HTML page nor an APPEND_SLASH redirect."""

    permission_classes = [permissions.IsAuthenticated]

    def dispatch_not_found(self, request, *args, **kwargs):
        raise exceptions.NotFound(f"no endpoint at {request.path}")

    get = post = put = patch = delete = head = options = dispatch_not_found


class JSONErrorsMixin:
    """Errors, and the description OPTIONS answers, as JSON from a view that renders
    something else: the schema (YAML) and the docs page (HTML). The docs page rendered
    them with its HTML template renderer, which has no template for them: a bare
    "405 Method Not Allowed" page, and OPTIONS was a 500."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if getattr(response, "exception", False) or request.method == "OPTIONS":
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(JSONErrorsMixin, SpectacularAPIView):
    pass


class DocsView(JSONErrorsMixin, SpectacularSwaggerView):
    pass


def answers_json(path: str) -> bool:
    """Paths whose every answer, an error Django raises itself included, is JSON."""
    return any(path == root or path.startswith(root + "/") for root in ("/v1", "/healthz"))


def handler400(request, exception=None):
    if answers_json(request.path):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(error_body("payload_too_large", "request body is over the limit"), status=413)
        return JsonResponse(error_body("bad_request", "malformed request"), status=400)
    return defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if answers_json(request.path):
        return JsonResponse(error_body("permission_denied", "permission denied"), status=403)
    return defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if answers_json(request.path):
        return JsonResponse(error_body("not_found", f"no endpoint at {request.path}"), status=404)
    return defaults.page_not_found(request, exception)


def handler500(request):
    # Django calls this inside its ``except`` block: the exception is the one being handled.
    # A middleware that lost the database (sessions, auth) ends here, not in a view.
    if database_unavailable(sys.exc_info()[1]):
        return database_unavailable_response(request)
    if answers_json(request.path):
        return JsonResponse(error_body("server_error", "internal error; quote the request_id"), status=500)
    return defaults.server_error(request)


# The schema's hooks, by the names the settings give them (kernel.api_schema).
schema_preprocessing_hook = api_schema.preprocessing_hook
schema_postprocessing_hook = api_schema.postprocessing_hook

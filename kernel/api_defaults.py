"""The API's default parser, permission and pagination classes.

They live apart from ``kernel.api`` because DRF imports its defaults while
importing its own views: this module must not import those back.
"""

import base64
import copy
import re
import secrets
from urllib import parse

from django.conf import settings
from django.core.exceptions import ValidationError
from rest_framework import pagination, parsers, permissions, renderers

from kernel import input_limits
from kernel.errors import InvalidCursor, InvalidInput, InvalidJSON, InvalidParameter


class BoundedJSONParser(parsers.JSONParser):
    """DRF's JSON parser, reading through ``input_limits.loads``: NaN, Infinity, overflowing
    numbers and nesting that would exhaust the parser are a 400 naming the body, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as exc:
            raise InvalidJSON(f"body: not {encoding} text ({exc.reason})", field="body") from None
        return input_limits.loads(text, field="body")


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

    def get_page_size(self, request):
        """``page_size`` when given must be an integer from 1 to ``max_page_size``: DRF's own
        reading falls back to the default on anything else, which hides the client's mistake."""
        text = request.query_params.get(self.page_size_query_param)
        if text is None:
            return self.page_size
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= self.max_page_size:
            raise InvalidParameter(
                f"page_size must be an integer from 1 to {self.max_page_size}, not {text[:40]!r}",
                field=self.page_size_query_param,
            )
        return int(text)

    def get_schema_operation_parameters(self, view):
        cursor, page_size = super().get_schema_operation_parameters(view)
        cursor["schema"]["minLength"] = 1
        cursor["description"] = "The position of a page: take it from the `next` or `previous` link of the last answer."
        page_size["schema"].update(minimum=1, maximum=self.max_page_size, default=self.page_size)
        page_size["description"] = f"Rows per page, 1 to {self.max_page_size} (default {self.page_size})."
        return [cursor, page_size]

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["required"] = ["next", "previous", "results"]
        for link in ("next", "previous"):
            response["properties"][link].pop("example", None)
        response["properties"]["next"]["description"] = "The next page's URL (its `cursor`), null on the last page."
        response["properties"]["previous"]["description"] = "The previous page's URL, null on the first page."
        return response

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model  # decode_cursor checks the position against its field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """DRF's decoding, and a position that must fit the ordering's first field: a cursor
        edited by hand is a 400 ``invalid_cursor``, never a 404 nor a database error."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            tokens = parse.parse_qs(
                base64.b64decode(encoded.encode("ascii"), validate=True).decode("ascii"), keep_blank_values=True
            )
            offset = int(tokens.get("o", ["0"])[0])
            reverse = tokens.get("r", ["0"])[0]
            position = tokens.get("p", [None])[0]
            if offset < 0 or offset > self.offset_cutoff or reverse not in ("0", "1"):
                raise ValueError("offset or direction out of range")
            if position is not None:
                value = self.model._meta.get_field(self.ordering[0].lstrip("-")).to_python(position)
                if isinstance(value, int):
                    input_limits.check_int(value, field="cursor")
        except (TypeError, ValueError, ValidationError, InvalidInput):  # binascii and Unicode errors too
            # The decoder's own words (codec errors, Python's types) say nothing to a client.
            raise InvalidCursor(
                "cursor is not one this API made: take it from a `next` or `previous` link", field="cursor"
            ) from None
        return pagination.Cursor(offset=offset, reverse=bool(int(reverse)), position=position)


class RawJSON:
    """A JSON text the database wrote, to go into an answer as it is: an artifact's payload,
    read as text (``payload::text``), so a list never parses a payload only to write it out
    again (two thirds of a page's Python with payloads of any size)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer, which writes a ``RawJSON`` as the JSON text it holds: the encoder
    puts a placeholder in its place (a string no value can hold: a random token between NUL
    characters, which no stored text has), replaced by the text in one pass at the end."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raws: list[str] = []
        token = secrets.token_hex(8)

        class Encoder(self.encoder_class):
            def default(self, value):
                if isinstance(value, RawJSON):
                    raws.append(value.text)
                    return f"\x00{token}:{len(raws) - 1}\x00"
                return super().default(value)

        renderer = copy.copy(self)
        renderer.encoder_class = Encoder
        body = super(JSONRenderer, renderer).render(data, accepted_media_type, renderer_context)
        if not raws:
            return body
        placeholder = re.compile(rb'"\\u0000' + token.encode() + rb':(\d+)\\u0000"')
        return placeholder.sub(lambda match: raws[int(match.group(1))].encode(), body)

"""The OpenAPI schema of /v1 as a contract (SPEC §7, "The schema is the contract").

drf-spectacular writes each operation from its view; ``ApiSchema`` adds what a client
generated from the schema needs and a view cannot say by itself:

- every error the operation can answer, per status, with the error body whose ``code`` is
  an enum of that operation's codes (``errors.CODES``): those every request may meet (401,
  503), those of its path (404), of its query string (400 ``invalid_parameter``...), of its
  body (the request serializer's own field checks, 413, 415) and those its view declares
  with ``error_codes(...)`` (the service's rules: 409 ``planning_locked``...);
- a description of its own (the view's or action's docstring, never a base class's), with
  the permission a write needs;
- after generation (``postprocessing_hook``): each error body as a named component, and an
  OpenAPI link from every answer that carries ``<name>_id`` to every operation whose path
  takes it, so a client (and schemathesis's stateful phase) can chain operations.
"""

from __future__ import annotations

import re
from collections import defaultdict

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_view_model
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation

from kernel import errors

API_PREFIX = "/v1/"
_CODE_KEY = "x-error-codes"


def error_codes(*codes) -> dict:
    """``extend_schema(extensions=error_codes(...))``: the codes a view's service may answer
    with beyond those ``ApiSchema`` infers. A code is a name of ``errors.CODES``, or a
    ``(status, code)`` pair where a name has two statuses (``pruned``)."""
    return {_CODE_KEY: list(codes)}


def _status_of(code) -> tuple[int, str]:
    if isinstance(code, tuple):
        return code
    statuses = {c.status for c in errors.CODES if c.code == code}
    if len(statuses) != 1:
        raise ValueError(f"error code {code!r} has statuses {sorted(statuses)}: name one as (status, code)")
    return statuses.pop(), code


def serializer_codes(serializer) -> set[str]:
    """The 400 codes a request serializer's own checks can answer, as the API answers them."""
    found = {"invalid", "required", "null"}
    if isinstance(serializer, PolymorphicProxySerializer):
        parts = serializer.serializers.values() if isinstance(serializer.serializers, dict) else serializer.serializers
        for part in parts:
            found |= serializer_codes(part)
        return {errors.public_code(400, code) for code in found}
    if isinstance(serializer, type):
        serializer = serializer()
    if isinstance(serializer, serializers.ListSerializer):
        found |= {"not_a_list", "empty", "max_length", "min_length"}
        serializer = serializer.child
    for field in getattr(serializer, "fields", {}).values():
        if field.read_only:
            continue
        found |= set(field.error_messages)
        child = getattr(field, "child", None)
        if isinstance(field, serializers.BaseSerializer):
            found |= serializer_codes(field)
        elif child is not None:
            found |= set(child.error_messages)
    return {errors.public_code(400, code) for code in found}


class ApiSchema(AutoSchema):
    def get_description(self) -> str:
        # Only the view's or action's own docstring: a base class's (a mixin's) says
        # nothing to a client.
        action = getattr(self.view, getattr(self.view, "action", None) or self.method.lower(), None)
        own = getattr(action, "__doc__", None) if action is not None else None
        return _dedent(own or type(self.view).__dict__.get("__doc__") or "")

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.ListField) and not field.allow_empty and schema.get("type") == "array":
            schema.setdefault("minItems", 1)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and not field.allow_blank
            and field.trim_whitespace
            and schema.get("type") == "string"
            and "enum" not in schema
            and "x-enum" not in schema
            and "format" not in schema
        ):
            # DRF trims the text (str.strip): one of only spaces is blank. Say it needs a character
            # that is not one, in Python's sense, which also counts \x1c-\x1f and \x85 as spaces.
            schema.setdefault("pattern", r"[^\s\x1c-\x1f\x85]")
        return schema

    def _get_request_for_media_type(self, serializer, direction="request"):
        # A PATCH whose serializer says so takes a whole body (``status`` required), not DRF's partial one.
        if self.method == "PATCH" and getattr(getattr(serializer, "Meta", None), "whole_in_patch", False):
            self.method = "POST"
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        # A body whose serializer requires a field is required itself (drf-spectacular leaves a
        # polymorphic body optional, so a client would be told it may send none).
        if body and not body.get("required"):
            request = self.get_request_serializer()
            parts = request.values() if isinstance(request, dict) else [request]
            if self.method == "POST" and any(_requires_fields(getattr(part, "request", part)) for part in parts):
                body["required"] = True
        return body

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        # The serializer's own docstring, if any, never a base class's.
        own = _dedent(type(serializer).__dict__.get("__doc__") or "")
        if own:
            schema["description"] = own
        else:
            schema.pop("description", None)
        # A serializer whose answers may leave fields out (``?fields=``) names those always there.
        always = getattr(getattr(serializer, "Meta", None), "always_present", None)
        if always is not None and direction == "response":
            schema["required"] = list(always)
        return schema

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None:
            operation.pop(_CODE_KEY, None)  # read into the error responses, not for clients
            permission = self._permission_text()
            if permission:
                operation["description"] = "\n\n".join(filter(None, [operation.get("description"), permission]))
        return operation

    def _permission_text(self) -> str:
        if self.method in ("GET", "HEAD", "OPTIONS"):
            return "Any signed-in user (a token or a session)."
        required = getattr(self.view, "required_permissions", None)
        if required is None:
            try:
                model = get_view_model(self.view)
            except Exception:  # a view without a queryset names its permissions itself
                model = None
            if model is None:
                return ""
            perms_map = {"POST": "%(app_label)s.add_%(model_name)s", "PATCH": "%(app_label)s.change_%(model_name)s"}
            names = {"app_label": model._meta.app_label, "model_name": model._meta.model_name}
            required = [perms_map[self.method] % names] if self.method in perms_map else []
        return "Needs the permission " + ", ".join(f"`{name}`" for name in required) + "." if required else ""

    # -- errors ---------------------------------------------------------------------------

    def _error_codes(self) -> dict[int, set[str]]:
        codes: dict[int, set[str]] = defaultdict(set)
        codes[401] |= {"not_authenticated", "authentication_failed"}
        codes[503].add("database_unavailable")
        negotiation = getattr(self.view, "content_negotiation_class", DefaultContentNegotiation)
        if issubclass(negotiation, DefaultContentNegotiation):
            codes[406].add("not_acceptable")
        if "{" in self.path:
            codes[404].add("not_found")
        query = [p for p in self._get_parameters() if p.get("in") == "query"]
        if query:
            codes[400].add("invalid_parameter")
        names = {p["name"] for p in query}
        if "cursor" in names:
            codes[400].add("invalid_cursor")
        if "type" in names:
            codes[400].add("unknown_type")
        if self.method in ("POST", "PATCH", "PUT"):
            codes[403].add("permission_denied")
            codes[409].add("conflict")
            codes[400] |= {"invalid", "invalid_text", "out_of_range"}
            request = self.get_request_serializer()
            media = request.items() if isinstance(request, dict) else [(m, request) for m in self.map_parsers()]
            for media_type, serializer in media:
                serializer = getattr(serializer, "request", serializer)  # an OpenApiRequest's
                if serializer is None:
                    continue
                codes[413].add("payload_too_large")
                codes[415].add("unsupported_media_type")
                # A multipart form's JSON parts are read as JSON bodies are.
                codes[400] |= {"parse_error", "json_too_deep"}
                if "multipart" in media_type:
                    codes[400].add("bad_request")
                codes[400] |= serializer_codes(serializer)
                if _takes_ids(serializer):
                    codes[400].add("not_found")
        for code in self.get_extensions().get(_CODE_KEY, ()):
            status, name = _status_of(code)
            codes[status].add(name)
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status, codes in sorted(self._error_codes().items()):
            known = {c.code: c for c in errors.CODES if c.status == status}
            unknown = codes - set(known)
            if unknown:
                raise ValueError(
                    f"{self.method} {self.path}: codes {sorted(unknown)} are not {status} codes of errors.CODES"
                )
            ordered = [code for code in known if code in codes]
            lines = "\n".join(f"- `{code}`: {known[code].meaning}" for code in ordered)
            response = responses.setdefault(str(status), {"description": ""})
            response["description"] = (
                (response.get("description") or _STATUS_TEXT.get(status, "Error")) + "\n\n" + lines
            )
            response["content"] = {"application/json": {"schema": _error_schema(ordered)}}
            if status == 503:
                response["headers"] = {"Retry-After": _RETRY_AFTER}
        return responses


_RETRY_AFTER = {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}
_STATUS_TEXT = {
    400: "The request is not valid; nothing was written.",
    401: "Not signed in.",
    403: "Signed in, without the permission this operation needs.",
    404: "Nothing here: an unknown or malformed id in the path.",
    406: "The `Accept` header asks for something other than JSON.",
    409: "A rule refuses this well-formed request.",
    410: "Gone for good.",
    413: "The body is over the limit.",
    415: "The body's media type is not one this operation takes.",
    500: "The service failed.",
    503: "Unavailable for now; retry after `Retry-After`.",
    507: "Storage is full.",
}


def _error_schema(codes: list[str]) -> dict:
    return {
        "type": "object",
        "required": ["code", "message", "request_id"],
        "properties": {
            "code": {"type": "string", "enum": codes, "description": "Stable: what went wrong (errors table)."},
            "message": {"type": "string", "description": "For a person: what went wrong, with the offending value."},
            "field": {"type": "string", "description": "The offending field or parameter, e.g. `payload.panels[0]`."},
            "request_id": {"type": "string", "description": "The request's `X-Request-ID`: quote it."},
        },
        "x-error-body": True,
    }


def _requires_fields(serializer) -> bool:
    if isinstance(serializer, PolymorphicProxySerializer):
        return True
    if isinstance(serializer, type):
        serializer = serializer()
    fields = getattr(serializer, "fields", {})
    return any(field.required and not field.read_only for field in fields.values())


def _takes_ids(serializer) -> bool:
    if isinstance(serializer, PolymorphicProxySerializer):
        parts = serializer.serializers.values() if isinstance(serializer.serializers, dict) else serializer.serializers
        return any(_takes_ids(part) for part in parts)
    if isinstance(serializer, type):
        serializer = serializer()
    if isinstance(serializer, serializers.ListSerializer):
        serializer = serializer.child
    for name, field in getattr(serializer, "fields", {}).items():
        if field.read_only:
            continue
        if name.endswith("_id") or (isinstance(field, serializers.BaseSerializer) and _takes_ids(field)):
            return True
        if isinstance(getattr(field, "child", None), serializers.BaseSerializer) and _takes_ids(field.child):
            return True
    return False


def _dedent(text: str) -> str:
    import inspect

    return inspect.cleandoc(text) if text else ""


# -- after generation ---------------------------------------------------------------------


def preprocessing_hook(endpoints):
    """Document each route once, without the trailing-slash twin and the catch-all."""
    return [
        (path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
        if path.startswith(API_PREFIX) and not path.endswith("/")
    ]


def postprocessing_hook(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    _single_value_enums(schemas)
    _no_empty_query_strings(result)
    _name_error_bodies(result, schemas)
    _add_links(result, schemas)
    return result


def _single_value_enums(schemas: dict) -> None:
    """``x-enum``: an enum the enum post-processing must leave alone (a polymorphic body's
    ``type``, one value per branch, would otherwise be renamed by hash)."""
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            if "x-enum" in prop:
                prop["enum"] = prop.pop("x-enum")


def _no_empty_query_strings(result: dict) -> None:
    """A query parameter given empty is refused (400 ``invalid_parameter``), never read as
    "no filter": say so (``minLength: 1``)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "query" and schema.get("type") == "string":
                    schema.setdefault("minLength", 1)


def _pascal(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def _name_error_bodies(result: dict, schemas: dict) -> None:
    """Each operation's error bodies as components: one per distinct set of codes, named for
    its code when it has one (``NotFoundError``), else for the operation and status."""
    by_codes: dict[tuple, str] = {}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                media = response.get("content", {}).get("application/json", {})
                schema = media.get("schema")
                if not isinstance(schema, dict) or not schema.pop("x-error-body", False):
                    continue
                codes = tuple(schema["properties"]["code"]["enum"])
                name = by_codes.get(codes)
                if name is None:
                    if len(codes) == 1:
                        name = f"{_pascal(codes[0])}Error"
                    elif set(codes) == {"not_authenticated", "authentication_failed"}:
                        name = "AuthenticationError"
                    else:
                        name = f"{_pascal(operation['operationId'])}Error{status}"
                    by_codes[codes] = name
                    schemas[name] = schema
                media["schema"] = {"$ref": f"#/components/schemas/{name}"}


def _resolve(schema: dict, schemas: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _ids_in(schema: dict, schemas: dict) -> tuple[str, set[str]]:
    """Where the first object of an answer lies (a JSON pointer prefix) and its ``*_id`` fields."""
    schema = _resolve(schema, schemas)
    prefix = ""
    if schema.get("type") == "object" and "results" in schema.get("properties", {}):
        schema, prefix = _resolve(schema["properties"]["results"], schemas), "/results"
    if schema.get("type") == "array":
        schema, prefix = _resolve(schema.get("items", {}), schemas), prefix + "/0"
    if "oneOf" in schema:
        return prefix, set()
    return prefix, {name for name in schema.get("properties", {}) if name.endswith("_id")}


def _add_links(result: dict, schemas: dict) -> None:
    """An OpenAPI link from each successful answer carrying ``<name>_id`` to every operation
    whose path parameters it (with the answering operation's own path) fills."""
    targets = []
    for path, operations in result.get("paths", {}).items():
        params = re.findall(r"{(\w+)}", path)
        for operation in operations.values():
            targets.append((operation["operationId"], params))
    for path, operations in result.get("paths", {}).items():
        own = set(re.findall(r"{(\w+)}", path))
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                media = response.get("content", {}).get("application/json")
                if not status.startswith("2") or not media:
                    continue
                prefix, ids = _ids_in(media["schema"], schemas)
                if prefix:
                    continue  # a list may be empty: only a single object's ids are sure to be there
                links = {}
                for target, params in targets:
                    if not params or target == operation["operationId"] or not set(params) <= ids | own:
                        continue
                    if not set(params) & ids:
                        continue  # nothing the answer adds
                    links[target] = {
                        "operationId": target,
                        "parameters": {
                            name: f"$response.body#{prefix}/{name}" if name in ids else f"$request.path.{name}"
                            for name in params
                        },
                    }
                if links:
                    response["links"] = links

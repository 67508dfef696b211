"""A ``Content-Type`` Django cannot build a request from, dealt with before Django sees it
(SPEC §12: a header the service cannot use answers 4xx, or is ignored where the request
has no body; never a 500).

Django reads the ``charset`` of ``Content-Type`` while it constructs the request object,
before any middleware, error handler or view: a charset that Python knows but that decodes
no text (``base64``, ``hex``, ``zlib``; ``undefined`` and ``idna`` fail on ordinary bytes)
is taken as the request's encoding, and decoding the query string with it raises; so does
an RFC 2231 parameter in an unknown encoding. Either way the server answered its own HTML
500. This WSGI middleware looks at the header first, with Django's own parser: without a
body the header is dropped (nothing in the request is decoded with it); with a body the
request is refused with 415 ``unsupported_media_type`` (JSON under /v1 and /healthz).
"""

from __future__ import annotations

import codecs
import json
import logging

from django.core.handlers.wsgi import get_path_info
from django.utils.http import parse_header_parameters

from kernel.request_id import HEADER, accepted_request_id, request_id_scope

logger = logging.getLogger(__name__)

# Every byte value: a charset Django may decode a request with must read any of them
# (with "replace"), since a query string or a form can hold any.
_EVERY_BYTE = bytes(range(256))


def content_type_problem(value: str) -> str | None:
    """Why Django could not build a request with this ``Content-Type``; None when it can."""
    if ";" not in value:
        return None  # no parameters: nothing is decoded with it
    try:
        _, params = parse_header_parameters(value)
    except ValueError as exc:
        return f"malformed Content-Type ({exc})"
    charset = params.get("charset")
    if charset is None:
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        return None  # no codec of that name: Django ignores it and reads UTF-8
    except ValueError:
        return f"charset {charset[:40]!r} is not a text encoding"
    try:
        _EVERY_BYTE.decode(charset, "replace")
    except (LookupError, ValueError):  # LookupError: a bytes-to-bytes codec; UnicodeError is a ValueError
        return f"charset {charset[:40]!r} is not a text encoding"
    return None


def _has_body(environ) -> bool:
    """As Django decides it: a Content-Length above zero (a malformed one counts as none)."""
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


class UsableContentType:
    """WSGI middleware around Django's application (``artifacts_project.wsgi``)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        problem = content_type_problem(environ.get("CONTENT_TYPE", ""))
        if problem is None:
            return self.application(environ, start_response)
        if _has_body(environ):
            return _refuse(environ, start_response, problem)
        environ = {key: value for key, value in environ.items() if key != "CONTENT_TYPE"}
        return self.application(environ, start_response)


def _refuse(environ, start_response, problem: str):
    # Imported here: this module loads with the WSGI module, before settings are configured.
    from kernel.api import answers_json, error_body

    request_id = accepted_request_id(environ.get("HTTP_X_REQUEST_ID", ""))
    path = get_path_info(environ)
    message = f"the request body cannot be read: {problem}"
    with request_id_scope(request_id):
        logger.warning("Unsupported Media Type: %s (%s)", path, problem)
        if answers_json(path):
            body = json.dumps(error_body("unsupported_media_type", message)).encode()
            content_type = "application/json"
        else:
            body = f"415 Unsupported Media Type: {message}\n".encode()
            content_type = "text/plain; charset=utf-8"
    start_response(
        "415 Unsupported Media Type",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
            (HEADER, request_id),
        ],
    )
    return [body]

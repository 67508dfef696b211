"""Request correlation: one id per HTTP request or command invocation.

The id lives in a context variable so services, log records and stored rows all see
the same value without threading it through every call.
"""

import contextlib
import contextvars
import logging
import re
import uuid

HEADER = "X-Request-ID"
# Accept what clients commonly send (UUIDs, ULIDs, trace ids); anything else is
# replaced rather than echoed, so a header cannot inject into logs or responses.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def get_request_id() -> str:
    return _current.get()


def accepted_request_id(incoming: str) -> str:
    """The client's ``X-Request-ID`` when it is one we accept, else a fresh id."""
    return incoming if _ACCEPTED.match(incoming) else new_request_id()


@contextlib.contextmanager
def request_id_scope(value: str | None = None):
    """Run a block under ``value`` (or a fresh id); yields the id in force."""
    token = _current.set(value or new_request_id())
    try:
        yield _current.get()
    finally:
        _current.reset(token)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        value = accepted_request_id(request.headers.get(HEADER, ""))
        request.request_id = value
        with request_id_scope(value):
            response = self.get_response(request)
        response[HEADER] = value
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Django logs every 4xx and 5xx answer ("Not Found: /v1/...", logger django.request)
        # once the whole middleware chain has returned, outside the id's scope; the request
        # it logs with carries the id the middleware gave it.
        from_request = getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = get_request_id() or (from_request if isinstance(from_request, str) else "") or "-"
        return True

"""A view that loses its database answers 503 ``database_unavailable``, never a 500 (SPEC §7).

DRF views map the error in their exception handler (``kernel.api``); this
middleware does the same for every other view: the admin, ``/healthz``, the content
preview. Errors raised by a middleware itself (sessions, authentication) never reach a
view's ``process_exception``; Django hands them to ``handler500``, which maps them too.
"""

import logging

from kernel.api import database_unavailable, database_unavailable_response

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not database_unavailable(exception):
            return None  # a real fault: Django's handler500 answers
        # One line, not a traceback per request: during an outage every request lands here.
        logger.warning("database unavailable, answered 503: %s", exception)
        return database_unavailable_response(request)

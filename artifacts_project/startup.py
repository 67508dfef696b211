"""Checks the service makes before it serves a request.

Settings stay importable without DJANGO_SECRET_KEY (management commands and the test
suite fall back to a per-process random key), so the refusal lives here, in the one
place every server goes through: the WSGI and ASGI modules (``runserver`` loads the WSGI
application named by ``WSGI_APPLICATION``, so it is covered too).
"""

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def check_secret_key() -> None:
    """Refuse to serve with DEBUG off and no DJANGO_SECRET_KEY: a random key would log
    everyone out on each restart and differ between workers; a fixed one would be public."""
    if settings.DEBUG or os.environ.get("DJANGO_SECRET_KEY", "").strip():
        return
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set and DEBUG is off: the service refuses to start. "
        "Set DJANGO_SECRET_KEY to a long random value (e.g. python -c "
        "'import secrets; print(secrets.token_urlsafe(50))'), or DJANGO_DEBUG=1 for development."
    )

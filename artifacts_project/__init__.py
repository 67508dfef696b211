# The Celery app is loaded with Django, so that tasks (and `shared_task`) bind to it.
from .celery import app as celery_app

__all__ = ("celery_app",)

"""The Celery application of the pipeline's workers (SPEC §10): configured from Django's
settings (the ``CELERY_`` ones), tasks found in each app's ``tasks`` module.

    celery -A artifacts_project worker
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

app = Celery("artifacts_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

import gc
import os

from django.core.wsgi import get_wsgi_application

from artifacts_project.startup import check_secret_key
from kernel.request_headers import UsableContentType

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")
# Settings are read lazily, on the first attribute access inside the check.
check_secret_key()
# A Content-Type that Django cannot build a request from is dealt with before it tries.
application = UsableContentType(get_wsgi_application())
# Everything loaded so far (Django, the apps, their modules) lives as long as the process:
# out of the collector's sight, a full collection no longer walks it, which took a request
# that happened to trigger one tens of milliseconds (the API's p99, benchmarks/api.py).
gc.freeze()

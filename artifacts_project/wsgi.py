import os

from django.core.wsgi import get_wsgi_application

from artifacts_project.startup import check_secret_key
from kernel.request_headers import UsableContentType

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")
# Settings are read lazily, on the first attribute access inside the check.
check_secret_key()
# A Content-Type that Django cannot build a request from is dealt with before it tries.
application = UsableContentType(get_wsgi_application())

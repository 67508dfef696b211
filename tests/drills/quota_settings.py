"""The service's settings, with media on a ``QuotaStorage`` of DRILL_MEDIA_QUOTA bytes
(the storage drill's stand-in for a small tmpfs where mounting one is not allowed)."""

import os

from artifacts_project.settings import *  # noqa: F403
from artifacts_project.settings import STORAGES

STORAGES = {
    **STORAGES,
    "default": {
        "BACKEND": "tests.drills.quota.QuotaStorage",
        "OPTIONS": {"quota": int(os.environ["DRILL_MEDIA_QUOTA"])},
    },
}

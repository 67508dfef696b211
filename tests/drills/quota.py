"""Media storage with a byte quota, for the storage drill where no tmpfs can be mounted
(mounting needs root): the files are real, and a write that would pass the quota writes
what fits and then fails with ENOSPC, as a full filesystem does. Everything under
MEDIA_ROOT counts, so the drill fills it by writing a file there, as on a tmpfs."""

import errno
import os

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage


class QuotaStorage(FileSystemStorage):
    def __init__(self, quota: int, **kwargs):
        super().__init__(**kwargs)
        self.quota = quota

    def used(self) -> int:
        total = 0
        for folder, _dirs, files in os.walk(self.location):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(folder, name))
                except OSError:  # removed meanwhile
                    pass
        return total

    def _save(self, name, content):
        return super()._save(name, _Limited(content, max(0, self.quota - self.used())))


class _Limited(File):
    def __init__(self, content, room: int):
        super().__init__(content.file, content.name)
        self.room = room

    def chunks(self, chunk_size=None):
        for chunk in File(self.file).chunks(chunk_size):
            if len(chunk) > self.room:
                yield chunk[: self.room]
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(chunk)
            yield chunk

"""The base of every management command of this project: one request id per invocation."""

from django.core.management.base import BaseCommand

from .request_id import request_id_scope


class RequestIdCommand(BaseCommand):
    """Runs ``handle`` under a fresh request id, printed first, so every row the command
    writes can be traced back to this invocation (and its log lines carry the same id)."""

    def execute(self, *args, **options):
        with request_id_scope() as request_id:
            self.stdout.write(f"request id: {request_id}")
            return super().execute(*args, **options)

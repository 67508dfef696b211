"""Django's migrate, run as the owner of the tables when DATABASE_OWNER_URL is set (SPEC §12).

With the "owner" database alias defined, ``--database`` defaults to it, so a deploy runs
plain ``manage.py migrate``. Afterwards the service role (the user of DATABASE_URL) gets
its privileges on what the migrations created (``create_db_roles.service_grants``: the
owner's default privileges let it read and write a new table, not delete from it, and
these narrow that to what each table needs).
"""

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from artifacts_project.management.commands.create_db_roles import service_grants

OWNER_ALIAS = "owner"


class Command(DjangoMigrateCommand):
    def add_arguments(self, parser):
        super().add_arguments(parser)
        if OWNER_ALIAS in settings.DATABASES:
            parser.set_defaults(database=OWNER_ALIAS)

    def handle(self, *args, **options):
        service = self.service_role(options["database"])
        super().handle(*args, **options)
        if service and not (options["plan"] or options["check_unapplied"]):
            self.grant_service(service)

    def service_role(self, database: str) -> str | None:
        """The role to re-grant after migrating as the owner, checked before migrating."""
        if database != OWNER_ALIAS or connections[OWNER_ALIAS].vendor != "postgresql":
            return None
        service = connections[DEFAULT_DB_ALIAS].settings_dict.get("USER")
        owner = connections[OWNER_ALIAS].settings_dict.get("USER")
        if not service or service == owner:
            raise CommandError(
                "DATABASE_OWNER_URL is set, so DATABASE_URL must name the service role, a different user "
                f"(it names {service or 'no user'!r}; the owner is {owner!r})."
            )
        with connections[OWNER_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [service])
            if cursor.fetchone() is None:
                raise CommandError(f"the service role {service!r} does not exist: run create_db_roles first")
        return service

    def grant_service(self, service: str) -> None:
        connection = connections[OWNER_ALIAS]
        with transaction.atomic(using=OWNER_ALIAS), connection.cursor() as cursor:
            for statement in service_grants(cursor, service):
                cursor.execute(statement.as_string(connection.connection))
        if self.verbosity >= 1:
            self.stdout.write(f"privileges of the service role {service} applied (SPEC §12)")

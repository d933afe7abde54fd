from django.core.management.base import BaseCommand, CommandError

from apps.tenants.cli import marketplace_named
from apps.tenants.scratch import scratch_drop


class Command(BaseCommand):
    help = "Drop a scratch marketplace a simulation kept (--keep): its schema, domain, keys and Redis keys."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the scratch marketplace's slug, as the simulation printed it")

    def handle(self, *args, **opts):
        tenant = marketplace_named(opts["name"])
        try:
            scratch_drop(tenant)
        except ValueError as exc:  # a live marketplace: refused, nothing changed
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"dropped {tenant.schema_name}")

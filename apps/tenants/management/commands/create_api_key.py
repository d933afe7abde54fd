from django.core.management.base import BaseCommand, CommandError

from apps.tenants.models import Marketplace
from apps.tenants.services import ProvisioningError, api_key_create


class Command(BaseCommand):
    help = "Issue a secret API key for a marketplace; the key is the last line printed."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="the marketplace's slug (schema)")
        parser.add_argument("--mode", default="test", choices=["test", "live"])
        parser.add_argument("--name", default="")

    def handle(self, *args, **opts):
        tenant = Marketplace.objects.filter(schema_name=opts["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no marketplace {opts['tenant']!r}")
        try:
            key, raw = api_key_create(tenant=tenant, mode=opts["mode"], name=opts["name"])
        except ProvisioningError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"created {key.mode} key {key} for {tenant.schema_name} (shown once):")
        self.stdout.write(raw)

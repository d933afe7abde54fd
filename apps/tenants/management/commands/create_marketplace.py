from django.core.management.base import BaseCommand, CommandError

from apps.tenants.services import ProvisioningError, marketplace_create


class Command(BaseCommand):
    help = "Create a marketplace (tenant): schema, domain and operator account."

    def add_arguments(self, parser):
        parser.add_argument("--slug", required=True, help="schema name, e.g. acme")
        parser.add_argument("--name", required=True)
        parser.add_argument("--domain", required=True, help="e.g. acme.localhost")
        parser.add_argument("--owner-email", required=True, help="the operator's login")
        parser.add_argument("--password", help="operator password (default: generated and printed)")

    def handle(self, *args, **opts):
        try:
            made = marketplace_create(
                slug=opts["slug"],
                name=opts["name"],
                domain=opts["domain"],
                owner_email=opts["owner_email"],
                operator_password=opts["password"],
            )
        except ProvisioningError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"created marketplace {made.marketplace.schema_name} at {made.domain.domain}")
        self.stdout.write(f"operator login: {made.operator_email} / {made.operator_password}")

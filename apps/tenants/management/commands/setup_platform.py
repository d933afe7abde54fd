import hashlib
import hmac

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string
from django_tenants.utils import tenant_context

from apps.tenants.models import ApiKey, Marketplace
from apps.tenants.services import (
    hash_key,
    marketplace_create,
    public_tenant_ensure,
    template_ensure,
)

DEMO = {
    "slug": "demo",
    "name": "Demo Marketplace",
    "domain": "demo.localhost",
    "owner_email": "ops@demo.localhost",
}
DEMO_PASSWORD = "demo-operator"


def demo_api_key() -> str:
    """Stable across `make run`s (derived from the secret key) so saved curl commands keep working."""
    digest = hmac.new(settings.SECRET_KEY.encode(), b"demo-api-key", hashlib.sha256).hexdigest()
    return "sk_test_demo" + digest[:36]


class Command(BaseCommand):
    help = "Idempotent platform set-up: public tenant, template schema, and optionally the demo."

    def add_arguments(self, parser):
        parser.add_argument("--demo", action="store_true", help="create the demo marketplace")
        parser.add_argument("--port", default=str(settings.PORT))

    def handle(self, *args, **opts):
        public_tenant_ensure()
        template_ensure()
        if not opts["demo"]:
            return
        demo = Marketplace.objects.filter(schema_name=DEMO["slug"]).first()
        if demo is None:
            made = marketplace_create(**DEMO, operator_password=DEMO_PASSWORD)
            demo = made.marketplace
        elif not demo.domains.filter(domain=DEMO["domain"]).exists():
            raise CommandError("marketplace 'demo' exists without its demo.localhost domain")
        with tenant_context(demo):
            for path in settings.TENANT_PROVISIONERS:  # idempotent: backfills what newer apps install
                import_string(path)(marketplace=demo)
            from django.contrib.auth import get_user_model

            user_model = get_user_model()
            if not user_model.objects.filter(username=DEMO["owner_email"]).exists():
                user_model.objects.create_superuser(
                    username=DEMO["owner_email"], email=DEMO["owner_email"], password=DEMO_PASSWORD
                )
        raw = demo_api_key()
        ApiKey.objects.get_or_create(
            key_hash=hash_key(raw),
            defaults={
                "tenant": demo,
                "name": "demo (make run)",
                "mode": "test",
                "prefix": "sk_test_",
                "last4": raw[-4:],
            },
        )
        port = opts["port"]
        self.stdout.write("")
        self.stdout.write(f"  Demo admin:    http://demo.localhost:{port}/admin/")
        self.stdout.write(f"  Login:         {DEMO['owner_email']} / {DEMO_PASSWORD}")
        self.stdout.write(
            f"  Platform admin: http://localhost:{port}/admin/ (python manage.py createsuperuser)"
        )
        self.stdout.write(f"  Test API key:  {raw}")
        self.stdout.write(
            f"  Try:           curl -H 'Authorization: Bearer {raw}' http://localhost:{port}/api/v1/account"
        )
        self.stdout.write("")

import json

from django.core.management.base import BaseCommand, CommandError

from apps.tenants.models import ApiKey, Marketplace
from apps.tenants.services import ProvisioningError, api_key_create


def scopes_parse(raw: str) -> dict[str, str]:
    """``payments=write,customers=read`` (or the same as a JSON object) as a key's scopes; the
    resources and levels are checked by ``api_key_create``."""
    text = raw.strip()
    if text.startswith("{"):
        try:
            scopes = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"--scopes is not a JSON object: {exc}") from None
        if not isinstance(scopes, dict):
            raise CommandError("--scopes must be a JSON object")
        return scopes
    scopes = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        resource, sep, level = part.partition("=")
        if not sep:
            raise CommandError(f"--scopes takes resource=level pairs, got {part!r}")
        scopes[resource.strip()] = level.strip()
    if not scopes:
        # an empty restriction would be a key with full access: say so instead
        raise CommandError("--scopes names no resource; leave it out for a key with full access")
    return scopes


class Command(BaseCommand):
    help = "Issue a secret API key for a marketplace; the key is the last line printed."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="the marketplace's slug (schema)")
        parser.add_argument("--mode", default="test", choices=["test", "live"])
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--scopes",
            default=None,
            help="a restricted key: resource=level pairs, e.g. payments=write,customers=read "
            f"(levels: {', '.join(ApiKey.SCOPE_LEVELS)}; resources: {', '.join(ApiKey.SCOPE_RESOURCES)}). "
            "Without it the key has full access.",
        )

    def handle(self, *args, **opts):
        tenant = Marketplace.objects.filter(schema_name=opts["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no marketplace {opts['tenant']!r}")
        scopes = None if opts["scopes"] is None else scopes_parse(opts["scopes"])
        try:
            key, raw = api_key_create(tenant=tenant, mode=opts["mode"], name=opts["name"], scopes=scopes)
        except ProvisioningError as exc:
            raise CommandError(str(exc)) from exc
        restricted = f" restricted to {json.dumps(key.scopes, sort_keys=True)}" if key.scopes else ""
        self.stdout.write(f"created {key.mode} key {key}{restricted} for {tenant.schema_name} (shown once):")
        self.stdout.write(raw)

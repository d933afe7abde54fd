"""Our own `manage.py check --deploy` checks (Django's cover the security settings)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


def webhook_ssrf_guard_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Outbound webhooks to loopback or private addresses are for development only."""
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS and not settings.DEBUG:
        return [
            checks.Warning(
                "WEBHOOK_ALLOW_PRIVATE_URLS is on in production: any API key holder can make this server "
                "POST to loopback and private addresses (server-side request forgery).",
                hint="Unset WEBHOOK_ALLOW_PRIVATE_URLS (it defaults to off unless DJANGO_DEBUG=1).",
                id="core.W001",
            )
        ]
    return []


def checks_register() -> None:
    checks.register(webhook_ssrf_guard_check, checks.Tags.security, deploy=True)

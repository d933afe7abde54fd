#!/usr/bin/env python
"""Django's command-line utility."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config import services

    if os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL"):
        # A configured URL that does not answer is a clear error, never a traceback.
        try:
            services.check_configured()
        except services.ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018  (loads the settings: a missing secret is one line, not a traceback)
    except ImproperlyConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

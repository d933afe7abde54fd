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
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

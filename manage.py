#!/usr/bin/env python
"""Django's command-line utility. Before the settings load it finds PostgreSQL and Redis
(``config.discovery``: the configured URLs, else local servers, else the embedded default) and
exports them as ``DATABASE_URL`` / ``REDIS_URL``, which is all the settings read."""

import os
import sys

from config import discovery
from config.connections import ServiceError


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        # A configured URL that does not answer is a clear error, never a traceback.
        discovery.resolve_into_environ()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    from django.conf import settings  # lazy: only once discovery has exported the URLs
    from django.core.exceptions import ImproperlyConfigured  # lazy: as above
    from django.core.management import execute_from_command_line  # lazy: as above

    try:
        settings.INSTALLED_APPS  # noqa: B018  (loads the settings: a missing secret is one line, not a traceback)
    except ImproperlyConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

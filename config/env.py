"""The checkout's ``.env``: read by the settings and, before them, by the commands that discover
services (so a ``DATABASE_URL`` written there is the one they check and use)."""

from __future__ import annotations

import os
from pathlib import Path

DOTENV = Path(__file__).resolve().parent.parent / ".env"


def dotenv_load(path: Path = DOTENV) -> None:
    """``KEY=VALUE`` lines of a checkout's ``.env`` (written by ``make run`` / ``make test``: they
    choose development mode there), under whatever the environment already says. A deployment has
    no ``.env`` (it is neither committed nor in the image), so it gets production settings.
    ``DJANGO_DOTENV=0`` ignores it."""
    if os.environ.get("DJANGO_DOTENV", "1") == "0" or not path.is_file():
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            os.environ.setdefault(key.strip(), value.strip())

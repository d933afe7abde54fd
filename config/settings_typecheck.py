"""The settings mypy's Django plugin loads (pyproject: ``[tool.django-stubs]``): development
settings, so type-checking needs no production secrets. Never served."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

from config.settings import *  # noqa: F403

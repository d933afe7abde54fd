"""The test session's service discovery: a pytest plugin (``-p config.testing`` in pyproject's
``addopts``), so that pytest run directly finds PostgreSQL and Redis as ``make test`` does.

pytest-django loads the settings while pytest loads the first conftest files, too early for a
conftest to do this; a ``-p`` plugin is registered before that. ``make test``
(``config.stack test``) has exported both URLs already, and then this probes nothing.
"""

from __future__ import annotations

import pytest

from config import discovery
from config.connections import ServiceError


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    try:
        discovery.resolve_into_environ(check_configured=False)
    except ServiceError as exc:
        raise pytest.UsageError(str(exc)) from None

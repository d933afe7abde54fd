"""The vendors' browser tests use the shared Chromium fixture."""

from __future__ import annotations

from tests.browser import chromium  # noqa: F401

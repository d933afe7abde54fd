"""URL converters every urlconf uses: importing this module registers them, once."""

from __future__ import annotations

from django.urls import register_converter


class ObjectIdConverter:
    """Our ids are letters, digits and underscores; anything else (a NUL byte, a slash, a quote)
    cannot name an object and never reaches a view or a query."""

    regex = "[A-Za-z0-9_]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ObjectIdConverter, "objid")

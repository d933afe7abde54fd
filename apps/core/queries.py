"""Query helpers shared by the apps' selectors."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def filter_given(queryset: QuerySet[M], **lookups: Any) -> QuerySet[M]:
    """``queryset`` narrowed by each of ``lookups`` whose value is given: None and "" (a filter
    the caller left out, e.g. an absent query parameter) narrow nothing; False, 0 and the rest
    do. Unevaluated."""
    return queryset.filter(**{lookup: value for lookup, value in lookups.items() if value not in (None, "")})

"""Cursor pagination (Stripe's): ``?limit=`` (1..100, default 10) with ``starting_after`` (the
page after that object) or ``ending_before`` (the page before it), newest first; ``has_more``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from apps.api.errors import ApiError

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


@dataclass
class Page:
    data: list
    has_more: bool


def limit_from(params) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(
            400,
            "invalid_request_error",
            "parameter_invalid",
            f"limit must be an integer from 1 to {MAX_LIMIT}",
            "limit",
        )
    return limit


def _after(order: tuple[str, ...], values: tuple, *, older: bool) -> Q:
    """Rows strictly older (or newer) than ``values`` in the (descending) ``order``."""
    op = "lt" if older else "gt"
    condition = Q()
    for i, field in enumerate(order):
        step = Q(**{f"{f}": values[j] for j, f in enumerate(order[:i])}) & Q(**{f"{field}__{op}": values[i]})
        condition |= step
    return condition


def cursor_paginate(
    params,
    queryset: QuerySet,
    *,
    order: tuple[str, ...] = ("created_at", "pk"),
    id_field: str = "pk",
    id_from_cursor: Callable[[str], str] = str,
) -> Page:
    """One page of ``queryset`` in descending ``order`` (whose last field is unique). A cursor is
    an object id; it is looked up in the unfiltered table so filters may exclude it."""
    limit = limit_from(params)
    starting_after, ending_before = params.get("starting_after"), params.get("ending_before")
    if starting_after and ending_before:
        raise ApiError(
            400,
            "invalid_request_error",
            "parameter_invalid",
            "Use starting_after or ending_before, not both.",
            "ending_before",
        )
    cursor, param = (starting_after, "starting_after") if starting_after else (ending_before, "ending_before")
    qs = queryset
    if cursor:
        values = (
            queryset.model._default_manager.filter(**{id_field: id_from_cursor(cursor)})
            .values_list(*order)
            .first()
        )
        if values is None:
            raise ApiError(
                400, "invalid_request_error", "resource_missing", f"No such object: {cursor!r}", param
            )
        qs = qs.filter(_after(order, values, older=bool(starting_after)))
    if ending_before:
        rows = list(qs.order_by(*order)[: limit + 1])
        has_more = len(rows) > limit
        return Page(list(reversed(rows[:limit])), has_more)
    rows = list(qs.order_by(*[f"-{f}" for f in order])[: limit + 1])
    return Page(rows[:limit], len(rows) > limit)


def list_body(request, data, has_more: bool) -> dict:
    return {"object": "list", "url": request.path, "has_more": has_more, "data": data}

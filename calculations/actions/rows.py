"""Reading the one row a unique filter selects."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import QuerySet

T = TypeVar("T")


def first_row(queryset: QuerySet[Any, T]) -> T | None:
    """The row a unique filter (a primary key, a one-to-one) selects, or None. Unlike `.first()`,
    without the model's ordering, which Django compiles again for every query: on the hot paths a
    map step takes, a third of such a lookup's CPU."""
    return next(iter(queryset.order_by()[:1]), None)

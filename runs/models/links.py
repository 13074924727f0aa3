"""Short links: the start of a public id (`/runs/9ab9f4b5/`), as long as it takes to
name one row, and the row a start names."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

# The lengths a short id tries, shortest first; past the last, the full id is the link.
# Eight hex digits name one of a million rows but for about one pair in 8,600.
SHORT_LENGTHS = (8, 12, 16, 24)


def starting(queryset: models.QuerySet[Any], prefix: str) -> models.QuerySet[Any]:
    """The rows whose public id starts with `prefix` (hex): a range on the unique index,
    whatever the table's size."""
    lowest, highest = uuid.UUID(prefix.ljust(32, "0")), uuid.UUID(prefix.ljust(32, "f"))
    return queryset.filter(public_id__range=(lowest, highest))


def short_id(row: Any) -> str | None:
    """The shortest start of `row`'s public id that names it alone (None: only the full
    id does). One indexed count per length tried."""
    hex_id: str = row.public_id.hex
    for length in SHORT_LENGTHS:
        if starting(type(row).objects.all(), hex_id[:length]).count() == 1:
            return hex_id[:length]
    return None

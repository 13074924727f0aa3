"""Two snippets side by side, aligned line by line, with what changed marked.

Computed once, when a comparison is created, and stored with it (`for_storage`):
a page only renders it. Past MAX_LINES lines on either side there is no side-by-side
view at all (matching is quadratic in the worst case and the page grows with it): the
page shows each snippet whole instead.
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

from ..figures.breakdown import source_lines


class Row(NamedTuple):
    """One line of each side (None where that side has no line here)."""

    number_a: int | None
    line_a: str | None
    number_b: int | None
    line_b: str | None
    change: str  # "equal", "replace", "delete" (only in A) or "insert" (only in B)


MAX_LINES = 1000


def for_storage(code_a: str, code_b: str) -> list[list] | None:
    """The side-by-side rows as stored with a comparison (lists, for JSON), or None
    when either snippet is too long to show side by side."""
    if max(len(source_lines(code_a)), len(source_lines(code_b))) > MAX_LINES:
        return None
    return [list(row) for row in side_by_side(code_a, code_b)]


def from_storage(rows: list[list] | None) -> list[Row] | None:
    return None if rows is None else [Row(*row) for row in rows]


def side_by_side(code_a: str, code_b: str) -> list[Row]:
    # Numbered as Python numbers them, like tracebacks and the profile.
    a, b = source_lines(code_a), source_lines(code_b)
    rows = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for change, a0, a1, b0, b1 in matcher.get_opcodes():
        for offset in range(max(a1 - a0, b1 - b0)):
            i, j = a0 + offset, b0 + offset
            rows.append(
                Row(
                    i + 1 if i < a1 else None,
                    a[i] if i < a1 else None,
                    j + 1 if j < b1 else None,
                    b[j] if j < b1 else None,
                    change,
                )
            )
    return rows

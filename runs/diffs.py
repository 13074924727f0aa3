"""Two snippets side by side, aligned line by line, with what changed marked."""

from __future__ import annotations

import difflib
from typing import NamedTuple

from .breakdown import source_lines


class Row(NamedTuple):
    """One line of each side (None where that side has no line here)."""

    number_a: int | None
    line_a: str | None
    number_b: int | None
    line_b: str | None
    change: str  # "equal", "replace", "delete" (only in A) or "insert" (only in B)


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

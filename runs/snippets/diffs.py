"""Two snippets side by side, aligned line by line, with what changed marked.

Computed once, when a comparison is created, and stored with it (`for_storage`):
a page only renders it. Past MAX_LINES lines on either side there is no side-by-side
view at all (the page grows with it): the page shows each snippet whole instead.

The alignment (`opcodes`) is bounded in the work it does, whatever the text: difflib's
matcher takes time about cubic in the lines of a repetitive region (two 1,000-line
snippets of `pass` took 15 s). So the lines both sides share at each end are matched
first; the rest is split at lines found once on each side, in the same order (patience
diff's anchors); and only a region small enough (MATCHER_BUDGET line pairs) goes to
difflib. A larger region with no anchor is paired line by line, in order: every line
is still shown, equal ones marked equal, though not always at their best alignment.
"""

from __future__ import annotations

import bisect
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
# difflib's matcher is given regions of at most this many line pairs (70 × 70: some
# 10 ms at worst on a small VM), so that a comparison's creation stays well under 0.5 s.
MATCHER_BUDGET = 5_000
Opcode = tuple[str, int, int, int, int]  # as difflib.SequenceMatcher.get_opcodes


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
    for change, a0, a1, b0, b1 in opcodes(a, b):
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


def opcodes(a: list[str], b: list[str]) -> list[Opcode]:
    """How `b` differs from `a`, as difflib's opcodes, in bounded work (see above)."""
    found: list[Opcode] = []
    _align(a, b, 0, len(a), 0, len(b), found)
    return _merged(found)


def _align(a: list[str], b: list[str], a0: int, a1: int, b0: int, b1: int, out: list) -> None:
    while a0 < a1 and b0 < b1 and a[a0] == b[b0]:  # the same first lines
        out.append(("equal", a0, a0 + 1, b0, b0 + 1))
        a0, b0 = a0 + 1, b0 + 1
    tail = 0
    while a0 < a1 - tail and b0 < b1 - tail and a[a1 - tail - 1] == b[b1 - tail - 1]:
        tail += 1
    a1, b1 = a1 - tail, b1 - tail
    if a0 == a1 or b0 == b1:
        if a0 < a1:
            out.append(("delete", a0, a1, b0, b0))
        if b0 < b1:
            out.append(("insert", a1, a1, b0, b1))
    elif (a1 - a0) * (b1 - b0) <= MATCHER_BUDGET:
        matcher = difflib.SequenceMatcher(a=a[a0:a1], b=b[b0:b1], autojunk=False)
        for change, i0, i1, j0, j1 in matcher.get_opcodes():
            out.append((change, a0 + i0, a0 + i1, b0 + j0, b0 + j1))
    elif anchors := _anchors(a, b, a0, a1, b0, b1):
        for i, j in anchors:
            _align(a, b, a0, i, b0, j, out)
            out.append(("equal", i, i + 1, j, j + 1))
            a0, b0 = i + 1, j + 1
        _align(a, b, a0, a1, b0, b1, out)
    else:
        _paired(a, b, a0, a1, b0, b1, out)
    if tail:
        out.append(("equal", a1, a1 + tail, b1, b1 + tail))


def _anchors(a, b, a0: int, a1: int, b0: int, b1: int) -> list[tuple[int, int]]:
    """Lines found exactly once on each side, kept where both sides have them in the same
    order (the longest such run, by patience sorting: n log n)."""
    once_a = _once(a, a0, a1)
    once_b = _once(b, b0, b1)
    pairs = [(i, once_b[line]) for line, i in once_a.items() if line in once_b]
    pairs.sort()
    piles: list[int] = []  # the smallest last j of an increasing run of each length
    back: list[int] = []  # each pair's predecessor in its run
    tops: list[int] = []  # which pair ends the run of each length
    for index, (_, j) in enumerate(pairs):
        at = bisect.bisect_left(piles, j)
        if at == len(piles):
            piles.append(j)
            tops.append(index)
        else:
            piles[at], tops[at] = j, index
        back.append(tops[at - 1] if at else -1)
    run, index = [], tops[-1] if tops else -1
    while index >= 0:
        run.append(pairs[index])
        index = back[index]
    return run[::-1]


def _once(lines: list[str], start: int, end: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    twice: set[str] = set()
    for i in range(start, end):
        if lines[i] in seen:
            twice.add(lines[i])
        seen[lines[i]] = i
    return {line: i for line, i in seen.items() if line not in twice}


def _paired(a, b, a0: int, a1: int, b0: int, b1: int, out: list) -> None:
    """A region too large to match and with no anchor: line by line, in order."""
    common = min(a1 - a0, b1 - b0)
    for k in range(common):
        out.append(("equal" if a[a0 + k] == b[b0 + k] else "replace", a0 + k, a0 + k + 1,
                    b0 + k, b0 + k + 1))  # fmt: skip
    if a0 + common < a1:
        out.append(("delete", a0 + common, a1, b0 + common, b0 + common))
    if b0 + common < b1:
        out.append(("insert", a0 + common, a0 + common, b0 + common, b1))


def _merged(found: list[Opcode]) -> list[Opcode]:
    """Neighbouring opcodes of the same kind as one, as difflib gives them."""
    merged: list[Opcode] = []
    for change, a0, a1, b0, b1 in found:
        if a0 == a1 and b0 == b1:
            continue
        if merged and merged[-1][0] == change and change != "replace":
            last = merged[-1]
            if last[2] == a0 and last[4] == b0:
                merged[-1] = (change, last[1], a1, last[3], b1)
                continue
        merged.append((change, a0, a1, b0, b1))
    return merged

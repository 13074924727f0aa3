"""Whether the runs of a series printed the same thing: the first question of anyone
comparing two versions of their code (did B do A's job?), or two interpreters.

Runs are compared by a digest of their standard output (stored with each run, so a
series never reads 60 outputs of up to 256 KiB each to say whether they agree); the
first pair that differs is shown as a diff, bounded: at most MAX_DIFF_LINES lines of
each side, each cut at MAX_LINE_CHARACTERS (matching is quadratic in the worst case).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field

MAX_DIFF_LINES = 200
MAX_LINE_CHARACTERS = 300


def digest(stdout: str) -> str:
    """What a run stores of its output to compare it: its SHA-256."""
    return hashlib.sha256(stdout.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Agreement:
    """How the outputs of a series' pairs (or of a repeat's runs, each against its
    first) compare: how many were compared, which differ, and a diff of the first."""

    compared: int
    differing: list[int] = field(default_factory=list)  # repetitions
    diff: str = ""

    @property
    def agree(self) -> bool:
        return not self.differing

    def sentence(self, comparison: bool) -> str:
        n = self.compared
        if comparison:
            if self.agree:
                return f"A and B printed the same output in {_all(n, 'pair')}."
            return (
                f"A and B printed different output in {len(self.differing)} of {n} pairs "
                f"({_listed('pair', self.differing)}): check that they did the same job "
                "before reading the verdict as a cost of the same work."
            )
        if self.agree:
            return f"Every run printed the same output ({_all(n + 1, 'run')})."
        return (
            f"{len(self.differing)} of {n + 1} runs printed something other than the first "
            f"({_listed('run', self.differing)}): the code's work may change from run to run."
        )

    def briefly(self) -> str:
        """An N-way ranking's cell: one variant's output against A's."""
        if self.agree:
            return f"Same as A in {_all(self.compared, 'round')}"
        return f"Differs from A in {len(self.differing)} of {self.compared} rounds"

    def as_dict(self) -> dict:
        return {"agree": self.agree, "compared": self.compared, "differing": self.differing,
                "diff": self.diff}  # fmt: skip


def _all(n: int, noun: str) -> str:
    return f"the {n} {noun}s" if n != 1 else f"the one {noun}"


def _listed(noun: str, numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    return f"{noun}{'s' if len(numbers) > 1 else ''} {shown}{more}"


def diff(a: str, b: str, labels: tuple[str, str]) -> str:
    """A unified diff of two outputs, bounded in the work it may do."""

    def bounded(text: str) -> list[str]:
        lines = text.splitlines()[:MAX_DIFF_LINES]
        return [line[:MAX_LINE_CHARACTERS] for line in lines]

    return "\n".join(difflib.unified_diff(bounded(a), bounded(b), *labels, n=2, lineterm=""))

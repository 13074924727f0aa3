"""A snippet formatted, and what would fail in it before it runs: ruff's formatter, and
ruff's checks for syntax errors and undefined names. Ruff reads the text and runs
nothing of it; each call is one ruff process, on at most a run's code, for at most
TIMEOUT_SECONDS, and at most AT_ONCE of them per web process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

# The server's own ruff (requirements.txt), beside its interpreter.
RUFF = str(Path(sys.executable).with_name("ruff"))
TIMEOUT_SECONDS = 2.0
AT_ONCE = 2
# Syntax errors, and the checks of names and statements that fail when the line runs:
# invalid comparisons (F63), misplaced statements such as `return` outside a function
# (F7), undefined names (F82). Style is the author's business, not ours.
CHECKS = "E9,F63,F7,F82"
# `--isolated`: the project's own configuration is not the snippet's.
FORMAT = [RUFF, "format", "--isolated", "--stdin-filename", "main.py", "-"]
CHECK = [RUFF, "check", "--isolated", "--select", CHECKS, "--output-format", "json"]
CHECK += ["--exit-zero", "--stdin-filename", "main.py", "-"]
PARSE_ERROR = re.compile(r"main\.py:(\d+):(\d+): (.*)")

_slots = threading.BoundedSemaphore(AT_ONCE)


class Busy(Exception):
    """AT_ONCE calls are running in this process already."""


class NotFormatted(Exception):
    """Ruff could not format the code (it does not parse), or did not answer in time."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, order=True)
class Diagnostic:
    line: int
    column: int
    rule: str  # ruff's name for it: "undefined-name", "invalid-syntax"
    message: str


def _ruff(command: list[str], code: str) -> subprocess.CompletedProcess[str]:
    if not _slots.acquire(blocking=False):
        raise Busy()
    try:
        return subprocess.run(
            command, input=code, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
        )
    finally:
        _slots.release()


def formatted(code: str) -> str:
    """`code` as ruff formats it."""
    try:
        done = _ruff(FORMAT, code)
    except subprocess.TimeoutExpired:
        raise NotFormatted(f"The formatter took over {TIMEOUT_SECONDS:g} s.") from None
    except OSError:  # no ruff beside this interpreter: the server's install is incomplete
        raise NotFormatted("The formatter is not installed on this server.") from None
    if done.returncode == 0:
        return done.stdout
    found = PARSE_ERROR.search(done.stderr)
    if found:
        line, _, message = found.groups()
        raise NotFormatted(f"Line {line} does not parse: {message}", int(line))
    raise NotFormatted("The formatter failed.")


def diagnostics(code: str) -> list[Diagnostic]:
    """What would fail in `code` when it runs, by line (none where the checker could not
    answer in time: it never stands in the way of a run)."""
    try:
        done = _ruff(CHECK, code)
    except (subprocess.TimeoutExpired, OSError):
        return []
    return sorted(
        Diagnostic(
            line=found["location"]["row"],
            column=found["location"]["column"],
            rule=found["name"],
            message=found["message"],
        )
        for found in json.loads(done.stdout or "[]")
    )

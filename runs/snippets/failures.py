"""What a failed run's traceback means to its author: the failing line of their code, and
a plain hint where the sandbox, not the code, is the cause."""

from __future__ import annotations

import re
import signal
import sys

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..sandbox import environments, launcher

SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")
# A frame of the snippet's own code in a traceback.
SNIPPET_FRAME = re.compile(rf'File "(?:[^"]*/)?{re.escape(launcher.SNIPPET_FILE)}", line (\d+)')
NO_NETWORK = (
    "The sandbox has no network: sockets are refused, so nothing can be downloaded or "
    "fetched. Put the data in the code."
)
NO_STDIN = (
    "This run had no standard input: input() reads end-of-file at once. Give it some in "
    'the Standard input box ("stdin" in the API, --stdin FILE with runsnippet), or put '
    "the values in the code."
)
INPUT_USED_UP = (
    "input() read past the end of the standard input this run was given: each call "
    "reads one line, and there were fewer lines than calls."
)
NO_SIGCHLD = (
    "This server runs snippets without a cgroup, and there a snippet may not change how "
    "SIGCHLD is handled: a process that ignores it has its children's CPU time discarded "
    "by the kernel, and the run's figures would miss it."
)


def not_installed(module: str, env_name: str) -> str:
    """What to do about `import module` failing in the environment `env_name`: the
    environments that have it, or what this one has."""
    elsewhere = [e.name for e in environments.providers(module) if e.name != env_name]
    if elsewhere:
        return (
            f"{module} is not installed in {env_name}; it is in {', '.join(elsewhere)}: "
            "choose that environment and run it again."
        )
    env = environments.named(env_name)
    has = ", ".join(env.featured) if env and env.featured else "no packages"
    return (
        f"{module} is not installed in any environment here. Besides Python's standard "
        f"library, {env_name} has {has}."
    )


def failing_line(stderr: str) -> int | None:
    """The line of the snippet where it failed: the innermost frame of its own code."""
    lines = SNIPPET_FRAME.findall(stderr)
    return int(lines[-1]) if lines else None


def last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1].strip() if lines else ""


# Exceptions that only a network call raises, by class name (whatever module names it:
# socket.gaierror, urllib.error.URLError, requests' and urllib3's own).
NETWORK_ERRORS = frozenset(
    {"gaierror", "herror", "URLError", "ConnectionError", "ConnectionRefusedError"}
    | {"ConnectionResetError", "ConnectionAbortedError", "NewConnectionError"}
    | {"MaxRetryError", "NameResolutionError", "RemoteDisconnected"}
)
# Exceptions a network call raises among others: a network failure where the traceback
# went through a network module.
GENERIC_ERRORS = frozenset({"PermissionError", "OSError", "TimeoutError", "timeout"})
NETWORK_MODULES = ("socket", "urllib", "http.client", "requests", "urllib3", "httpx", "ssl")


def _is_network_failure(last: str, stderr: str) -> bool:
    name = last.split(":", 1)[0].rsplit(".", 1)[-1].strip()
    if name in NETWORK_ERRORS or "name resolution" in last:
        return True
    return name in GENERIC_ERRORS and any(module in stderr for module in NETWORK_MODULES)


def hints(stderr: str, env_name: str, had_input: bool = False) -> list[str]:
    """Plain explanations for failures the sandbox causes on purpose, for a run in the
    environment `env_name` (`had_input`: given a standard input)."""
    last = last_line(stderr)
    found = []
    missing = re.match(r"ModuleNotFoundError: No module named '([\w.]+)'", last)
    if missing:
        module = missing.group(1).split(".")[0]
        if module not in sys.stdlib_module_names:
            found.append(not_installed(module, env_name))
    if _is_network_failure(last, stderr):
        found.append(NO_NETWORK)
    if last.startswith("EOFError") and "input(" in stderr:
        found.append(INPUT_USED_UP if had_input else NO_STDIN)
    if last.startswith("PermissionError") and "SIGCHLD" in stderr:
        found.append(NO_SIGCHLD)
    return found


def linked_traceback(stderr: str) -> SafeString:
    """The error output, escaped, with each line number of the snippet's own code a
    link that the page's editor follows to that line."""
    pieces: list[tuple[str, SafeString | str]] = []
    done = 0
    for match in SNIPPET_FRAME.finditer(stderr):
        start, end = match.span(1)
        start -= len("line ")
        link = format_html(
            '<a href="#line-{0}" class="line-link" data-line="{0}">line {0}</a>', match.group(1)
        )
        pieces.append((stderr[done:start], link))
        done = end
    pieces.append((stderr[done:], ""))
    return format_html_join("", "{}{}", pieces)


def failure_message(exit_code: int | None, stderr: str) -> str:
    """One sentence saying why the snippet failed, with its line where we know it."""
    number = failing_line(stderr)
    line = f" on line {number}" if number else ""
    if exit_code is not None and exit_code < 0:
        # A crash's line comes from faulthandler's dump (runs.sandbox.launcher).
        return f"The snippet was killed by signal {-exit_code} ({signal_name(-exit_code)}){line}."
    last = last_line(stderr)
    if last.startswith(SYNTAX_ERRORS):
        name, _, detail = last.partition(":")
        return f"{name}{line}: {detail.strip()}"
    if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", last):
        return f"{last}{' (raised' + line + ')' if line else ''}"
    return f"The snippet exited with status {exit_code}."


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"

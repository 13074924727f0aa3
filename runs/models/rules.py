"""What a run or a series accepts from its author: each rule once, with the message a
user can act on. runs.forms calls them for requests, `submit` for everyone else."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError

from ..figures import breakdown
from ..sandbox import environments


def checked_text(text: object, name: str, limit: int) -> str:
    """`text` if it is text a snippet can be given (`name` says what it is, in the
    messages), or ValidationError with a message a user can act on."""
    if not isinstance(text, str):
        raise ValidationError(f"{name.capitalize()} must be text.")
    if "\x00" in text:
        raise ValidationError(f"The {name} contains NUL bytes; is it a binary file?")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(f"The {name} is not valid UTF-8 text.") from None
    if size > limit:
        raise ValidationError(
            f"The {name} is {size:,} bytes; the limit is {limit:,} bytes.", code="too_large"
        )
    return text


def clean_code(code: object) -> str:
    """The snippet to run, or ValidationError with a message a user can act on."""
    if isinstance(code, str) and not code.strip():
        raise ValidationError("There is no code to run.")
    return checked_text(code, "code", settings.MAX_CODE_BYTES)


# The shortest time limit the pages offer: shorter is not a run worth measuring.
MIN_PAGE_TIMEOUT = 1.0


def clean_stdin(text: object) -> str:
    """What a run reads on its standard input ("" for none), or ValidationError with a
    message a user can act on."""
    if text in (None, ""):
        return ""
    return checked_text(text, "standard input", settings.MAX_STDIN_BYTES)


def clean_timeout(raw: object) -> float:
    """A time limit chosen on a page, in seconds, or ValidationError saying the range."""
    try:
        value = float(str(raw))
    except ValueError:
        value = -1.0
    if not MIN_PAGE_TIMEOUT <= value <= settings.MAX_EXECUTION_TIMEOUT:  # NaN fails too
        raise ValidationError(
            f"The time limit must be between {MIN_PAGE_TIMEOUT:g} and "
            f"{settings.MAX_EXECUTION_TIMEOUT:g} seconds."
        )
    return value


def clean_env(name: object) -> str:
    """The environment a run asks for (the default when it names none), or
    ValidationError naming the ones there are."""
    if name in (None, ""):
        return environments.default().name
    if not isinstance(name, str) or environments.named(name) is None:
        raise ValidationError(environments.unknown(str(name)), code="unknown_env")
    return name


MAX_REPETITIONS = 30


def clean_repetitions(raw: object, default: int) -> int:
    """How many repetitions (pairs, for a comparison) were asked for (`default` where
    none), or ValidationError saying the range."""
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REPETITIONS:
        raise ValidationError(f"Repetitions must be between 1 and {MAX_REPETITIONS}.")
    return value


# A comparison's variants, by name: two (A/B) to four.
VARIANTS = "ABCD"


def clean_variants(codes: Sequence[object]) -> list[str]:
    """The variants' code, or ValidationError: two to four, each code to run."""
    if not 2 <= len(codes) <= len(VARIANTS):
        raise ValidationError(
            f"A comparison has 2 to {len(VARIANTS)} variants; this one has {len(codes)}."
        )
    return [clean_code(code) for code in codes]


def clean_section(codes: list[str], section: str) -> None:
    """ValidationError unless every snippet defines the section a comparison is on."""
    for label, code in zip(VARIANTS, codes, strict=False):
        if section and not breakdown.defines_section(code, section):
            raise ValidationError(
                f"Snippet {label} has no section named “{section}”: wrap the part to "
                f'compare in `with section("{section.split("/")[-1]}"):`.'
            )

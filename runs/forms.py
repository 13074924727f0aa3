"""What a request may ask for: a run, a repeat, a comparison. Each form parses its fields
(defaults, a textarea's line breaks, a checkbox) and checks each one once, with the
model layer's own rule and message, before anything reaches the database; the views
and the API read `is_valid()` and the cleaned data (`runsnippet`, with no request, has
the same rules applied by `Run.objects.submit`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase

from .figures import grids
from .models import (
    MAX_REPETITIONS,
    clean_code,
    clean_env,
    clean_repetitions,
    clean_section,
    clean_stdin,
    clean_timeout,
)
from .sandbox.launcher import MAX_NAME  # a section's name, as the supervisor keeps it

# A refused form is shown again with what was typed, unless it is this many times
# larger than what a run accepts: a page that size helps nobody and costs the server.
KEEP_FACTOR = 4


def kept(text: object, limit: int) -> str:
    """`text` to show again in a refused form: as typed, or "" where it is far too large."""
    return text if isinstance(text, str) and len(text) <= limit * KEEP_FACTOR else ""


class Text(forms.Field):
    """A value as sent, for a model-layer rule to judge: no stripping, and none of
    CharField's own checks (its message for a NUL byte would replace ours)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def to_python(self, value: Any) -> Any:
        return "" if value is None else value


def messages(form: forms.Form) -> list[str]:
    """A refused form's messages, each once (A and B may fail alike), fields first."""
    return list(dict.fromkeys(str(m) for errors in form.errors.values() for m in errors))


def typed(value: object) -> object:
    """A textarea's text as typed: browsers send its line breaks as CRLF."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


class CodeForm(forms.Form):
    """A snippet alone: the editor's Format and its checks as one types (and the start of
    a run's form)."""

    code = Text()

    def clean_code(self) -> str:
        return clean_code(self.cleaned_data["code"])

    def messages(self) -> list[str]:
        return messages(self)

    def too_large(self) -> bool:
        """Whether what was refused was refused for its size (the API answers 413)."""
        refused = self.errors.as_data().values()
        return any(error.code == "too_large" for errors in refused for error in errors)


class RunForm(CodeForm):
    """One run from the playground's editor (and the API's body: `code`, `env`, `stdin`)."""

    stdin = Text()
    env = Text()
    grid = Text()
    timeout = Text()

    def clean_stdin(self) -> str:
        return clean_stdin(typed(self.cleaned_data["stdin"]))

    def clean_env(self) -> str:
        return clean_env(self.cleaned_data["env"])

    def clean_grid(self) -> grids.Grid | None:
        # An unknown grid is the server's default, as when none is chosen.
        return grids.grids().get(str(self.cleaned_data["grid"]))

    def clean_timeout(self) -> float | None:
        raw = str(self.cleaned_data["timeout"]).strip()
        return clean_timeout(raw) if raw else None

    def run_fields(self) -> dict[str, Any]:
        """The cleaned choices as Run fields; the server's defaults where none was made."""
        data = self.cleaned_data
        fields: dict[str, Any] = {"env": data["env"], "stdin": data["stdin"]}
        if data["grid"] is not None:
            fields |= {"country_iso_code": data["grid"].country, "region": data["grid"].region}
        if data["timeout"] is not None:
            fields["timeout_s"] = data["timeout"]
        return fields

    def remember(self, session: SessionBase) -> None:
        """The choices made, for the visitor's next runs (pages.editor_context)."""
        data = self.cleaned_data
        if data["grid"] is not None:
            session["grid"] = data["grid"].key
        if data["timeout"] is not None:
            session["timeout"] = data["timeout"]
        if self.data.get("env"):
            session["env"] = data["env"]

    def redisplay(self) -> dict[str, str]:
        """What was typed, for the editor that shows the refusal."""
        return {
            "code": kept(self.data.get("code", ""), settings.MAX_CODE_BYTES),
            "stdin": kept(typed(self.data.get("stdin", "")), settings.MAX_STDIN_BYTES),
        }


class RepeatForm(RunForm):
    """The playground's snippet, run N times."""

    DEFAULT_REPETITIONS = 5

    repetitions = Text()
    warmup = forms.BooleanField(required=False)

    def clean_repetitions(self) -> int:
        return clean_repetitions(self.cleaned_data["repetitions"], self.DEFAULT_REPETITIONS)


def _optional_code(code: object) -> str:
    """A variant that may be left out: blank is none, anything else is code to run."""
    if isinstance(code, str) and not code.strip():
        return ""
    return clean_code(code)


class CompareForm(forms.Form):
    """Two to four snippets, A, B and optionally C and D, in turn until the answer is
    clear (at most `repetitions` rounds); B reads A's standard input unless
    `stdin_apart`, C and D read A's. Its cleaned data adds `codes` and `envs`, one per
    variant in use (an empty C or D is not one)."""

    code_a = Text()
    code_b = Text()
    code_c = Text()
    code_d = Text()
    env_a = Text()
    env_b = Text()
    env_c = Text()
    env_d = Text()
    stdin_a = Text()
    stdin_b = Text()
    stdin_apart = forms.BooleanField(required=False)
    repetitions = Text()
    warmup = forms.BooleanField(required=False)
    section = Text()

    def clean_code_a(self) -> str:
        return clean_code(self.cleaned_data["code_a"])

    def clean_code_b(self) -> str:
        return clean_code(self.cleaned_data["code_b"])

    def clean_env_a(self) -> str:
        return clean_env(self.cleaned_data["env_a"])

    def clean_env_b(self) -> str:
        return clean_env(self.cleaned_data["env_b"])

    def clean_code_c(self) -> str:
        return _optional_code(self.cleaned_data["code_c"])

    def clean_code_d(self) -> str:
        return _optional_code(self.cleaned_data["code_d"])

    def clean_env_c(self) -> str:
        return clean_env(self.cleaned_data["env_c"])

    def clean_env_d(self) -> str:
        return clean_env(self.cleaned_data["env_d"])

    def clean_stdin_a(self) -> str:
        return clean_stdin(typed(self.cleaned_data["stdin_a"]))

    def clean_stdin_b(self) -> str:
        return clean_stdin(typed(self.cleaned_data["stdin_b"]))

    def clean_repetitions(self) -> int:
        return clean_repetitions(self.cleaned_data["repetitions"], MAX_REPETITIONS)

    def clean_section(self) -> str:
        return str(self.cleaned_data["section"]).strip()[:MAX_NAME]

    def clean(self) -> dict[str, Any]:
        data = self.cleaned_data
        if not data["stdin_apart"] and "stdin_a" in data:
            data["stdin_b"] = data["stdin_a"]
            self.errors.pop("stdin_b", None)
        used = [v for v in "abcd" if v in "ab" or data.get(f"code_{v}")]
        data["codes"] = [data.get(f"code_{v}", "") for v in used]
        data["envs"] = [data.get(f"env_{v}", "") for v in used]
        if data.get("section") and all(data["codes"]):
            clean_section(data["codes"], data["section"])
        return data

    def messages(self) -> list[str]:
        return messages(self)

    def redisplay(self) -> dict[str, Any]:
        """The compare page's form as it was sent, for a refusal."""
        data, code, stdin = self.data, settings.MAX_CODE_BYTES, settings.MAX_STDIN_BYTES
        return {
            "code_a": kept(data.get("code_a", ""), code),
            "code_b": kept(data.get("code_b", ""), code),
            "code_c": kept(data.get("code_c", ""), code),
            "code_d": kept(data.get("code_d", ""), code),
            "env_a": data.get("env_a", ""),
            "env_b": data.get("env_b", ""),
            "env_c": data.get("env_c", ""),
            "env_d": data.get("env_d", ""),
            "stdin_a": kept(typed(data.get("stdin_a", "")), stdin),
            "stdin_b": kept(typed(data.get("stdin_b", "")), stdin),
            "stdin_apart": data.get("stdin_apart") == "on",
            "repetitions": str(data.get("repetitions", ""))[:3] or MAX_REPETITIONS,
            "warmup": data.get("warmup") == "on",
            "section": str(data.get("section", ""))[:MAX_NAME],
        }

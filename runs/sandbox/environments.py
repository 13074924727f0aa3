"""The environments snippets run in: an interpreter and a pinned package set each,
declared in one file (SNIPPET_ENVIRONMENTS, environments.toml) and built by
`manage.py snippetenv` into SNIPPET_ENVS_DIR/<name>/.

A built environment holds its virtual environment (`venv/`), a copy of its interpreter
where the sandbox's account could not read the original (`base/`), and `manifest.json`:
what the build found (the interpreter's version, every installed package's version,
which top-level modules each provides). The server reads only the manifest; it never
runs an environment's interpreter to describe it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,31}$")
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+$")
MANIFEST = "manifest.json"
# The installer's own packages, in every virtual environment: not the snippet's set.
INSTALLER_PACKAGES = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class Environment:
    name: str
    label: str
    interpreter: str  # as declared: a path, or a command on the PATH
    packages: tuple[str, ...]  # "name==version", as declared
    default: bool = False

    @property
    def root(self) -> Path:
        return Path(settings.SNIPPET_ENVS_DIR) / self.name

    @property
    def python(self) -> str:
        """The interpreter snippets of this environment run with."""
        return str(self.root / "venv" / "bin" / "python")

    @property
    def fingerprint(self) -> str:
        """What the declaration says, hashed: a build of another declaration is stale."""
        declared = json.dumps([self.interpreter, sorted(self.packages)])
        return hashlib.sha256(declared.encode()).hexdigest()[:16]

    @property
    def manifest(self) -> dict | None:
        """What its build found, or None where it is not built (or built from an
        older declaration)."""
        path = self.root / MANIFEST
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        manifest = _read_manifest(str(path), stamp)
        if manifest is None or manifest.get("fingerprint") != self.fingerprint:
            return None
        return manifest

    @property
    def built(self) -> bool:
        return self.manifest is not None

    @property
    def implementation(self) -> str:
        return (self.manifest or {}).get("implementation", "")

    @property
    def version(self) -> str:
        """The Python version the interpreter implements ("3.11.2")."""
        return (self.manifest or {}).get("version", "")

    @property
    def installed(self) -> dict[str, str]:
        """Every package its snippets can import, with its exact version."""
        return dict((self.manifest or {}).get("packages", {}))

    @property
    def featured(self) -> list[str]:
        """Its packages in the order the declaration pins them (the ones people import
        first, their dependencies after)."""
        rank = {normalized(p.split("==")[0]): i for i, p in enumerate(self.packages)}
        return sorted(self.installed, key=lambda n: rank.get(normalized(n), len(rank)))

    @property
    def versions(self) -> list[str]:
        """ "numpy 2.4.6", … in the order of `featured`."""
        installed = self.installed
        return [f"{name} {installed[name]}" for name in self.featured]

    @property
    def summary(self) -> str:
        """ "CPython 3.11.2 with numpy, pandas, … and 7 more", as the editor says it."""
        shown, more = self.featured[:5], len(self.featured) - 5
        packages = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        return f"{self.interpreter_name} with {packages or 'the standard library only'}"

    @property
    def modules(self) -> dict[str, str]:
        """Top-level module -> the package that provides it ("sklearn": "scikit-learn")."""
        return dict((self.manifest or {}).get("modules", {}))

    @property
    def interpreter_name(self) -> str:
        """ "CPython 3.11.2" or "PyPy 7.3.11 (Python 3.9.16)", as pages name it."""
        manifest = self.manifest or {}
        if manifest.get("implementation_version"):
            own = manifest["implementation_version"]
            return f"{self.implementation} {own} (Python {self.version})"
        return f"{self.implementation} {self.version}".strip() or self.label

    def provenance(self) -> dict:
        """What a run stores of the environment it ran in."""
        return {
            "name": self.name,
            "label": self.label,
            "interpreter": self.interpreter_name,
            "packages": self.installed,
        }

    def as_dict(self) -> dict:
        """GET /api/environments."""
        return {
            "name": self.name,
            "label": self.label,
            "default": self.default,
            "implementation": self.implementation,
            "interpreter": self.interpreter_name,
            "version": self.version,
            "packages": self.installed,
        }


@functools.cache
def _read_manifest(path: str, stamp: int) -> dict | None:
    # Keyed by the file's mtime too: a rebuild is read again without a restart.
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def normalized(name: str) -> str:
    """A package's name as pip compares it (scikit_learn is scikit-learn)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> list[Environment]:
    """Every environment the declaration file names, in its order."""
    path = Path(settings.SNIPPET_ENVIRONMENTS)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise ImproperlyConfigured(f"SNIPPET_ENVIRONMENTS: {path} does not exist.") from None
    return list(_parse(str(path), stamp))


@functools.cache
def _parse(path: str, stamp: int) -> tuple[Environment, ...]:
    try:
        entries = tomllib.loads(Path(path).read_text()).get("environment", [])
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"{path}: {exc}") from None
    found: dict[str, Environment] = {}
    for number, entry in enumerate(entries, 1):
        where = f"{path}, environment {number}"
        name = entry.get("name", "")
        if not isinstance(name, str) or not NAME.match(name):
            raise ImproperlyConfigured(f"{where}: name must be letters, digits, '.' and '-'.")
        if name in found:
            raise ImproperlyConfigured(f"{where}: {name} is declared twice.")
        interpreter = entry.get("interpreter")
        if not isinstance(interpreter, str) or not interpreter:
            raise ImproperlyConfigured(f"{where}: interpreter must be a path or a command.")
        packages = entry.get("packages", [])
        if not isinstance(packages, list) or not all(
            isinstance(p, str) and PIN.match(p) for p in packages
        ):
            raise ImproperlyConfigured(f"{where}: packages must be pinned, as name==version.")
        found[name] = Environment(
            name=name,
            label=str(entry.get("label") or name),
            interpreter=interpreter,
            packages=tuple(packages),
            default=entry.get("default") is True,
        )
    defaults = [e.name for e in found.values() if e.default]
    if len(defaults) != 1:
        raise ImproperlyConfigured(f"{path}: exactly one environment must say default = true.")
    return tuple(found.values())


def default() -> Environment:
    return next(e for e in declared() if e.default)


def available() -> list[Environment]:
    """The environments a run may choose: declared and built here (the default always
    listed first)."""
    return sorted((e for e in declared() if e.built), key=lambda e: not e.default)


def named(name: str) -> Environment | None:
    """The built environment called `name`, or None."""
    return next((e for e in available() if e.name == name), None)


def unknown(name: str) -> str:
    """The message for a name that is not a built environment here."""
    names = ", ".join(e.name for e in available()) or "none is built"
    shown = name if len(name) <= 40 else name[:40] + "…"
    return f"There is no environment “{shown}” on this server; choose one of: {names}."


def providers(module: str) -> list[Environment]:
    """The built environments where `import module` finds a package."""
    return [e for e in available() if module in e.modules]


def reachable_by_others(path: str) -> bool:
    """Whether another account (the sandbox's) can read `path` and reach it."""
    current = Path(path)
    if not os.access(current, os.R_OK) or not os.stat(current).st_mode & 0o004:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in current.parents)

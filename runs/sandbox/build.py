"""Building the environments snippets run in (`manage.py snippetenv`): a virtual
environment of a declared interpreter with its pinned packages, a manifest of what is
in it, readable by the sandbox's account. No database."""

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import environments, host
from .environments import MANIFEST, Environment

# Asked of a declared interpreter: where it really lives (a pyenv shim or a symlink
# is not), and what it is. Python 3.9 syntax: PyPy's.
ABOUT = """
import json, os, platform, sys
print(json.dumps({
    "executable": os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable),
    "base_prefix": sys.base_prefix,
    "major_minor": "%d.%d" % sys.version_info[:2],
    "implementation": platform.python_implementation(),
    "version": platform.python_version(),
    "pypy": "%d.%d.%d" % sys.pypy_version_info[:3] if hasattr(sys, "pypy_version_info") else "",
}))
"""
# Asked of a built environment: every package installed in it (not those that come
# with the interpreter, as PyPy's cffi), and the top-level modules each provides
# (importlib.metadata's packages_distributions is 3.10+).
PIP_INSTALL = ["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-input"]
INSTALLED = """
import json, os, sys
from importlib import metadata
packages, modules = {}, {}
for dist in metadata.distributions():
    if not os.path.realpath(str(dist.locate_file(""))).startswith(os.path.realpath(sys.prefix)):
        continue
    name = dist.metadata["Name"]
    packages[name] = dist.version
    tops = (dist.read_text("top_level.txt") or "").split()
    for path in dist.files or []:
        first = path.parts[0] if path.parts else ""
        if first.endswith(".py"):
            tops.append(first[:-3])
        elif first.endswith(".so"):
            tops.append(first.split(".")[0])
        elif first and "." not in first and first not in ("..", "__pycache__", "bin"):
            tops.append(first)
    for top in tops:
        if top.isidentifier() and not top.startswith("_"):
            modules.setdefault(top, name)
print(json.dumps({"packages": packages, "modules": modules}))
"""
# Left out of an interpreter copied for the sandbox: its tests, GUI and installed
# packages (an environment's own are in its venv).
NOT_COPIED = ("test", "idlelib", "tkinter", "turtledemo", "site-packages", "__phello__")


class BuildError(Exception):
    """A step of a build failed, or the build is not what was declared."""


def about(env: Environment) -> tuple[dict | None, str]:
    """What the declared interpreter is, or None and why it cannot be used."""
    problem = f"its interpreter {env.interpreter} is not on this machine"
    for found in host.interpreter_candidates(env.interpreter):
        try:
            result = subprocess.run(
                [found, "-I", "-c", ABOUT], capture_output=True, text=True, timeout=60
            )
            return json.loads(result.stdout), ""
        except (OSError, ValueError, subprocess.TimeoutExpired):
            problem = f"its interpreter {found} does not run"
    return None, problem


def build(
    env: Environment, about: dict, say: Callable[[str], None], warn: Callable[[str], None]
) -> None:
    """Build `env` from the interpreter `about` describes: its venv, its pinned packages, a
    manifest of what is installed, all readable by the sandbox's account. BuildError
    where a step fails or a package is not pinned."""
    started = time.monotonic()
    root = env.root
    say(f"Building {env.name} from {about['executable']} into {root} ...")
    shutil.rmtree(root, ignore_errors=True)  # the manifest goes first: not built
    root.mkdir(parents=True)
    base = about["executable"]
    if os.geteuid() == 0 and not environments.reachable_by_others(about["base_prefix"]):
        # Under /root, say (pyenv): the sandbox's account could not read it.
        base = copy_interpreter(about, root / "base")
    call([base, "-m", "venv", str(root / "venv")])
    python = env.python
    if env.packages:
        call([python, *PIP_INSTALL, *env.packages])
    found = json.loads(call([python, "-I", "-c", INSTALLED], capture=True))
    packages = {
        name: version
        for name, version in sorted(found["packages"].items(), key=lambda p: p[0].lower())
        if environments.normalized(name) not in environments.INSTALLER_PACKAGES
    }
    check_pinned(env, packages)
    open_to_sandbox(root, warn)
    manifest = {
        "name": env.name,
        "fingerprint": env.fingerprint,
        "executable": about["executable"],
        "implementation": about["implementation"],
        "version": about["version"],
        "implementation_version": about["pypy"],
        "packages": packages,
        "modules": {m: p for m, p in found["modules"].items() if p in packages},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    os.chmod(root / MANIFEST, 0o644)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    say(
        f"Built {env.name}: {env.interpreter_name}, {len(packages)} package(s), "
        f"{size / 1e6:.0f} MB, in {time.monotonic() - started:.0f} s."
    )


def copy_interpreter(about: dict, base: Path) -> str:
    """A copy of the interpreter and its standard library the sandbox can read; its
    shared library (if any) is found through LD_LIBRARY_PATH (runs.sandbox.host)."""
    prefix, executable = Path(about["base_prefix"]), Path(about["executable"])
    (base / "bin").mkdir(parents=True)
    (base / "lib").mkdir()
    shutil.copy2(executable, base / "bin" / executable.name)
    for library in (prefix / "lib").glob("libpython*.so*"):
        shutil.copy2(library, base / "lib" / library.name, follow_symlinks=False)
    stdlib = prefix / "lib" / f"python{about['major_minor']}"
    shutil.copytree(
        stdlib,
        base / "lib" / stdlib.name,
        symlinks=True,
        ignore=lambda folder, names: (
            [n for n in names if n in NOT_COPIED] if folder == str(stdlib) else []
        ),
    )
    (base / "lib" / stdlib.name / "site-packages").mkdir()
    return str(base / "bin" / executable.name)


def check_pinned(env: Environment, packages: dict[str, str]) -> None:
    pins = {
        environments.normalized(name): version
        for name, version in (p.split("==", 1) for p in env.packages)
    }
    problems = [
        f"{name}=={version} is installed but not pinned"
        if environments.normalized(name) not in pins
        else f"{name} is {version}, pinned {pins[environments.normalized(name)]}"
        for name, version in packages.items()
        if pins.get(environments.normalized(name)) != version
    ]
    if problems:
        shutil.rmtree(env.root / "venv", ignore_errors=True)
        raise BuildError(
            f"{env.name}: {'; '.join(problems)}. Pin every package, dependencies "
            "included, in the environments file."
        )


def open_to_sandbox(root: Path, warn: Callable[[str], None]) -> None:
    """The sandbox's account may read and execute it, nothing more."""
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)  # noqa: S103 (read-only to others)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
    if os.geteuid() == 0 and not environments.reachable_by_others(str(root)):
        warn(
            f"Warning: the sandbox's account cannot reach {root}; set SNIPPET_ENVS_DIR "
            "to a folder every account can reach."
        )


def call(command: list[str], capture: bool = False) -> str:
    result = subprocess.run(
        command,
        stdout=subprocess.PIPE if capture else sys.stdout,
        stderr=sys.stderr,
        text=True,
    )
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed with status {result.returncode}")
    return result.stdout or ""

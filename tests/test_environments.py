"""Environments: declared in one file, built by snippetenv, chosen per run, stored in
its provenance, re-run and compared, and each one's sandbox."""

import io
import json
import re
import textwrap
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from runs.figures import breakdown
from runs.models import Baseline, Run, Series
from runs.queue import ahead, execution
from runs.sandbox import build as builder
from runs.sandbox import environments, host, launcher, standby

from .conftest import HTMX, built_environment, execute, limits
from .factories import finished_run

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]
DECLARED = environments.declared()  # the project's own file, as CI builds it


def other_than_default() -> environments.Environment:
    """A built environment that is not the default (CI builds them all)."""
    others = [e for e in environments.available() if not e.default]
    if not others:
        pytest.skip("no second environment is built on this host")
    return others[0]


def declare(tmp_path: Path, text: str, settings) -> None:
    path = tmp_path / "environments.toml"
    path.write_text(textwrap.dedent(text))
    settings.SNIPPET_ENVIRONMENTS = str(path)


# --- the declaration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[environment]]\nname = "a"\ninterpreter = "python3"\n', "exactly one"),
        (
            '[[environment]]\nname = "a b"\ninterpreter = "python3"\ndefault = true\n',
            "name must be",
        ),
        (
            '[[environment]]\nname = "a"\ninterpreter = "python3"\ndefault = true\n'
            'packages = ["numpy>=2"]\n',
            "pinned",
        ),
        (
            '[[environment]]\nname = "a"\ninterpreter = "python3"\ndefault = true\n'
            '[[environment]]\nname = "a"\ninterpreter = "python3"\n',
            "declared twice",
        ),
        ('[[environment]]\nname = "a"\ndefault = true\n', "interpreter must be"),
        ("[[environment]\n", "environments.toml"),
    ],
)
def test_a_declaration_that_cannot_be_right_is_refused_with_what_is_wrong(
    tmp_path, settings, text, message
):
    declare(tmp_path, text, settings)
    with pytest.raises(ImproperlyConfigured, match=message):
        environments.declared()


def test_the_projects_declaration_has_the_environments_we_promise():
    names = {e.name: e for e in DECLARED}
    assert environments.default().name == "cpython-3.11"
    assert names["cpython-3.11"].interpreter == "/usr/bin/python3"
    assert {"cpython-3.12", "pypy-3.9"} <= set(names)
    for package in ("numpy", "pandas", "scipy", "scikit-learn", "polars"):
        assert any(p.startswith(f"{package}==") for p in names["cpython-3.11"].packages)
    # The CPython ones share one set, so that comparing them compares interpreters.
    assert names["cpython-3.11"].packages == names["cpython-3.12"].packages


# --- building -------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path, settings):
    """A declaration of our own, built into a folder of its own."""
    settings.SNIPPET_ENVS_DIR = str(tmp_path / "envs")
    if not host.interpreter_candidates("/usr/bin/python3"):
        pytest.skip("Debian's python3 is not on this host")
    return tmp_path


def build(*names: str) -> str:
    out = io.StringIO()
    call_command("snippetenv", *names, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_snippetenv_builds_what_it_can_says_what_it_skipped_and_why(scratch, settings):
    declare(
        scratch,
        """
        [[environment]]
        name = "bare"
        label = "Standard library"
        interpreter = "/usr/bin/python3"
        default = true
        packages = []

        [[environment]]
        name = "absent"
        interpreter = "/nonexistent/python9.9"
        packages = []
        """,
        settings,
    )
    said = build()
    assert "Skipped absent: its interpreter /nonexistent/python9.9 is not on this machine" in said
    assert "Built bare" in said
    bare = environments.named("bare")
    assert bare is not None and environments.named("absent") is None
    assert [e.name for e in environments.available()] == ["bare"]
    manifest = json.loads((bare.root / "manifest.json").read_text())
    assert manifest["fingerprint"] == bare.fingerprint and manifest["implementation"] == "CPython"
    assert bare.installed == {}  # pip and setuptools are the installer's, not the snippet's
    assert Path(bare.python).exists() and bare.interpreter_name.startswith("CPython 3.")
    # Every file readable by others, every folder searchable: the sandbox's account.
    assert all(p.stat().st_mode & 0o004 for p in bare.root.rglob("*") if not p.is_symlink())

    assert "bare is up to date" in build()
    # Declared otherwise (the same interpreter, named another way): built again.
    declare(
        scratch,
        """
        [[environment]]
        name = "bare"
        interpreter = "python3.11"
        default = true
        """,
        settings,
    )
    assert environments.named("bare") is None  # stale until rebuilt
    assert "Built bare" in build("bare")


def test_snippetenv_fails_when_the_default_cannot_be_built(scratch, settings):
    declare(
        scratch,
        """
        [[environment]]
        name = "gone"
        interpreter = "/nonexistent/python9.9"
        default = true
        """,
        settings,
    )
    with pytest.raises(CommandError, match="default environment could not be built"):
        build()
    with pytest.raises(CommandError, match="Not declared: nope"):
        build("nope")


def test_an_installed_package_that_is_not_pinned_fails_the_build():
    env = environments.Environment("x", "x", "python3", ("numpy==2.4.6",))
    builder.check_pinned(env, {"numpy": "2.4.6"})  # exactly what was pinned
    with pytest.raises(
        builder.BuildError, match=re.escape("six==1.17.0 is installed but not pinned")
    ):
        builder.check_pinned(env, {"numpy": "2.4.6", "six": "1.17.0"})
    with pytest.raises(builder.BuildError, match=re.escape("numpy is 2.5.0, pinned 2.4.6")):
        builder.check_pinned(env, {"numpy": "2.5.0"})


# --- choosing -------------------------------------------------------------------------


def test_the_api_lists_the_environments_with_their_packages(client):
    data = client.get("/api/environments").json()["environments"]
    assert [e["name"] for e in data] == [e.name for e in environments.available()]
    assert data[0]["default"] and data[0]["name"] == environments.default().name
    for listed in data:
        env = environments.named(listed["name"])
        assert listed["packages"] == env.installed and listed["version"] == env.version
        assert listed["interpreter"] == env.interpreter_name


def test_the_api_takes_an_environment_and_refuses_one_it_does_not_have(client):
    other = other_than_default()
    answer = client.post("/api/runs", {"code": "print(1)", "env": other.name}, "application/json")
    assert answer.status_code == 202
    assert Run.objects.get(public_id=answer.json()["id"]).env == other.name
    plain = client.post("/api/runs", {"code": "print(2)"}, "application/json").json()
    assert Run.objects.get(public_id=plain["id"]).env == environments.default().name
    for bad in ("cpython-2.7", 42, ["pypy-3.9"], "x" * 5000):
        refused = client.post("/api/runs", {"code": "print(1)", "env": bad}, "application/json")
        assert refused.status_code == 400
        message = refused.json()["error"]
        assert "no environment" in message and environments.default().name in message
        assert len(message) < 300  # a long name is not echoed whole
    assert Run.objects.count() == 2


def test_the_editor_offers_the_environments_and_remembers_the_choice(client):
    other = other_than_default()
    page = client.get("/").content.decode()
    for env in environments.available():
        assert f'<option value="{env.name}"' in page
    assert f'<option value="{environments.default().name}" data-summary' in page
    client.post("/runs/new", {"code": "print(1)", "env": other.name})
    assert Run.objects.get().env == other.name
    again = client.get("/").content.decode()
    assert f'<option value="{other.name}" data-summary="{other.summary}" selected>' in again
    assert other.summary in again  # the help line says what it has


def test_an_unknown_environment_on_the_form_keeps_the_code_and_says_which_exist(client):
    response = client.post("/runs/new", {"code": "print('mine')", "env": "cobol"}, **HTMX)
    assert response.status_code == 422
    body = response.content.decode()
    assert "no environment “cobol”" in body and environments.default().name in body
    assert Run.objects.count() == 0
    page = client.post("/runs/new", {"code": "print('mine')", "env": "cobol"})
    assert page.status_code == 422 and "print(&#x27;mine&#x27;)" in page.content.decode()


# --- storing and re-running -----------------------------------------------------------


def test_a_run_stores_its_environment_and_a_rerun_uses_it(client):
    other = other_than_default()
    run = execute("import sys\nprint(sys.implementation.name)", env=other.name)
    assert run.status == Run.Status.SUCCEEDED, run.stderr
    stored = run.provenance["environment"]
    assert stored == other.provenance()
    assert stored["packages"] == other.installed and stored["interpreter"] == other.interpreter_name
    assert run.python_version == other.version
    assert run.baseline_energy_kwh == Baseline.objects.get(env=other.name).energy_kwh
    page = client.get(run.get_absolute_url()).content.decode()
    assert other.interpreter_name in page and f'data-env="{other.name}"' in page
    assert all(f"{name} {version}" in page for name, version in other.installed.items())
    exported = client.get(f"/runs/{run.public_id}.json").json()
    assert exported["env"] == other.name
    assert exported["provenance"]["environment"]["interpreter"] == other.interpreter_name
    # Opened in the editor, or run again: in the same environment.
    opened = client.get(f"/?from={run.public_id}").content.decode()
    assert f'<option value="{other.name}" data-summary="{other.summary}" selected>' in opened
    client.post(f"/runs/{run.public_id}/rerun")
    assert Run.objects.exclude(pk=run.pk).get().env == other.name


def test_a_run_whose_environment_is_gone_is_refused_naming_the_ones_there_are(
    client, tmp_path, settings
):
    run = finished_run(env="retired-env")
    response = client.post(f"/runs/{run.public_id}/rerun")
    assert response.status_code == 422
    assert "no environment “retired-env”" in response.content.decode()
    assert Run.objects.count() == 1
    opened = client.get(f"/?from={run.public_id}").content.decode()
    assert "no environment “retired-env”" in opened and environments.default().name in opened
    # One queued before it went: its worker says so instead of running it elsewhere.
    queued = Run.objects.submit("print(1)")
    Run.objects.filter(pk=queued.pk).update(env="retired-env")
    queued.refresh_from_db()
    execution.execute(queued)
    queued.refresh_from_db()
    assert queued.status == Run.Status.ERROR and "no environment “retired-env”" in queued.error


def test_a_missing_module_names_the_environments_that_have_it():
    pypy = environments.named("pypy-3.9")
    if pypy is None or "pandas" in pypy.modules:
        pytest.skip("needs the PyPy environment, without pandas")
    run = execute("import pandas", env="pypy-3.9")
    having = [e.name for e in environments.providers("pandas")]
    assert having and "pypy-3.9" not in having
    assert any(all(name in hint for name in having) for hint in run.hints), run.hints


# --- comparing ------------------------------------------------------------------------


def test_a_comparison_across_environments_says_which_is_which(
    client, django_capture_on_commit_callbacks
):
    other = other_than_default()
    default = environments.default().name
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/compare/new",
            {"code_a": "x = 1", "code_b": "x = 1", "env_a": default, "env_b": other.name}
            | {"repetitions": "4"},
        )
    series = Series.objects.get()
    assert (series.env_a, series.env_b) == (default, other.name) and series.across_environments
    assert {(r.variant, r.env) for r in series.runs.all()} == {("A", default), ("B", other.name)}
    form = client.get(f"/compare/?from={series.public_id}").content.decode()
    assert f'<option value="{other.name}" data-summary="{other.summary}" selected>' in form
    # Its figures, made here: B clearly cheaper than A.
    series.runs.all().delete()
    for repetition in range(1, 7):
        for variant, energy in (("A", 2e-6), ("B", 1e-6)):
            finished_run(
                series=series,
                variant=variant,
                repetition=repetition,
                env=series.env_of(variant),
                session_key=series.session_key,
                energy_kwh=energy * (1 + repetition / 100),
            )
    series.repetitions = 6
    series.save()
    headline = series.headline(series.results())
    assert f"B ({other.name}) uses" in headline and f"than A ({default})" in headline
    page = client.get(series.get_absolute_url()).content.decode()
    assert f"B ({other.name}) uses" in page and f"B · {other.name}" in page  # the diff's head
    exported = client.get(f"/series/{series.public_id}.json").json()
    assert exported["env"] == {"A": default, "B": other.name}
    assert f"B ({other.name})" in exported["comparison"]["verdict"]
    assert {r["env"] for r in exported["runs"]} == {default, other.name}
    history = client.get("/runs/").content.decode()
    assert f"A {default}, B {other.name}" in history and f"B ({other.name})" in history
    csv_text = b"".join(client.get("/runs.csv").streaming_content).decode()
    assert f",{other.name}," in csv_text


def test_a_comparison_in_one_environment_reads_as_before():
    series = Series.objects.submit("compare", ["x = 1", "x = 2"], 4)
    assert not series.across_environments and series.names == ("A", "B")
    with pytest.raises(Exception, match="no environment “nope”"):
        Series.objects.submit("compare", ["x = 1", "x = 2"], 4, envs=["nope", None])


# --- each environment's sandbox -------------------------------------------------------

PROBE = """\
import os, socket, sys
from playground import section
print(sys.implementation.name, "%d.%d.%d" % sys.version_info[:3])
print("visible:", [path for path in {others!r} if os.path.exists(path)])
try:
    open("{venv}/written", "w")
except OSError as exc:
    print("read-only:", type(exc).__name__)
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
except OSError:
    print("no network")
with section("work"):
    total = 0
    for i in range(400_000):
        total += i * i
"""


@pytest.mark.parametrize("name", [e.name for e in DECLARED])
def test_each_environment_runs_in_its_own_sandbox(name):
    env = built_environment(name)
    imports = "".join(f"import {module}\n" for module in sorted(env.modules))
    others = [str(other.root) for other in DECLARED if other.name != name]
    code = imports + PROBE.format(others=others, venv=env.root / "venv")
    # Room for a cold start: the first import of an environment's data stack after a
    # build reads it from disk (it once took over the default 10 s on a clean clone).
    run = execute(code, env=name, timeout_s=settings.MAX_EXECUTION_TIMEOUT)
    assert run.status == Run.Status.SUCCEEDED, (run.exit_code, run.error, run.stderr)
    lines = run.stdout.splitlines()
    implementation, version = lines[0].split()
    assert implementation == env.implementation.lower() and version == env.version
    # Its own tree only: no other environment's files are there at all.
    assert lines[1] == "visible: []"
    assert "read-only:" in run.stdout and "no network" in run.stdout
    assert [s["name"] for s in run.sections] == ["work"]
    assert "seccomp" in run.isolation
    assert run.provenance["environment"]["name"] == name
    # A line profile wherever the interpreter can give one safely (the launcher's rule),
    # and a note saying why not elsewhere.
    version = tuple(int(part) for part in env.version.split("."))
    off = launcher.profile_off(env.implementation.lower(), version)
    if not off and breakdown.PROFILE_CRASHED in run.measurement_notes:
        # CPython before 3.13 can crash in the sampler itself (launcher.Measure.
        # sampler_crashed): importing this data stack makes it likeliest, and a CI pass
        # has hit it. That go was dropped and run again unprofiled, as the note says;
        # the profile itself is then shown by a run of its own.
        assert not run.lines
        run = execute(code + "# again\n", env=name, timeout_s=settings.MAX_EXECUTION_TIMEOUT)
    if not off:
        assert run.lines, f"{env.interpreter_name}'s runs have a line profile"
    else:
        assert not run.lines
        assert breakdown.NOTES[off] in run.measurement_notes


def test_standby_sandboxes_are_kept_for_the_default_and_the_last_environment_used():
    other = other_than_default()
    default = environments.default()
    ahead.prepare_next_sandbox(other)
    standby._preparer.wait()
    kept = [key[0].python for key, _ in standby._standbys]
    assert sorted(set(kept)) == sorted({default.python, other.python})
    taken = standby.take(limits(python=other.python))
    assert taken is not None and taken.python == other.python
    taken.cleanup()
    # Another one used next: the first's pool goes, the default's stays.
    ahead.prepare_next_sandbox(default)
    standby._preparer.wait()
    assert {key[0].python for key, _ in standby._standbys} == {default.python}

"""Standard input: what a run is given to read, in the sandbox, on its page, in the API,
the exports, re-runs, repeats and comparisons, and the command line."""

import csv
import io
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client

from runs import sandbox
from runs.models import Run, Series, run_json, series_json
from runs.sandbox import environments
from runs.snippets import failures

from .conftest import HTMX, execute, limits, run_series, sandbox_processes

READS = """\
import sys
name = input()
rest = sys.stdin.read()
print(f"hello {name}; then {len(rest)} characters, {rest.count(chr(10))} lines")
"""


# --- in the sandbox --------------------------------------------------------------------


def test_the_snippet_reads_its_input_then_end_of_file(mode):
    outcome = sandbox.run(READS, limits(), stdin="Ada\nline 2\nline 3\n")
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout == "hello Ada; then 14 characters, 2 lines\n"
    assert sandbox_processes() == []


def test_without_input_the_snippet_reads_end_of_file_at_once(mode):
    outcome = sandbox.run("import sys\nprint(repr(sys.stdin.read()))\ninput()", limits())
    assert outcome.stdout == "''\n"
    assert outcome.exit_code == 1 and "EOFError" in outcome.stderr


def test_input_larger_than_a_pipe_and_never_read_does_not_hold_the_run(mode, settings):
    # 1 MiB waits in the pipe while the snippet ignores it: the run ends as the code does.
    settings.MAX_STDIN_BYTES = 1024 * 1024
    big = "x" * settings.MAX_STDIN_BYTES
    ignored = sandbox.run("print('done')", limits(), stdin=big)
    assert ignored.exit_code == 0 and ignored.stdout == "done\n" and not ignored.limit
    counted = sandbox.run("import sys\nprint(len(sys.stdin.read()))", limits(), stdin=big)
    assert counted.stdout == f"{len(big)}\n"
    # The rest of the input waits on the watch, not the other way round: its limits hold.
    looping = sandbox.run("while True:\n    pass", limits(timeout_s=1), stdin=big)
    assert looping.timed_out and looping.wall_s < 5
    assert sandbox_processes() == []


@pytest.mark.sandbox
def test_a_child_process_inherits_the_input():
    # As under a shell's pipe: a process the snippet starts reads the same stream.
    code = (
        "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'print(input().upper())'])\n"
    )
    outcome = sandbox.run(code, limits(), stdin="first\nsecond\n")
    assert outcome.stdout == "FIRST\n", outcome.stderr


@pytest.mark.sandbox
@pytest.mark.parametrize("env", [e.name for e in environments.available()])
def test_every_environment_reads_its_input(env):
    python = environments.named(env).python
    outcome = sandbox.run(READS, limits(python=python), stdin="Grace\n1\n")
    assert outcome.stdout == "hello Grace; then 2 characters, 1 lines\n", outcome.stderr


# --- stored, shown, exported -----------------------------------------------------------


@pytest.mark.sandbox
@pytest.mark.django_db
def test_a_run_keeps_its_input_and_its_page_shows_it():
    run = execute(READS, stdin="Ada\n<b>not markup</b>\n")
    assert run.status == Run.Status.SUCCEEDED and run.stdout.startswith("hello Ada;")
    page = Client().get(run.get_absolute_url()).content.decode()
    assert "Standard input it read from" in page
    assert "&lt;b&gt;not markup&lt;/b&gt;" in page  # escaped, as output is
    # The run page's editor carries it, so that Run there runs the same thing again.
    assert '<textarea id="stdin" name="stdin"' in page and "Ada\n&lt;b&gt;" in page
    assert run_json(run)["stdin"] == "Ada\n<b>not markup</b>\n"


@pytest.mark.sandbox
@pytest.mark.django_db
def test_the_hint_says_how_to_give_input_or_that_it_ran_out():
    none = execute("input()")
    assert failures.NO_STDIN in none.hints
    short = execute("a = input()\nb = input()", stdin="only one line\n")
    assert short.status == Run.Status.FAILED
    assert failures.INPUT_USED_UP in short.hints and failures.NO_STDIN not in short.hints


@pytest.mark.django_db
def test_the_form_sends_input_as_typed_and_rerun_and_open_keep_it():
    client = Client()
    response = client.post("/runs/new", {"code": READS, "stdin": "Ada\r\nb\r\n"}, headers=HTMX)
    assert response.status_code == 201
    run = Run.objects.get()
    assert run.stdin == "Ada\nb\n"  # a browser's CRLF line breaks, as typed
    assert client.post(f"/runs/{run.public_id}/rerun").status_code == 302
    again = Run.objects.exclude(pk=run.pk).get()
    assert again.stdin == run.stdin and again.code == run.code
    opened = client.get(f"/?from={run.public_id}").content.decode()
    assert "Ada\nb\n</textarea>" in opened
    csv_text = b"".join(client.get("/runs.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert {row["stdin"] for row in rows} == {"Ada\nb\n"}


@pytest.mark.django_db
def test_input_over_the_limit_is_refused_with_the_code_and_input_kept(settings):
    settings.MAX_STDIN_BYTES = 10
    response = Client().post("/runs/new", {"code": "print(1)", "stdin": "x" * 11})
    assert response.status_code == 422
    page = response.content.decode()
    assert "The standard input is 11 bytes; the limit is 10 bytes." in page
    assert "print(1)</textarea>" in page and "x" * 11 + "</textarea>" in page
    assert not Run.objects.exists()


@pytest.mark.sandbox
@pytest.mark.django_db
def test_a_repeat_gives_every_run_the_input():
    response = Client().post(
        "/series/new", {"code": "print(input())", "stdin": "again\r\n", "repetitions": "2"}
    )
    assert response.status_code == 302
    series = run_series(Series.objects.get())
    assert {(r.stdin, r.stdout) for r in series.runs.all()} == {("again\n", "again\n")}
    assert series_json(series)["stdin"] == {"A": "again\n"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("apart", "expected_b"), [(False, "shared\n"), (True, "B's own\n")], ids=["shared", "apart"]
)
def test_a_comparison_shares_the_input_unless_set_apart(apart, expected_b):
    client = Client()
    data = {
        "code_a": "print('A', input())",
        "code_b": "print('B', input())",
        "repetitions": "2",
        "stdin_a": "shared\r\n",
        "stdin_b": "B's own\r\n",
    }
    if apart:
        data["stdin_apart"] = "on"
    assert client.post("/compare/new", data).status_code == 302
    series = Series.objects.get()
    assert (series.stdin_a, series.stdin_b) == ("shared\n", expected_b)
    assert series.inputs_apart is apart
    assert {(r.variant, r.stdin) for r in series.runs.all()} == {
        ("A", "shared\n"),
        ("B", expected_b),
    }
    # "Edit and compare again" brings both inputs, and whether they were apart.
    form = client.get(f"/compare/?from={series.public_id}").content.decode()
    assert "shared\n</textarea>" in form
    assert ('name="stdin_apart" id="stdin_apart" checked' in form) is apart


# --- the API and the command line ------------------------------------------------------


def test_the_api_takes_stdin_and_answers_it_back(start_worker, settings):
    settings.API_WAIT_SECONDS = 60
    start_worker()
    client = Client()
    answer = client.post("/run", {"code": READS, "stdin": "API\n"}, "application/json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["stdin"] == "API\n" and body["stdout"].startswith("hello API;")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("stdin", "status", "message"),
    [
        (["a list"], 400, "Standard input must be text."),
        ("nul\x00byte", 400, "NUL bytes"),
        ("x" * 11, 413, "the limit is 10 bytes"),
    ],
)
def test_the_api_refuses_bad_input_with_a_json_error(settings, stdin, status, message):
    settings.MAX_STDIN_BYTES = 10
    answer = Client().post("/api/runs", {"code": "1", "stdin": stdin}, "application/json")
    assert answer.status_code == status and message in answer.json()["error"]
    assert not Run.objects.exists()


def test_runsnippet_reads_the_input_from_a_file(worker_env, tmp_path):
    (tmp_path / "main.py").write_text(READS)
    (tmp_path / "input.txt").write_text("CLI\nmore\n")
    snippet, given = str(tmp_path / "main.py"), str(tmp_path / "input.txt")
    done = subprocess.run(
        [sys.executable, "manage.py", "runsnippet", snippet, "--json", "--stdin", given],
        cwd=settings.BASE_DIR,
        env=worker_env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert b'"stdin": "CLI\\nmore\\n"' in done.stdout and b"hello CLI; then 5" in done.stdout

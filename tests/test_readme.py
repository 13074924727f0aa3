"""README's commands work as written: each `curl` line and the `runsnippet` command are
run, against a live server and a worker (only its address is the test server's, and
FILE a file of the test's), and the API shapes README shows are the API's."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import database_url

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
ROOT = Path(__file__).resolve().parent.parent
SERVED = "http://127.0.0.1:8000"  # where README's commands send requests: `make run`'s


def shell_lines() -> list[str]:
    """Every command in README's sh blocks."""
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def curl_lines() -> list[str]:
    return [line for line in shell_lines() if line.startswith("curl ")]


def test_readme_shows_curl_lines_for_a_run_and_a_comparison():
    paths = [re.search(r"http://127\.0\.0\.1:8000(\S*)", line).group(1) for line in curl_lines()]
    assert "/run" in paths and "/api/comparisons" in paths


def test_readmes_curl_lines_work_as_written(live_server, start_worker):
    start_worker()
    for line in curl_lines():
        command = line.replace(SERVED, live_server.url)
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=True
        )
        answer = json.loads(done.stdout)
        assert answer.get("error") is None, (line, answer)
        if "/run " in command:
            assert answer["status"] == "succeeded" and answer["stdout"] == "42\n"
        else:
            assert answer["variants"] == ["A", "B"] and answer["url"]


def test_readmes_runsnippet_commands_work_as_written(tmp_path, worker_env):
    snippet = tmp_path / "snippet.py"
    snippet.write_text("print(sum(range(10)))\n")
    commands = re.findall(r"`(\.venv/bin/python manage\.py runsnippet [^`]*)`", README)
    assert commands, "README shows runsnippet"
    env = {**worker_env, "DATABASE_URL": database_url()}
    for command in commands:
        argv = command.replace("FILE", str(snippet)).split()
        argv[0] = sys.executable  # README's .venv/bin/python is the one running the tests
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        assert "45" in done.stdout or "comparison" in done.stdout, done.stdout


@pytest.mark.django_db
def test_readmes_api_shapes_are_the_apis(client):
    shown = re.search(
        r'`GET /api/environments` lists them.*?`(\{"environments": \[.*?\]\})`', README, re.S
    )
    assert shown, "README shows GET /api/environments' answer"
    keys = re.findall(r'"(\w+)"', shown.group(1))
    answer = client.get("/api/environments").json()
    assert list(answer) == [keys[0]]
    for environment in answer["environments"]:
        assert set(keys[1:]) <= set(environment), environment

"""The editor's Format and its checks as one types (runs.snippets.tidy, /code/...)."""

import pytest
from django.conf import settings

from runs.snippets import tidy

pytestmark = pytest.mark.django_db


def test_format_gives_ruffs_layout_and_says_where_code_does_not_parse():
    assert tidy.formatted("x=1\nif x :\n  print( x )\n") == "x = 1\nif x:\n    print(x)\n"
    with pytest.raises(tidy.NotFormatted) as refused:
        tidy.formatted("x = 1\ndef f(:\n    pass\n")
    assert refused.value.line == 2 and str(refused.value).startswith("Line 2 does not parse")


def test_the_checks_find_what_would_fail_when_it_runs_and_nothing_else():
    assert tidy.diagnostics("import os\nx=1\nprint(x)\n") == []  # style is not our business
    found = tidy.diagnostics("total = 0\nprint(totl)\nreturn total\n")
    assert [(d.line, d.rule) for d in found] == [
        (2, "undefined-name"),
        (3, "return-outside-function"),
    ]
    assert "totl" in found[0].message
    assert tidy.diagnostics("print('a'\n")[0].rule == "invalid-syntax"


def test_a_slow_ruff_never_holds_the_request(monkeypatch):
    # The fault of a ruff that does not answer in time, made by a limit no run of ruff
    # can meet.
    monkeypatch.setattr(tidy, "TIMEOUT_SECONDS", 1e-6)
    with pytest.raises(tidy.NotFormatted, match="took over"):
        tidy.formatted("x = 1\n")
    assert tidy.diagnostics("print(y)\n") == []


def test_format_and_check_answer_json_and_refuse_what_a_run_would(client):
    answer = client.post("/code/format", {"code": "x=1"})
    assert answer.status_code == 200 and answer.json() == {"code": "x = 1\n"}
    answer = client.post("/code/format", {"code": "def f(:"})
    assert answer.status_code == 422 and answer.json()["line"] == 1
    answer = client.post("/code/check", {"code": "print(y)"})
    assert answer.json()["diagnostics"][0] | {"message": ""} == {
        "line": 1,
        "column": 7,
        "rule": "undefined-name",
        "message": "",
    }
    too_large = "#" * (settings.MAX_CODE_BYTES + 1)
    for url in ("/code/format", "/code/check"):
        assert client.post(url, {"code": too_large}).status_code == 413
        assert client.post(url, {"code": "print(1)\x00"}).status_code == 422
        assert client.get(url).status_code == 405


def test_format_and_check_are_bounded_per_process(client):
    held = [tidy._slots.acquire(blocking=False) for _ in range(tidy.AT_ONCE)]
    assert all(held)
    try:
        for url in ("/code/format", "/code/check"):
            busy = client.post(url, {"code": "x = 1"})
            assert busy.status_code == 503 and busy["Retry-After"] == "1"
            assert "try again" in busy.json()["error"]
    finally:
        for _ in held:
            tidy._slots.release()


def test_a_server_without_ruff_says_so_and_never_fails_a_request(monkeypatch, client):
    # The fault of an incomplete install, made by pointing at a ruff that is not there.
    monkeypatch.setattr(tidy, "FORMAT", ["/nonexistent/ruff", *tidy.FORMAT[1:]])
    monkeypatch.setattr(tidy, "CHECK", ["/nonexistent/ruff", *tidy.CHECK[1:]])
    answer = client.post("/code/format", {"code": "x=1"})
    assert answer.status_code == 422 and "not installed" in answer.json()["error"]
    assert client.post("/code/check", {"code": "print(y)"}).json() == {"diagnostics": []}

"""The sandbox on its own: real bubblewrap, real cgroups, real snippets (no database)."""

import os
import subprocess

import psutil
import pytest
from django.conf import settings

from runs import sandbox
from runs.sandbox import command as sandbox_command
from runs.sandbox import environments, launcher, watch

from .conftest import Following, limits, run, sandbox_processes

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root, like CI"),
]


def test_success_returns_output_and_exit_code_zero(mode):
    outcome = run("print('hello from the sandbox')")
    assert outcome.exit_code == 0
    assert outcome.stdout == "hello from the sandbox\n"
    assert outcome.stderr == ""
    assert outcome.isolation.startswith(mode)
    assert "seccomp" in outcome.isolation
    assert outcome.cpu_s > 0
    assert not outcome.timed_out and not outcome.limit and not outcome.error


def test_output_shows_as_it_is_printed_not_when_a_buffer_fills(mode):
    ticks = []
    code = "import time\nprint('started')\nend = time.time() + 1\nwhile time.time() < end: pass\n"
    outcome = sandbox.run(code, limits(), Following(ticks.append, tick_seconds=0.5))
    assert outcome.stdout == "started\n"
    # The first tick comes early, and already holds the line printed without flush=True.
    first = ticks[0]
    assert first.elapsed_s < 0.5 and first.stdout == "started\n"


def test_numpy_is_available_to_snippets():
    outcome = run("import numpy as np; print(np.arange(4).sum())")
    assert (outcome.exit_code, outcome.stdout) == (0, "6\n")


def test_syntax_error_reports_the_line():
    outcome = run("x = 1\nprint(x\n")
    assert outcome.exit_code == 1
    assert 'main.py", line 2' in outcome.stderr
    assert "SyntaxError" in outcome.stderr
    assert "launcher" not in outcome.stderr


def test_runtime_error_shows_the_snippets_traceback():
    outcome = run(
        """
        def divide(a, b):
            return a / b
        print("before", flush=True)
        divide(1, 0)
        """
    )
    assert outcome.exit_code == 1
    assert outcome.stdout == "before\n"
    assert outcome.stderr.startswith("Traceback (most recent call last):")
    assert 'main.py", line 5, in <module>' in outcome.stderr
    assert 'main.py", line 3, in divide' in outcome.stderr
    assert outcome.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "launcher" not in outcome.stderr and "<string>" not in outcome.stderr


def test_timeout_kills_a_setsid_grandchild(mode):
    outcome = run(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:   # the escaped grandchild, busy forever
                    pass
            os._exit(0)
        print("parent waiting", flush=True)
        time.sleep(60)
        """,
        timeout_s=1.5,
    )
    assert outcome.timed_out
    assert outcome.stdout == "parent waiting\n"
    assert 1.5 <= outcome.wall_s < 3
    assert sandbox_processes() == [], "a sandboxed process outlived its run"


def test_a_daemon_left_behind_by_a_finished_snippet_is_stopped(mode):
    outcome = run(
        """
        import os, sys
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.close(1); os.close(2)
                while True:
                    pass
            os._exit(0)
        print("main done")
        """
    )
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert outcome.wall_s < 3
    assert sandbox_processes() == []


def test_output_flood_is_capped_and_stopped():
    outcome = run("while True: print('x' * 1000)", output_bytes=64 * 1024)
    assert outcome.limit == "output"
    assert outcome.stdout_truncated
    assert len(outcome.stdout.encode()) == 64 * 1024
    assert "Output limit exceeded" in outcome.limit_message
    assert sandbox_processes() == []


def test_memory_cap_holds_across_several_processes():
    # Four processes of 100 MiB each: every one is under the cap, together they are not.
    outcome = run(
        """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                block = bytearray(100 * 1024 * 1024)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(30)
                os._exit(0)
        for _ in range(4):
            os.wait()
        """,
        memory_bytes=256 * 1024 * 1024,
        timeout_s=20,
    )
    assert outcome.limit == "memory"
    assert not outcome.timed_out
    assert "256 MiB" in outcome.limit_message
    assert sandbox_processes() == []


def test_fork_bomb_is_contained():
    outcome = run(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        max_processes=32,
        timeout_s=10,
    )
    assert outcome.limit == "processes"
    assert outcome.wall_s < 5
    assert sandbox_processes() == []


def test_disk_flood_is_refused():
    outcome = run(
        """
        with open("big.bin", "wb") as f:
            while True:
                f.write(b"x" * 1024 * 1024)
        """,
        disk_bytes=8 * 1024 * 1024,
    )
    assert outcome.limit == "disk"
    assert outcome.exit_code == 1


def test_inode_flood_is_stopped():
    outcome = run(
        """
        i = 0
        while True:
            open(f"f{i}", "w").close()
            i += 1
        """,
        max_files=2000,
    )
    assert outcome.limit == "files"
    assert sandbox_processes() == []


def test_no_network(mode):
    outcome = run(
        """
        import socket
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.socket(family, socket.SOCK_STREAM)
                print("opened", family)
            except PermissionError:
                print("refused", family.name)
        a, b = socket.socketpair()   # local pipes still work (multiprocessing needs them)
        print("socketpair ok")
        """
    )
    assert outcome.stdout.split("\n")[:3] == [
        "refused AF_INET",
        "refused AF_INET6",
        "socketpair ok",
    ]


def test_server_environment_and_files_are_out_of_reach(mode, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_TEST_SECRET", "hunter2")
    database = settings.DATABASES["default"]["NAME"]
    outcome = run(
        f"""
        import os
        print(sorted(os.environ))
        for path in ["/etc/shadow", "/etc/passwd",
                     {str(settings.BASE_DIR / "playground/settings.py")!r}, {str(database)!r}]:
            try:
                open(path).read()
                print("READ", path)
            except OSError as exc:
                print("denied", type(exc).__name__)
        print(os.getuid() != 0, os.getgroups() in ([], [os.getgid()]))
        """
    )
    assert "hunter2" not in outcome.stdout
    assert "PLAYGROUND_TEST_SECRET" not in outcome.stdout
    assert "SECRET_KEY" not in outcome.stdout and "DATABASE_URL" not in outcome.stdout
    assert "READ" not in outcome.stdout, outcome.stdout
    assert outcome.stdout.strip().endswith("True True")


def test_snippet_cannot_signal_the_server(mode):
    outcome = run(
        f"""
        import os, signal
        for pid in ({os.getpid()}, {os.getppid()}):
            try:
                os.kill(pid, signal.SIGKILL)
                print("killed", pid)
            except (ProcessLookupError, PermissionError) as exc:
                print("refused", type(exc).__name__)
        """
    )
    assert "killed" not in outcome.stdout
    assert outcome.stdout.count("refused") == 2


def test_binary_output_is_kept_readable():
    outcome = run("import sys; sys.stdout.buffer.write(b'ok \\x00\\xff\\xfe end')")
    assert outcome.stdout == "ok \ufffd\ufffd\ufffd end"


@pytest.mark.skipif(sandbox.landlock_abi() < 6, reason="Landlock signal scoping needs ABI 6")
def test_even_as_the_servers_own_user_the_snippet_cannot_signal_it(tmp_path):
    # In an unprivileged container there is no other account to drop to and no
    # bubblewrap: the launcher's Landlock domain is then what stops a kill.
    rules = sandbox_command.landlock_paths(environments.default().python, str(tmp_path))
    report_read, report_write = os.pipe()
    command = sandbox_command.launcher_arguments(
        environments.default().python,
        limits(),
        unix_sockets=False,
        report_fd=report_write,
        landlock=rules,
    )
    code = f"import os\nos.kill({os.getpid()}, 15)\n"
    result = subprocess.run(
        command,
        input=launcher.GO + launcher.frame(code.encode()),  # no cgroup to wait for: go at once
        capture_output=True,
        cwd=tmp_path,
        timeout=30,
        pass_fds=(report_write,),
    )
    os.close(report_write)
    with os.fdopen(report_read) as report:
        # "startup <cpu>", "ready", "prepared <cpu>" when the code arrived, then
        # "end <status> <cpu> <cpu>" at the end.
        words = report.read().splitlines()[-1].split()
    assert words[0] == launcher.END
    status = int(words[1])
    assert os.waitstatus_to_exitcode(status) == 1
    assert b"PermissionError" in result.stderr


# --- the watch's parts on their own: its readings (usage) and its ending (teardown) ---

WRITES_AND_HOLDS = """
import time
open('held', 'wb').write(b'x' * 3_000_000)
ballast = bytearray(b'x' * 40_000_000)  # written to: resident, not a lazy zero mapping
print('written', flush=True)
time.sleep(1.2)
"""


def test_usage_reads_what_the_running_tree_holds(mode):
    sandboxed = watch.launch(limits())
    readings = []

    def read(tick) -> None:  # on the watch's own thread, between its checks
        if tick.stdout:
            readings.append(
                (
                    sandboxed.usage.disk_usage(),
                    sandboxed.usage.memory_bytes(),
                    len(sandboxed.members()),
                )
            )

    try:
        outcome = sandboxed.execute(WRITES_AND_HOLDS.encode(), Following(read, tick_seconds=0.2))
    finally:
        sandboxed.cleanup()
    assert outcome.exit_code == 0 and readings, outcome.stderr
    # The largest reading, not the last: the last tick may fall in the interpreter's
    # exit, after it has handed the ballast back.
    (files, written), memory, members = max(readings, key=lambda reading: reading[1])
    assert files >= 1 and written >= 3_000_000  # the file in its working directory
    assert memory >= 40_000_000  # the ballast, resident
    assert members >= 1


def test_teardown_leaves_nothing_of_a_sandbox_whose_code_never_came(mode):
    # A sandbox started ahead and ended unused (a standby discarded, a worker stopping):
    # its interpreter and supervisor, its cgroup and its files go with it.
    sandboxed = watch.launch(limits())
    sandboxed._wait_until_ready()
    pids = [sandboxed.proc.pid, sandboxed.supervisor]
    group, workdir = sandboxed.group, sandboxed.workdir
    sandboxed.kill()
    sandboxed.cleanup()
    assert not [pid for pid in pids if pid and psutil.pid_exists(pid)]
    assert sandbox_processes() == []
    assert group is None or not any(path.exists() for path in group.dirs.values())
    assert workdir is None or not os.path.exists(workdir)


def test_no_line_profile_where_the_interpreter_would_crash_or_blame_the_wrong_line():
    # CPython gh-123967: faulthandler crashes on a trampoline frame before 3.12.8/3.13.1.
    assert launcher.profile_off("cpython", (3, 11, 2)) == ""
    assert launcher.profile_off("cpython", (3, 12, 1)) == launcher.PROFILE_UNSAFE
    assert launcher.profile_off("cpython", (3, 12, 8)) == ""
    assert launcher.profile_off("cpython", (3, 13, 0)) == launcher.PROFILE_UNSAFE
    assert launcher.profile_off("cpython", (3, 13, 1)) == ""
    assert launcher.profile_off("pypy", (3, 9, 16)) == launcher.PROFILE_UNSUPPORTED

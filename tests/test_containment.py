"""Every way a run can end leaves nothing behind, and its figures count every process.

Real sandbox, real cgroups, real snippets. The worker's role is played by this test
process: `sandbox.run` is what a worker calls for each run, one at a time.
"""

import contextlib
import errno
import os
import socket
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from runs import sandbox
from runs.sandbox import cgroups, environments, standby
from runs.sandbox.watch import Watch
from runs.snippets import failures

from .conftest import NOBODY, limits, processes_of, run, sandbox_processes

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root, like CI"),
]


def zombie_children() -> list[psutil.Process]:
    """Zombies among this process's children that earlier tests did not leave: this
    process is a subreaper (as a worker is), so servers other tests stopped can hand
    it their own children."""
    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.status() == psutil.STATUS_ZOMBIE and child.pid not in _earlier:
                found.append(child)
    return found


_earlier: set[int] = set()


@pytest.fixture(autouse=True)
def _zombies_before_the_test():
    _earlier.clear()
    _earlier.update(p.pid for p in psutil.Process().children() if _is_zombie(p))


def _is_zombie(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def leftover_cgroups() -> list[Path]:
    return [d for d in cgroups.run_dirs() if f"run-{os.getpid()}-" in d.name]


# How a run can end, each with the limits that make it end that way quickly.
ENDINGS = {
    "succeeded": ("print('ok')", {}),
    "failed": ("1 / 0", {}),
    "timed_out": (
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            while True: pass
        time.sleep(60)
        """,
        {"timeout_s": 0.5},
    ),
    "memory": (
        """
        import time
        t = time.process_time()
        while time.process_time() - t < 0.05: pass
        block = bytearray(256 * 1024 * 1024)
        """,
        {"memory_bytes": 96 * 1024 * 1024},
    ),
    "processes": (
        """
        import os, time
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(30)
            except OSError:
                pass
        """,
        {"max_processes": 16},
    ),
    "output": ("while True: print('x' * 1000)", {"output_bytes": 8 * 1024}),
    "disk": (
        """
        with open("big.bin", "wb") as f:
            while True:
                f.write(b"x" * 65536)
        """,
        {"disk_bytes": 2 * 1024 * 1024},
    ),
    "files": (
        """
        i = 0
        while True:
            open(f"f{i}", "w").close()
            i += 1
        """,
        {"max_files": 200},
    ),
}


def ended_as(outcome: sandbox.Outcome) -> str:
    if outcome.timed_out:
        return "timed_out"
    if outcome.limit:
        return outcome.limit
    return "succeeded" if outcome.exit_code == 0 else "failed"


def test_sixty_runs_ending_every_way_leave_nothing_behind(mode):
    # Work folders this test did not make (a playground beside it, one killed) are not its.
    before = set(Path(tempfile_dir()).glob("ccp-run-*"))
    names = list(ENDINGS)
    for i in range(60):
        name = names[i % len(names)]
        code, overrides = ENDINGS[name]
        outcome = run(code, **overrides)
        assert ended_as(outcome) == name, (name, outcome)
        assert not outcome.error, outcome.error
        assert outcome.cpu_s > 0 and outcome.wall_s > 0
        assert zombie_children() == [], f"run {i} ({name}) left a zombie"
    assert sandbox_processes() == []
    assert leftover_cgroups() == []
    assert set(Path(tempfile_dir()).glob("ccp-run-*")) - before == set()


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


BUSY_THEN_BLOW_UP = """
import textwrap
import time
t = time.process_time()
while time.process_time() - t < 0.5:
    pass
block = bytearray(600 * 1024 * 1024)
"""


def test_cpu_time_of_a_run_killed_for_memory_is_counted():
    for attempt in range(20):
        outcome = run(BUSY_THEN_BLOW_UP, memory_bytes=256 * 1024 * 1024)
        assert outcome.limit == "memory"
        assert outcome.cpu_s >= 0.45, f"attempt {attempt}: {outcome.cpu_s} CPU-seconds"
    assert zombie_children() == []


def test_cpu_time_of_an_abandoned_busy_process_is_counted(mode):
    # The main process ends at once; a setsid'd child nobody waits for burns the CPU.
    outcome = run(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True: pass
            os._exit(0)
        time.sleep(1.2)
        """,
        timeout_s=1.0,
    )
    assert outcome.timed_out
    assert outcome.cpu_s >= 0.7, outcome.cpu_s
    assert zombie_children() == [] and sandbox_processes() == []


# A snippet that ignores SIGCHLD has the kernel reap its children at once, and their CPU
# time is discarded: no wait, and so no RUSAGE_CHILDREN, ever sees it.
BUSY_SECONDS = 1.0
HIDDEN_CHILD = f"""
import os, signal, time
try:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("ignored")
except OSError:
    print("refused")
if os.fork() == 0:
    end = time.process_time() + {BUSY_SECONDS}
    while time.process_time() < end:
        pass
    os._exit(0)
time.sleep({BUSY_SECONDS} + 0.5)
"""
# The same one level down: the child ignores SIGCHLD, its own child works, and the
# child ends normally once its child's CPU time is gone.
HIDDEN_GRANDCHILD = f"""
import os, signal, time
if os.fork() == 0:
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        print("ignored", flush=True)
    except OSError:
        print("refused", flush=True)
    if os.fork() == 0:
        end = time.process_time() + {BUSY_SECONDS}
        while time.process_time() < end:
            pass
        os._exit(0)
    time.sleep({BUSY_SECONDS} + 0.5)
    os._exit(0)
os.wait()
"""


@pytest.mark.parametrize("code", [HIDDEN_CHILD, HIDDEN_GRANDCHILD], ids=["child", "grandchild"])
def test_a_child_reaped_by_the_kernel_still_counts(mode, code):
    outcome = run(code, timeout_s=10)
    assert outcome.exit_code == 0, outcome.stderr
    # With a cgroup the snippet may ignore SIGCHLD: the cgroup counts every process.
    assert outcome.stdout == "ignored\n"
    assert outcome.cpu_source == sandbox.CPU_FROM_CGROUP
    assert outcome.cpu_s >= 0.9 * BUSY_SECONDS, outcome.cpu_s
    assert zombie_children() == [] and sandbox_processes() == []


def test_cpu_is_capped_per_run(settings):
    settings.SANDBOX_CPUS = 1
    outcome = run(
        """
        import multiprocessing, time
        def spin():
            t = time.monotonic()
            while time.monotonic() - t < 2: pass
        workers = [multiprocessing.Process(target=spin) for _ in range(4)]
        for w in workers: w.start()
        for w in workers: w.join()
        print("done")
        """,
        timeout_s=20,
    )
    assert outcome.stdout == "done\n", outcome.stderr
    assert "no-cpu-cap" not in outcome.isolation
    # Four processes for 2 s of wall time would be 8 CPU-seconds uncapped (2 on this
    # 2-core host); one CPU for 2 s is 2.
    assert outcome.cpu_s <= 2.2, outcome.cpu_s
    assert outcome.cpu_s >= 1.5, outcome.cpu_s


NAMESPACES = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
SIGCHLD = 17
ALL = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET
for name, flags in [("user", CLONE_NEWUSER), ("user+mount+net", ALL), ("net", CLONE_NEWNET)]:
    result = libc.unshare(flags)
    print("unshare", name, "ok" if result == 0 else errno.errorcode[ctypes.get_errno()])
pid = libc.syscall(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)  # clone(2) on x86-64
if pid == 0:
    os._exit(0)
print("clone", "ok" if pid > 0 else errno.errorcode[ctypes.get_errno()])
if pid > 0:
    os.waitpid(pid, 0)
args = (ctypes.c_uint64 * 11)(CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, 0)
pid = libc.syscall(435, args, 88)  # clone3(2)
if pid == 0:
    os._exit(0)
print("clone3", "ok" if pid > 0 else errno.errorcode[ctypes.get_errno()])
"""


def test_no_new_namespaces_inside_the_sandbox(mode):
    outcome = run(NAMESPACES)
    lines = outcome.stdout.splitlines()
    assert len(lines) == 5, outcome.stderr
    assert not [line for line in lines if line.endswith(" ok")], lines
    for line in lines[:4]:
        assert line.endswith("EPERM"), line
    assert lines[4] == "clone3 ENOSYS"


UNNEEDED_KERNEL_INTERFACES = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
seccomp = ctypes.CDLL("libseccomp.so.2")
seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
for name in ("userfaultfd", "perf_event_open", "bpf", "keyctl", "add_key"):
    number = seccomp.seccomp_syscall_resolve_name(name.encode())
    # userfaultfd(UFFD_USER_MODE_ONLY) is allowed to anyone by the kernel itself.
    result = libc.syscall(number, 1 if name == "userfaultfd" else 0, 0, 0, 0, 0)
    print(name, "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()])
"""


def test_kernel_interfaces_a_snippet_never_needs_are_refused(mode):
    outcome = run(UNNEEDED_KERNEL_INTERFACES)
    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines == [f"{name} EPERM" for name in (
        "userfaultfd", "perf_event_open", "bpf", "keyctl", "add_key"
    )], lines  # fmt: skip


def test_dev_shm_counts_towards_the_file_and_disk_caps():
    # bubblewrap gives the sandbox its own /dev/shm (tmpfs): its files and bytes count
    # with /tmp's, so neither cap can be stepped around through it.
    files = run(
        "i = 0\nwhile True:\n    open(f'/dev/shm/f{i}', 'w').close()\n    i += 1\n",
        max_files=200,
    )
    assert files.limit == "files", files
    disk = run(
        """
        import time
        open("/tmp/half", "wb").write(b"x" * 1_500_000)
        open("/dev/shm/half", "wb").write(b"x" * 1_500_000)
        time.sleep(5)
        """,
        disk_bytes=2 * 1024 * 1024,
    )
    assert disk.limit == "disk", disk
    assert sandbox_processes() == [] and zombie_children() == []


def test_a_run_whose_cgroup_move_fails_never_runs_its_code(monkeypatch, tmp_path):
    # A fake fault: nothing we can do from here makes the kernel refuse a cgroup move.
    def refuse(self, pid):
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(cgroups.RunCgroup, "add", refuse)
    marker = tmp_path / "ran"
    outcome = run(f"print('ran'); open({str(marker)!r}, 'w')")
    assert outcome.error.startswith("The sandbox could not be confined")
    assert "cgroup" in outcome.error
    assert outcome.stdout == "" and not marker.exists()
    assert zombie_children() == [] and sandbox_processes() == []


def test_operators_files_under_usr_are_hidden(mode, tmp_path):
    secret = Path("/usr/local/etc/ccp-test-secret")
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("operator's secret")
    secret.chmod(0o644)
    try:
        outcome = run(
            f"""
            import subprocess
            try:
                print(open({str(secret)!r}).read())
            except OSError as exc:
                print("hidden", type(exc).__name__)
            print(subprocess.run(["/usr/bin/env"], capture_output=True).returncode)
            import numpy
            """
        )
    finally:
        secret.unlink()
    assert outcome.stdout.splitlines()[0].startswith("hidden"), outcome.stdout
    assert outcome.stdout.splitlines()[1] == "0"
    assert outcome.exit_code == 0, outcome.stderr


# --- the fallback mode as a non-root server without cgroups ---------------------------


def test_unprivileged_fallback_stops_a_daemon(unprivileged):
    outcome = unprivileged(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                print("daemon", os.getpid(), flush=True)
                os.close(1); os.close(2)
                while True: time.sleep(0.01)
            os._exit(0)
        time.sleep(0.3)
        print("main done")
        """
    )
    assert outcome.exit_code == 0, outcome.stderr
    assert "no-cpu-cap" in outcome.isolation and "cgroup" not in outcome.isolation
    daemon = int(outcome.stdout.split()[1])
    assert not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == "zombie"
    assert processes_of(NOBODY) == []


@pytest.mark.parametrize("code", [HIDDEN_CHILD, HIDDEN_GRANDCHILD], ids=["child", "grandchild"])
def test_unprivileged_fallback_counts_a_child_the_kernel_would_reap(unprivileged, code):
    # No cgroup here: the supervisor's count is the figure, so the launcher refuses to
    # let the snippet change how SIGCHLD is handled, and every process is waited for.
    outcome = unprivileged(code, timeout_s=10)
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout == "refused\n"
    assert outcome.cpu_source == sandbox.CPU_FROM_SUPERVISOR
    assert outcome.cpu_s >= 0.9 * BUSY_SECONDS, outcome.cpu_s
    assert processes_of(NOBODY) == []


def test_unprivileged_fallback_explains_a_refused_sigchld_handler(unprivileged):
    outcome = unprivileged(
        "import signal\nsignal.signal(signal.SIGCHLD, lambda *args: None)\nprint('set')\n"
    )
    assert outcome.exit_code == 1 and outcome.stdout == ""
    assert outcome.stderr.rstrip().endswith("PermissionError: [Errno 1] Operation not permitted")
    assert failures.NO_SIGCHLD in failures.hints(outcome.stderr, environments.default().name)


def test_unprivileged_fallback_caps_processes(unprivileged):
    outcome = unprivileged(
        """
        import os, time
        started = 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(5)
                    os._exit(0)
                started += 1
            except OSError:
                break
        print(started)
        """,
        max_processes=16,
    )
    assert 0 < int(outcome.stdout) < 16, outcome.stdout
    assert processes_of(NOBODY) == []


def test_unprivileged_fallback_refuses_every_socket(unprivileged, tmp_path):
    path = tmp_path / "host.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    # Reachable by anyone, as a careless host service's socket would be.
    os.chmod(tmp_path, 0o777)  # noqa: S103
    path.chmod(0o777)
    try:
        outcome = unprivileged(
            f"""
            import socket
            for family in (socket.AF_UNIX, socket.AF_INET):
                try:
                    s = socket.socket(family)
                    s.connect({str(path)!r})
                    print("connected", family.name)
                except OSError as exc:
                    print("refused", family.name, type(exc).__name__)
            a, b = socket.socketpair()
            a.send(b"x"); print("socketpair", b.recv(1).decode())
            """
        )
    finally:
        server.close()
    assert outcome.stdout.splitlines() == [
        "refused AF_UNIX PermissionError",
        "refused AF_INET PermissionError",
        "socketpair x",
    ], outcome.stderr


def test_unprivileged_fallback_refuses_new_namespaces(unprivileged):
    outcome = unprivileged(NAMESPACES)
    assert not [line for line in outcome.stdout.splitlines() if line.endswith(" ok")]
    assert len(outcome.stdout.splitlines()) == 5, outcome.stderr


# --- the GPU ---------------------------------------------------------------------------

CUDA_AND_NVML = """
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
count = ctypes.c_int()
status = cuda.cuInit(0)
print("cuInit", status, "devices", cuda.cuDeviceGetCount(ctypes.byref(count)) or count.value)
nvml = ctypes.CDLL("libnvidia-ml.so.1")
print("nvmlInit", nvml.nvmlInit_v2())
"""


@pytest.mark.skipif(not sandbox.gpu_devices(), reason="needs an NVIDIA GPU")
def test_the_gpu_reaches_snippets_inside_bubblewrap(settings):
    settings.SANDBOX_MODE = "bubblewrap"
    sandbox.isolation.cache_clear()
    try:
        outcome = run(CUDA_AND_NVML, timeout_s=60)
    finally:
        sandbox.isolation.cache_clear()
    assert outcome.exit_code == 0, outcome.stderr
    words = outcome.stdout.split()
    assert words[:2] == ["cuInit", "0"], outcome.stdout
    assert int(words[3]) >= 1
    assert words[4:] == ["nvmlInit", "0"]


# --- the sandbox prepared ahead of a run ----------------------------------------------


def test_a_prepared_sandbox_counts_from_the_code_and_serves_one_run(mode):
    prepared = limits()
    sandbox.prepare_standby(prepared)
    time.sleep(0.5)  # the worker waits for a run; the interpreter is up meanwhile
    first = sandbox.run(
        "import os\nopen('left-behind', 'w').write('x')\nos.environ['LEFT'] = '1'", prepared
    )
    assert first.exit_code == 0, first.stderr
    assert first.wall_s < 0.4, "the time the sandbox waited was charged to the run"
    assert first.startup_cpu_s > 0, "the start-up is measured"
    assert first.cpu_s < first.startup_cpu_s, "and not charged"

    sandbox.prepare_standby(prepared)
    second = sandbox.run(
        "import os\nprint(os.path.exists('left-behind'), 'LEFT' in os.environ)", prepared
    )
    assert second.stdout == "False False\n", "state passed from one run to the next"
    assert zombie_children() == []


def test_a_sandbox_prepared_in_the_background_lives_until_its_run(mode, settings):
    # bubblewrap dies with the thread that started it: the preparing thread must stay.
    prepared = limits()
    sandbox.prepare_standby(prepared, background=True)
    time.sleep(0.5)
    standbys = [watch for _, watch in standby._standbys]
    assert len(standbys) == settings.SANDBOX_STANDBY
    assert not any(watch.exited() for watch in standbys), "a prepared sandbox died"
    outcome = sandbox.run("print('prepared')", prepared)
    assert outcome.stdout == "prepared\n" and outcome.wall_s < 0.4
    left = [watch for _, watch in standby._standbys]
    assert standbys[0] not in left, "a prepared sandbox serves one run only"
    # The run's sweep for orphans left the other prepared sandboxes alone.
    assert left == standbys[1:] and not any(watch.exited() for watch in left)
    assert sandbox.run("print('next')", prepared).stdout == "next\n"
    sandbox.discard_standby()
    assert sandbox_processes() == [] and zombie_children() == []


def test_a_prepared_sandbox_waits_at_low_priority_and_runs_at_normal_priority(mode):
    if os.geteuid() != 0:
        pytest.skip("only root can raise a process's priority back")
    prepared = limits()
    sandbox.prepare_standby(prepared)
    watch = standby._standbys[0][1]
    # From its first process (bubblewrap, which built the sandbox) to the launcher.
    for pid in (watch.proc.pid, watch.supervisor):
        assert os.getpriority(os.PRIO_PROCESS, pid) == standby.STANDBY_NICE
    outcome = sandbox.run("import os\nprint(os.getpriority(os.PRIO_PROCESS, 0))", prepared)
    assert outcome.stdout == "0\n", "the snippet ran at the waiting sandbox's low priority"


def test_a_prepared_sandboxs_cgroup_waits_at_the_lowest_cpu_weight(mode):
    # A nice value orders a process only within its own cgroup: against the cgroup of
    # the run of the moment, the next run's sandbox starting would take half a core.
    prepared = limits()
    sandbox.prepare_standby(prepared)
    watch = standby._standbys[0][1]
    weights = watch.group.cpu_weight_file() if watch.group else None
    if weights is None or not weights.exists():
        sandbox.discard_standby()
        pytest.skip("no CPU weight to set: no cgroup, or no cpu controller in it")
    lowest, default = cgroups.CPU_WEIGHTS[watch.group.version]
    assert weights.read_text().strip() == lowest
    assert standby.take(prepared) is watch
    assert weights.read_text().strip() == default, "the run waits at the lowest weight"
    watch.cleanup()
    sandbox.discard_standby()
    assert sandbox_processes() == [] and zombie_children() == []


def test_a_prepared_sandboxs_snippet_is_inside_its_cgroup(mode):
    # The snippet's process is forked while the sandbox waits for its run: only once
    # the worker has moved the launcher into the run's cgroup.
    prepared = limits(max_processes=8)
    sandbox.prepare_standby(prepared)
    time.sleep(0.5)
    outcome = sandbox.run(textwrap.dedent(ENDINGS["processes"][0]), prepared)
    if "cgroup" in outcome.isolation:
        assert outcome.limit == "processes", outcome
    sandbox.discard_standby()
    assert sandbox_processes() == [] and zombie_children() == []


def test_a_prepared_sandbox_with_other_limits_is_not_used(mode):
    # Another pool (another environment's, or made before the settings changed) is left
    # alone by a run, and ended when the pools to keep are next chosen.
    sandbox.prepare_standby(limits(memory_bytes=128 * 1024 * 1024))
    waiting = [watch for _, watch in standby._standbys]
    outcome = run("print('fresh')", memory_bytes=256 * 1024 * 1024)
    assert outcome.stdout == "fresh\n"
    assert [watch for _, watch in standby._standbys] == waiting
    assert not any(watch.exited() for watch in waiting)
    sandbox.prepare_standby(limits(memory_bytes=256 * 1024 * 1024))
    assert all(watch.exited() for watch in waiting)
    assert all(key[0].memory_bytes == 256 * 1024 * 1024 for key, _ in standby._standbys)
    sandbox.discard_standby()
    assert sandbox_processes() == [] and zombie_children() == []


def test_when_the_supervisor_cannot_report_the_cgroup_counts_the_cpu(monkeypatch):
    # A fake fault: the worker kills the sandbox outright instead of asking its
    # supervisor, as if the supervisor had died; nothing a snippet does can cause it.
    monkeypatch.setattr(Watch, "stop", Watch.kill)
    outcome = run(
        """
        import os
        if os.fork() == 0:
            while True: pass
        while True: pass
        """,
        timeout_s=1.0,
    )
    assert outcome.timed_out and "cgroup" in outcome.isolation
    # One CPU (SANDBOX_CPUS) for about a second, start-up left out.
    assert 0.7 <= outcome.cpu_s <= 1.3, outcome.cpu_s
    assert zombie_children() == [] and sandbox_processes() == []


OUTSIDER = """
import os, subprocess, sys
if os.fork():
    os._exit(0)  # its child is handed to init: outside the suite's tree
os.setsid()
sleeper = subprocess.Popen(["sleep", "60"], user={uid}, group={gid}, extra_groups=[])
print(sleeper.pid, flush=True)
sleeper.wait()
"""


def test_the_suite_counts_only_the_sandbox_processes_it_started():
    # A `make run` beside the suite keeps sandboxes of the same account waiting: a
    # process of that account started outside this process's tree is not ours to count.
    import ctypes
    import pwd
    import subprocess
    import sys

    from django.conf import settings

    account = pwd.getpwnam(settings.SANDBOX_USER)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(sandbox.host.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)  # for this one start only
    try:
        code = OUTSIDER.format(uid=account.pw_uid, gid=account.pw_gid)
        with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as starter:
            outsider = psutil.Process(int(starter.stdout.readline()))
    finally:
        libc.prctl(sandbox.host.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        assert outsider.uids().real == account.pw_uid and outsider.is_running()
        assert outsider not in psutil.Process().children(recursive=True)
        outcome = run("print('ours')")
        assert outcome.exit_code == 0 and outcome.stdout == "ours\n"
        assert sandbox_processes() == []  # ours have all ended; the outsider is not ours
        assert outsider.is_running()
    finally:
        with contextlib.suppress(psutil.Error):
            parent = outsider.parent()
            outsider.kill()
            if parent is not None and parent.pid != 1:
                parent.kill()

"""How a sandbox is made: bubblewrap's command line, the launcher's arguments, its
environment, Landlock's paths and the process cap."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess

from django.conf import settings

from .contract import (
    BUBBLEWRAP,
    LAUNCHER_SOURCE,
    OPEN_FILES,
    RLIMITS,
    SANDBOX_SHM,
    SANDBOX_TMP,
    SHM_BYTES,
    Limits,
    SandboxUnavailable,
)
from .host import (
    GPU_SYS_DIRS,
    SYSTEM_DIRS,
    default_python,
    gpu_devices,
    gpu_library_dirs,
    gpu_pci_dirs,
    interpreter_dirs,
    interpreter_library_dirs,
    sandbox_account,
    tasks_of_this_user,
)

logger = logging.getLogger(__name__)


def _gpu_bwrap_arguments() -> list[str]:
    devices = gpu_devices()
    if not devices:
        return []
    arguments = []
    for device in devices:
        arguments += ["--dev-bind", device, device]
    for directory in [*GPU_SYS_DIRS, *gpu_pci_dirs(), *gpu_library_dirs()]:
        arguments += ["--ro-bind-try", directory, directory]
    return arguments


def bwrap_command(python: str, limits: Limits) -> list[str]:
    # Found on the server's PATH: the sandbox's own PATH is not the server's.
    command = [shutil.which("bwrap") or "bwrap"]
    for directory in SYSTEM_DIRS:
        command += ["--ro-bind-try", directory, directory]
    command += [
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(SHM_BYTES), "--tmpfs", SANDBOX_SHM,
        "--size", str(limits.disk_bytes), "--tmpfs", SANDBOX_TMP,
        "--unshare-all",
        # No user namespaces inside: the launcher's seccomp filter refuses every other
        # kind of namespace too.
        "--unshare-user", "--disable-userns",
        "--die-with-parent",
        # The launcher is PID 1 and sets its own parent-death signal: bubblewrap's
        # reaper loses its one when it changes credentials, and survived its parent.
        "--as-pid-1",
        "--new-session",
        "--hostname", "sandbox",
        "--chdir", SANDBOX_TMP,
    ]  # fmt: skip
    for directory in interpreter_dirs(python):
        command += ["--ro-bind", directory, directory]
    return [*command, *_gpu_bwrap_arguments(), "--"]


def sandbox_environment(python: str, home: str = SANDBOX_TMP) -> dict[str, str]:
    # Built from nothing: the server's environment (secrets, database URL) never leaks.
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "MPLBACKEND": "Agg",
    }
    libraries = [*interpreter_library_dirs(python), *gpu_library_dirs()]
    if libraries:
        environment["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
    return environment


def drop_privileges(account: tuple[int, int] | None) -> dict:
    if account is None:
        return {}
    uid, gid = account
    # extra_groups=[] matters: without it the child keeps root's supplementary groups.
    return {"user": uid, "group": gid, "extra_groups": []}


def landlock_paths(python: str, workdir: str) -> tuple[str, str]:
    """Readable and writable paths for the launcher's Landlock rules."""
    readable = [*SYSTEM_DIRS, "/lib", "/lib64", "/bin", "/proc", "/dev"]
    readable += interpreter_dirs(python)
    writable = [workdir, "/dev/null", "/dev/shm"]
    devices = gpu_devices()
    if devices:
        readable += [*GPU_SYS_DIRS, *gpu_pci_dirs(), *gpu_library_dirs()]
        # The CUDA driver writes to the process's own /proc entries: without this
        # cuInit fails (error 304) while NVML works. Ownership still guards the rest.
        writable += [*devices, "/proc"]
    return os.pathsep.join(readable), os.pathsep.join(writable)


def process_cap(limits: Limits, account, group) -> int:
    """RLIMIT_NPROC for the snippet (0: none). It counts every process of the account."""
    if account:
        return limits.max_processes * 4  # a backstop behind the cgroup's exact cap
    if group:
        return 0
    # A server without root shares its uid with the snippet: the snippet may start
    # max_processes beyond what that uid runs now.
    return tasks_of_this_user() + limits.max_processes


def launcher_arguments(
    python: str,
    limits: Limits,
    *,
    processes: int = 0,
    address_space: int = 0,
    unix_sockets: bool = True,
    report_fd: int,
    cpu_counter_fd: int | None = None,
    landlock: tuple[str, str] = ("", ""),
) -> list[str]:
    """The launcher's command line (see runs/sandbox/launcher.py for what each means)."""
    return [
        python,
        "-I",
        "-u",
        "-c",
        LAUNCHER_SOURCE,
        str(limits.disk_bytes),
        str(processes),
        str(address_space),
        str(OPEN_FILES),
        "1" if unix_sockets else "0",
        str(report_fd),
        str(-1 if cpu_counter_fd is None else cpu_counter_fd),
        str(round(settings.PROFILE_INTERVAL_MS * 1000) if limits.profile else 0),
        *landlock,
    ]


@functools.cache
def isolation() -> str:
    """The isolation this host gives snippets, probed once per process."""
    mode = settings.SANDBOX_MODE
    if mode == RLIMITS:
        return RLIMITS
    problem = ""
    if shutil.which("bwrap") is None:
        problem = "bubblewrap is not installed"
    else:
        account = sandbox_account()
        python = default_python()
        limits = Limits.from_settings(settings.EXECUTION_TIMEOUT)
        probe = [*bwrap_command(python, limits), python, "-I", "-c", "pass"]
        result = subprocess.run(
            probe,
            capture_output=True,
            timeout=30,
            env=sandbox_environment(python),
            **drop_privileges(account),
        )
        if result.returncode != 0:
            problem = result.stderr.decode(errors="replace").strip() or "bubblewrap failed"
    if not problem:
        return BUBBLEWRAP
    if mode == BUBBLEWRAP:
        raise SandboxUnavailable(f"SANDBOX_MODE=bubblewrap but {problem}")
    logger.warning("Sandbox falls back to resource limits + seccomp: %s", problem)
    return RLIMITS

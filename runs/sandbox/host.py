"""What this host offers a sandbox: the account, the interpreter, the GPU, which
isolation works here, and its processes."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
from django.conf import settings

from . import environments
from .contract import PR_SET_CHILD_SUBREAPER, SandboxUnavailable


def sandbox_account() -> tuple[int, int] | None:
    """(uid, gid) to run snippets as, or None to stay as we are (not root)."""
    if os.geteuid() != 0:
        return None
    return account_of(settings.SANDBOX_USER)


@functools.cache  # read for every run: /etc/passwd is not read again for each
def account_of(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SandboxUnavailable(
            f"Sandbox user {user!r} does not exist; create it "
            "with `make setup` (useradd --system) or set SANDBOX_USER."
        ) from None
    if entry.pw_uid == 0:
        raise SandboxUnavailable("SANDBOX_USER must not be root.")
    return entry.pw_uid, entry.pw_gid


def default_python() -> str:
    """The default environment's interpreter (runs.sandbox.environments)."""
    env = environments.default()
    if not env.built or not os.access(env.python, os.X_OK):
        raise SandboxUnavailable(
            f"The default environment {env.name} is not built here; build it with "
            "`python manage.py snippetenv`."
        )
    return env.python


def interpreter_candidates(declared: str) -> list[str]:
    """Where a declared interpreter may be, in order: the path itself; for a command,
    its place on the PATH, the server's own interpreter where it is that command
    (python3.12), and pyenv's installs of it (whose shims answer only for the
    versions pyenv has made global)."""
    if os.path.isabs(declared):
        found = [declared]
    else:
        found = [shutil.which(declared) or ""]
        server = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
        if declared in {"python{}.{}".format(*sys.version_info[:2]), os.path.basename(server)}:
            found.append(server)
        pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
        found += sorted(str(p) for p in pyenv.glob(f"*/bin/{declared}"))
    return [path for path in dict.fromkeys(found) if path and os.access(path, os.X_OK)]


def interpreter_library_dirs(python: str) -> tuple[str, ...]:
    """The interpreter's own shared library's folder, where it has one outside the
    system's: the sandbox has no /etc/ld.so.cache, and a copied interpreter's
    RUNPATH names the place it was copied from (runs.sandbox.build)."""
    prefix = Path(os.path.realpath(python)).parent.parent
    if any(prefix.is_relative_to(d) for d in SYSTEM_DIRS):
        return ()
    return (str(prefix / "lib"),) if any((prefix / "lib").glob("libpython*.so*")) else ()


# What snippets see of /usr: programs, shared libraries and shared data; not an
# operator's /usr/local or /usr/etc, nor the administrator's /usr/sbin.
SYSTEM_DIRS = ("/usr/bin", "/usr/lib", "/usr/lib64", "/usr/share")
# /sys as the CUDA driver and NVML read it: PCI devices, the driver's module, CPU and
# NUMA topology.
GPU_SYS_DIRS = ("/sys/bus/pci", "/sys/module/nvidia", "/sys/devices/system")


@functools.cache
def interpreter_dirs(python: str) -> tuple[str, ...]:
    """Directories to expose read-only for an environment's interpreter beyond SYSTEM_DIRS."""
    dirs = []
    path = Path(python)
    if not path.is_relative_to("/usr"):
        dirs.append(str(path.parent.parent))  # its virtual environment (or install)
    real = Path(os.path.realpath(python))
    if not any(real.is_relative_to(d) for d in SYSTEM_DIRS):
        # A base interpreter outside the system's (e.g. /usr/local in python images).
        prefix = real.parent.parent
        dirs += [str(prefix / "bin"), str(prefix / "lib")]
    return tuple(dict.fromkeys(dirs))


@functools.cache
def python_version(python: str) -> str:
    """The snippet interpreter's version ("3.11.2"), asked once per process."""
    try:
        result = subprocess.run(
            [python, "-I", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def gpu_devices() -> list[str]:
    """NVIDIA device nodes to hand to snippets (none unless SANDBOX_GPU allows it)."""
    if not settings.SANDBOX_GPU:
        return []
    return list(_nvidia_device_nodes())


@functools.cache  # read for every run: the driver's nodes stay for the process's life
def _nvidia_device_nodes() -> tuple[str, ...]:
    return tuple(sorted(str(p) for p in Path("/dev").glob("nvidia*") if p.is_char_device()))


@functools.cache
def gpu_library_dirs() -> tuple[str, ...]:
    """Where the NVIDIA driver's libraries live: the sandbox has no /etc/ld.so.cache,
    so they are bound in and named in LD_LIBRARY_PATH."""
    if not gpu_devices():
        return ()
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    dirs = []
    for line in listing.stdout.splitlines():
        name, _, path = line.partition("=>")
        if name.strip().startswith(("libcuda.so", "libnvidia-ml.so")) and "x86-64" in name:
            dirs.append(os.path.dirname(os.path.realpath(path.strip())))
    return tuple(dict.fromkeys(dirs))


def gpu_pci_dirs() -> list[str]:
    """The sysfs directories of the NVIDIA PCI devices (vendor 0x10de)."""
    found = []
    for device in Path("/sys/bus/pci/devices").glob("*"):
        with contextlib.suppress(OSError):
            if (device / "vendor").read_text().strip() == "0x10de":
                found.append(os.path.realpath(device))
    return found


def pid_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def children_of(pid: int) -> list[int]:
    """The children of process `pid`'s main thread."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except (OSError, ValueError):
        return []


def own_children() -> list[int]:
    """This process's children, from each of its threads' list (no /proc scan)."""
    found = []
    for children in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(pid) for pid in children.read_text().split()]
    return found


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is not available."""
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(444, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return max(version, 0)


def tasks_of_this_user() -> int:
    """Processes and threads of our own uid: what RLIMIT_NPROC counts."""
    uid = os.getuid()
    total = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        with contextlib.suppress(TypeError, AttributeError):
            if p.info["uids"].real == uid:
                total += p.info["num_threads"]
    return total


_subreaper_of: dict[str, int] = {}


def become_subreaper() -> None:
    # Orphans whose launcher was killed are re-parented to us instead of init, so the
    # sweep after a run finds and reaps them. Per process: fork does not inherit it.
    if _subreaper_of.get("pid") != os.getpid():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _subreaper_of["pid"] = os.getpid()

"""The first code that runs inside the sandbox, before the snippet.

runs.sandbox passes this file's source to the snippet interpreter with `python -I -c`,
so the sandbox user never needs to read the project's files. It runs with the
snippet's interpreter (which may be older than the server's), so it uses only the
standard library. Arguments: file-size limit, process limit, address-space limit
(0 = none), open-files limit, then the paths readable and the paths writable,
separated by ':' (both empty: no Landlock).

It reads the snippet from stdin, closes stdin, sets the resource limits, installs a
seccomp filter that refuses every socket but AF_UNIX (and io_uring, which could
bypass it), restricts file access with Landlock where asked, then runs the snippet
as `__main__` from ./main.py, so tracebacks and `__file__` look as they would under
`python main.py`.
"""

import ctypes
import errno
import os
import resource
import sys
import types

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE = 1
AF_UNIX = 1  # not imported from socket: that import alone costs ~5 ms
SECCOMP_FAILED = 125


def scmp_act_errno(code):
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def install_seccomp():
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    not_unix = ArgCmp(0, SCMP_CMP_NE, AF_UNIX, 0)
    rules = [(b"socket", scmp_act_errno(errno.EACCES), ctypes.byref(not_unix), 1)]
    for name in (b"io_uring_setup", b"io_uring_enter", b"io_uring_register"):
        rules.append((name, scmp_act_errno(errno.ENOSYS), None, 0))
    for name, action, comparison, count in rules:
        number = lib.seccomp_syscall_resolve_name(name)
        if number < 0 or lib.seccomp_rule_add_array(ctx, action, number, count, comparison):
            raise OSError("seccomp rule for %s failed" % name.decode())
    if lib.seccomp_load(ctx) != 0:
        raise OSError("seccomp_load failed")


SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE  # the rest apply to directories
FS_ALL_ABI1 = (1 << 13) - 1
FS_READ_ONLY = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


class PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def install_landlock(read_only, read_write):
    """Only these paths exist for the snippet's file operations from now on; where the
    kernel can (ABI 6+), it also may not signal, or reach abstract UNIX sockets of,
    processes outside the sandbox: without bubblewrap the server may share its uid."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, 1)  # ..._VERSION
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = (ctypes.c_uint64 * 3)(FS_ALL_ABI1, 0, scoped)
    size = 24 if scoped else 8
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    for paths, access in ((read_only, FS_READ_ONLY), (read_write, FS_ALL_ABI1)):
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            is_dir = os.path.isdir(path)
            rule = PathBeneath(access if is_dir else access & FS_FILE_RIGHTS, fd)
            if libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
                raise OSError(ctypes.get_errno(), "landlock_add_rule failed for " + path)
            os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)


def set_limits(file_bytes, processes, address_space, open_files):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    if processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    if address_space:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))


def run_snippet(source):
    path = os.path.join(os.getcwd(), "main.py")
    with open(path, "wb") as f:
        f.write(source)
    sys.argv = [path]
    sys.path.insert(0, os.getcwd())
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as exc:
        import traceback  # only on error: importing it costs ~4 ms

        # No frames: the error is in the snippet, not in this launcher.
        traceback.print_exception(type(exc), exc, None)
        return 1
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        import traceback

        # Drop this launcher's own frame so the traceback starts in main.py.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        return 1
    return 0


def die_with_parent():
    # The process that started us is bubblewrap (or the worker): if it dies, so do we,
    # and as PID 1 of the sandbox's namespace we take every process in it along.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)


def main():
    die_with_parent()
    source = sys.stdin.buffer.read()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
    file_bytes, processes, address_space, open_files = (int(a) for a in sys.argv[1:5])
    read_only, read_write = (a.split(os.pathsep) if a else [] for a in sys.argv[5:7])
    try:
        set_limits(file_bytes, processes, address_space, open_files)
        install_seccomp()
        if read_only or read_write:
            install_landlock(read_only, read_write)
    except Exception as exc:
        sys.stderr.write("sandbox: could not confine the snippet: %s\n" % exc)
        sys.exit(SECCOMP_FAILED)
    sys.exit(run_snippet(source))


main()

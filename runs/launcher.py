"""The first code that runs inside the sandbox, before the snippet.

runs.sandbox passes this file's source to the snippet interpreter with `python -I -c`,
so the sandbox user never needs to read the project's files. It runs with the
snippet's interpreter (which may be older than the server's), so it uses only the
standard library. Its arguments are built by `runs.sandbox.launcher_arguments`:
file-size limit, process limit, address-space limit (0 = none), open-files limit,
whether AF_UNIX sockets are allowed (1/0), the file descriptor to report on, the file
descriptor for the snippet's own measurements (sections and the line profile), the
profiler's interval in microseconds (0 = none), then the paths readable and the paths
writable, separated by ':' (both empty: no Landlock).

It sets the resource limits, waits for the worker's word (a newline on stdin) that it
is in the run's cgroup, reports the CPU its start-up took, and forks, all before the
code comes (a worker starts it ahead of the run, so that a run pays only for its own
code):
- the child confines itself (a seccomp filter refusing sockets other than AF_UNIX, or
  every socket, plus new namespaces and io_uring; Landlock where asked), opens the
  snippet's files (./main.py, standard input from /dev/null), then waits for the
  snippet on the pipe that was its stdin, reports the CPU it spent until then, closes
  the report descriptor, and runs the snippet as `__main__` from ./main.py, so
  tracebacks and `__file__` look as they would under `python main.py`; if it cannot
  confine itself it never runs the snippet;
- the parent stays behind as the tree's supervisor: a subreaper, so every process the
  snippet leaves behind, daemons included, becomes its child. It reaps them while the
  snippet runs, kills and reaps all of them when the snippet ends (or when the worker
  sends SIGUSR1 at a limit), and reports the snippet's wait status, the CPU time of
  the snippet's processes and its own on the report descriptor, which the snippet has
  closed and cannot reach.

Inside the snippet's process, `from playground import section` times named parts of
the code, and a CPU-time interval timer (SIGPROF) samples which line of main.py is
running in every thread. Both are written, when the snippet ends, on the measurements
descriptor: in the snippet's own process, so a snippet could forge them, and the worker
checks them against what the supervisor measured.
"""

# Not `signal`: it imports enum, ~4 ms of every run's start-up. Nor contextlib.
import _signal as signal
import _thread
import atexit  # built in: imported now, not at the snippet's end
import ctypes
import errno
import os
import resource
import sys
import time as time_module
import types

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE = 1
SCMP_CMP_MASKED_EQ = 7
AF_UNIX = 1  # not imported from socket: that import alone costs ~5 ms
CONFINEMENT_FAILED = 125
GO = b"\n"  # on stdin, before the code: the sandbox is confined, fork now
SNIPPET_FILE = "main.py"  # what tracebacks name; runs.models finds the line by it
# Every namespace flag of clone(2)/unshare(2): a new user namespace hands the snippet
# full capabilities over fresh kernel objects, the largest attack surface left.
NAMESPACE_FLAGS = (
    0x00000080,  # CLONE_NEWTIME
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


def scmp_act_errno(code):
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def build_seccomp(allow_unix_sockets):
    """The seccomp filter, built (before the code arrives) but not yet loaded."""
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
    eacces, eperm, enosys = (scmp_act_errno(e) for e in (errno.EACCES, errno.EPERM, errno.ENOSYS))
    # socketpair(2) stays: multiprocessing's pipes need it, and it reaches nobody.
    if allow_unix_sockets:
        rules = [(b"socket", eacces, [ArgCmp(0, SCMP_CMP_NE, AF_UNIX, 0)])]
    else:
        # Without a mount namespace the host's UNIX sockets are reachable by path, and
        # Landlock does not govern connect(): no socket at all.
        rules = [(b"socket", eacces, [])]
    # A snippet has no use for unshare(2) or setns(2); clone(2) is how threads and
    # processes start, so only its namespace flags are refused.
    rules += [(b"unshare", eperm, []), (b"setns", eperm, [])]
    for flag in NAMESPACE_FLAGS:
        rules.append((b"clone", eperm, [ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag)]))
    # clone3 passes its flags in memory, out of seccomp's sight: refused outright, and
    # the C library falls back to clone, which is checked above.
    for name in (b"clone3", b"io_uring_setup", b"io_uring_enter", b"io_uring_register"):
        rules.append((name, enosys, []))
    for name, action, comparisons in rules:
        number = lib.seccomp_syscall_resolve_name(name)
        array = (ArgCmp * max(len(comparisons), 1))(*comparisons)
        if number < 0 or lib.seccomp_rule_add_array(ctx, action, number, len(comparisons), array):
            raise OSError("seccomp rule for %s failed" % name.decode())
    return lib, ctx


def load_seccomp(lib, ctx):
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


def build_landlock(read_only, read_write):
    """A Landlock ruleset (built before the code arrives, applied by `restrict_landlock`):
    only these paths exist for the snippet's file operations; where the kernel can
    (ABI 6+), it also may not signal, or reach abstract UNIX sockets of, processes
    outside the sandbox: without bubblewrap the server may share its uid."""
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
    return ruleset


def restrict_landlock(ruleset):
    libc = ctypes.CDLL(None, use_errno=True)
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


# --- what the snippet measures of itself: sections and the line profile ---------------

SECTION_STATS = {}  # "outer/inner" -> [calls, wall seconds, CPU seconds]
SECTION_STACKS = {}  # thread -> the sections it is in: threads nest apart
# Line of main.py -> [samples, CPU seconds they stand for], shared among the threads.
LINE_SAMPLES = {}
PROFILE = {"handler": None, "interval": 0.0}
MEASUREMENTS = {"fd": None, "pid": None}
MAX_REPORTED_LINES = 500


class Section:
    """`with section("name"):` or `@section("name")`: calls, wall and CPU time."""

    def __init__(self, name):
        self.name = str(name).replace("/", "∕")[:100]
        self.entered = []

    def __enter__(self):
        stack = SECTION_STACKS.setdefault(_thread.get_ident(), [])
        path = stack[-1] + "/" + self.name if stack else self.name
        stack.append(path)
        SECTION_STATS.setdefault(path, [0, 0.0, 0.0])  # listed in the order first entered
        self.entered.append((path, time_module.perf_counter(), time_module.process_time()))
        return self

    def __exit__(self, *exc_info):
        path, wall, cpu = self.entered.pop()
        stats = SECTION_STATS[path]
        stats[0] += 1
        stats[1] += time_module.perf_counter() - wall
        stats[2] += time_module.process_time() - cpu
        stack = SECTION_STACKS.get(_thread.get_ident(), [])
        if stack and stack[-1] == path:
            stack.pop()
        return False

    def __call__(self, function):
        name = self.name

        def timed(*args, **kwargs):
            with Section(name):
                return function(*args, **kwargs)

        timed.__name__ = getattr(function, "__name__", "timed")
        timed.__qualname__ = getattr(function, "__qualname__", timed.__name__)
        timed.__doc__ = getattr(function, "__doc__", None)
        timed.__wrapped__ = function
        return timed


def install_section_module():
    module = types.ModuleType("playground", "Measure named parts of your snippet.")
    module.section = Section
    sys.modules["playground"] = module


def start_profile(interval, path):
    """Sample, every `interval` seconds of the process's CPU time, the line of main.py
    each thread is on (time inside a library is the line that called it). Each sample
    weighs the CPU time since the previous one: while C code runs, signals wait and
    merge into one, and that one sample stands for all of it."""
    last = [time_module.process_time()]

    def sample(signum, frame):
        now = time_module.process_time()
        weight, last[0] = now - last[0], now
        found = []
        for current in sys._current_frames().values():
            while current is not None and current.f_code.co_filename != path:
                current = current.f_back
            if current is not None:
                found.append(current.f_lineno)
        for line in found:
            counts = LINE_SAMPLES.setdefault(line, [0.0, 0.0])
            counts[0] += 1.0 / len(found)
            counts[1] += weight / len(found)

    PROFILE.update(handler=sample, interval=interval)
    signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, interval, interval)


def report_measurements(fd):
    """Sections and line samples, one per line, tab-separated (no json: its import
    would cost every run). Never blocks: a full pipe drops them."""
    lines = []
    if PROFILE["handler"] is not None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        if signal.getsignal(signal.SIGPROF) is not PROFILE["handler"]:
            lines.append("P\tstopped")
        top = sorted(LINE_SAMPLES.items(), key=lambda item: -item[1][1])[:MAX_REPORTED_LINES]
        lines += ["L\t%d\t%.3f\t%.6f" % (line, n, cpu) for line, (n, cpu) in top]
        lines.append("I\t%.6f" % PROFILE["interval"])
    for path, (calls, wall, cpu) in list(SECTION_STATS.items())[:MAX_REPORTED_LINES]:
        if not calls:
            continue  # entered, never left (the snippet ended inside it)
        name = path.replace("\t", " ").replace("\n", " ")
        lines.append("S\t%s\t%d\t%.6f\t%.6f" % (name, calls, wall, cpu))
    if lines:
        try:  # noqa: SIM105 - contextlib's import would cost every run
            os.write(fd, ("\n".join(lines) + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
    os.close(fd)


def prepare_snippet_files():
    """Before the code comes: standard input from /dev/null, and ./main.py open for
    the code, so that a run does not pay for them (~0.5 ms together on a small VM,
    most of it the first touches of pages shared with the supervisor since the fork).
    Returns main.py, open, and a descriptor of the pipe the code comes on."""
    code = os.dup(0)
    read_nothing()
    sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
    return open(SNIPPET_FILE, "wb"), code


def read_code(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def run_snippet(source, main_file):
    path = os.path.join(os.getcwd(), SNIPPET_FILE)
    with main_file:
        main_file.write(source)
    sys.argv = [path]
    sys.path.insert(0, os.getcwd())
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as exc:
        import traceback  # only on error: importing it costs ~4 ms

        # No frames: the error is in the snippet, not in this launcher.
        traceback.print_exception(type(exc), exc, None)
        return 1
    install_section_module()
    if PROFILE["interval"]:
        start_profile(PROFILE["interval"], path)
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


PR_SET_CHILD_SUBREAPER = 36


def die_with_parent(libc):
    # If the process that started us dies, so do we: for the supervisor that is
    # bubblewrap (or the worker), for the snippet the supervisor.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def children():
    pid = os.getpid()
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class Stop(Exception):
    pass


def stop(signum, frame):
    raise Stop()


def supervise(snippet, report):
    """Wait for the snippet, then end every process it left; report on `report`."""
    status = None
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        while status is None:
            pid, wait_status = os.wait()  # reaps orphans re-parented to us, too
            if pid == snippet:
                status = wait_status
    except (Stop, ChildProcessError):
        pass
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    # Kill what is left until nothing is: a process killed here hands its own children
    # to us, and the next round kills them.
    while True:
        for pid in children():
            try:  # noqa: SIM105
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid == snippet and status is None:
            status = wait_status
    tree = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    if status is None:
        status = signal.SIGKILL  # stopped by the worker before it ended
    # The snippet's status, its processes' CPU, and ours (start-up, fork, reaping): the
    # supervisor is the sandbox's machinery, not the snippet's work.
    os.write(
        report,
        b"%d %.6f %.6f\n" % (status, tree.ru_utime + tree.ru_stime, own.ru_utime + own.ru_stime),
    )
    os.close(report)
    os._exit(0)


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    die_with_parent(libc)
    file_bytes, processes, address_space, open_files, allow_unix, report, measurements = (
        int(a) for a in sys.argv[1:8]
    )
    PROFILE["interval"] = int(sys.argv[8]) / 1e6
    read_only, read_write = (a.split(os.pathsep) if a else [] for a in sys.argv[9:11])
    try:
        # Built now, applied in the snippet's process.
        seccomp = build_seccomp(allow_unix)
        ruleset = build_landlock(read_only, read_write) if read_only or read_write else None
        set_limits(file_bytes, processes, address_space, open_files)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER failed")
        # A process's first compile() sets the parser up (~1.3 ms): done here, as
        # start-up, so that the snippet's process inherits it ready.
        exec(compile("pass", SNIPPET_FILE, "exec"), {})
        signal.signal(signal.SIGUSR1, stop)  # the worker's "time is up"
        # Held back until the supervisor waits: a limit can be hit before fork returns.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        # The worker moves us into the run's cgroup, then sends one byte: forking
        # before that would leave the snippet's process outside the cgroup's limits.
        if os.read(0, 1) != GO:
            raise OSError(errno.EPIPE, "the worker did not confine the sandbox")
        # All of this is start-up, reported on the report descriptor (the snippet
        # never sees it) and not charged to the run.
        start_up = resource.getrusage(resource.RUSAGE_SELF)
        os.write(report, b"startup %.6f\n" % (start_up.ru_utime + start_up.ru_stime))
        # The snippet's process is forked and confined before the code comes, so that
        # a run pays only for its own code.
        snippet = os.fork()
    except Exception as exc:
        sys.stderr.write("sandbox: could not confine the snippet: %s\n" % exc)
        sys.exit(CONFINEMENT_FAILED)
    if snippet:
        read_nothing()  # the code is the snippet's process's to read
        if ruleset is not None:
            os.close(ruleset)
        os.close(measurements)
        supervise(snippet, report)
    try:
        MEASUREMENTS.update(fd=measurements, pid=os.getpid())
        os.set_inheritable(measurements, False)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        die_with_parent(libc)
        load_seccomp(*seccomp)
        if ruleset is not None:
            restrict_landlock(ruleset)
        main_file, code = prepare_snippet_files()
    except Exception as exc:
        sys.stderr.write("sandbox: could not confine the snippet: %s\n" % exc)
        sys.stderr.flush()
        os._exit(CONFINEMENT_FAILED)
    # A worker starts us ahead of the run: we wait here, confined, until the code
    # arrives. What this process spent until then is start-up as well: the supervisor
    # counts it with the snippet's CPU, so it is reported (then the descriptor closed,
    # before any of the snippet's code runs) and taken off.
    source = read_code(code)
    prepared = resource.getrusage(resource.RUSAGE_SELF)
    os.write(report, b"prepared %.6f\n" % (prepared.ru_utime + prepared.ru_stime))
    os.close(report)
    try:
        status = run_snippet(source, main_file)
    except SystemExit as exc:
        status = exit_status(exc)
    finish(status)


def read_nothing():
    """Standard input from /dev/null: a snippet reading it gets end of file."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def exit_status(exc):
    """What the interpreter would exit with for this SystemExit."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    sys.stderr.write("%s\n" % (exc.code,))
    return 1


def finish(status):
    """Exit as the interpreter would, less the teardown of every object: in a forked
    process that teardown copies each page it touches, ~4 ms of CPU charged to every
    run. What a snippet can observe stays: its threads are waited for, its atexit
    functions run, its output is flushed."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:  # noqa: SIM105
            stream.flush()
        except Exception:  # noqa: S110 - a snippet's broken stream must not stop the exit
            pass
    # Only the snippet's own process reports: a child it forked ends here too.
    if MEASUREMENTS["fd"] is not None and MEASUREMENTS["pid"] == os.getpid():
        report_measurements(MEASUREMENTS["fd"])
    os._exit(status)


# `python -c` runs this as __main__; the server imports it only for its constants.
if __name__ == "__main__":
    main()

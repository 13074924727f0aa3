"""The first code that runs inside the sandbox, before the snippet.

One file over the usual size on purpose: runs.sandbox passes this file's source to the
snippet interpreter with `python -I -c`, so that the sandbox user never needs to read
the project's files, and everything the sandbox's processes run must be in it. It runs
with the snippet's interpreter (which may be older than the server's), so it uses only
the standard library. Its arguments are built by `runs.sandbox.command.launcher_arguments`:
file-size limit, process limit, address-space limit (0 = none), open-files limit,
whether AF_UNIX sockets are allowed (1/0), the file descriptor to report on, a file
descriptor open on the run's cgroup CPU counter (-1: no cgroup counts the CPU time of
every process of the run), the profiler's interval in microseconds (0 = none), then the
paths readable and the paths writable, separated by ':' (both empty: no Landlock).

It sets the resource limits, waits for the worker's word (a newline on stdin) that it
is in the run's cgroup, and forks, all before the code comes (a worker starts it ahead
of the run, so that a run pays only for its own code):
- the child confines itself (a seccomp filter refusing sockets other than AF_UNIX, or
  every socket, plus new namespaces and io_uring, and, where no cgroup counts the CPU
  time, any handling of SIGCHLD; Landlock where asked), opens the snippet's files
  (./main.py, standard input from /dev/null), says it is ready, then waits for the
  snippet on the pipe that was its stdin (and makes that pipe its standard input where
  the run has some: it follows the code, `frame`), reports the CPU it spent until then, closes
  the report descriptor, and runs the snippet as `__main__` from ./main.py, so
  tracebacks and `__file__` look as they would under `python main.py`; if it cannot
  confine itself it never runs the snippet;
- the parent stays behind as the tree's supervisor: a subreaper, so every process the
  snippet leaves behind, daemons included, becomes its child. It reaps them while the
  snippet runs, kills and reaps all of them when the snippet ends (or when the worker
  sends SIGUSR1 at a limit), and reports on the report descriptor, which the snippet
  has closed and cannot reach: the snippet's wait status, the CPU time of the
  snippet's processes and its own, and what it measured of the snippet (`Measure`).

The supervisor measures for the snippet, which only says *when*: `from playground
import section` sends each section's entry and exit to the supervisor and waits for it
to read the run's CPU time (`RunClock`: the cgroup's counter, or the supervisor's own
count of every process of the run) and the time, so that a section counts everything
the run did while it was open, its threads, children and the supervisor's own work
included; and every `interval` of the snippet process's CPU time a timer makes
faulthandler write the main thread's stack, at that instant, to a pipe the supervisor
reads, weighs by that process's clock and files under the main thread's innermost
section. The stacks come from the snippet's process, so the line profile is
self-reported (and labelled so); the figures of sections are not: a snippet can change
nothing of them but the moments. Both channels are bounded: past MAX_EVENTS section
events, or samples the timer cannot have written, the supervisor stops reading that
channel and the run says so.
"""

# Not `signal`: it imports enum, ~4 ms of every run's start-up. Nor contextlib.
import _signal as signal
import _thread
import atexit  # built in: imported now, not at the snippet's end
import ctypes
import errno
import faulthandler  # built in
import fcntl  # built in
import os
import resource
import select  # built in
import sys
import time as time_module
import types

SCMP_ACT_ALLOW = 0x7FFF0000
# Linux's value: PyPy's os module does not name it.
O_PATH = getattr(os, "O_PATH", 0o10000000)
SCMP_CMP_NE = 1
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
AF_UNIX = 1  # not imported from socket: that import alone costs ~5 ms
SIGCHLD = 17  # the same on every architecture Linux runs this on
CONFINEMENT_FAILED = 125
GO = b"\n"  # on stdin, before the code: the sandbox is confined, fork now
FRAME_HEADER_BYTES = 22  # "<code size> <input size>\n", ten digits each (`frame`)
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

# The report, one line each, read by runs.sandbox: "startup <cpu>" (the supervisor,
# once ready), "ready" (the snippet's process, waiting for the code), "prepared <cpu>"
# (once the code came), then at the end the supervisor's measurements and, last,
# "end <wait status> <CPU of the snippet's processes> <its own CPU>".
STARTUP, READY, PREPARED, END = "startup", "ready", "prepared", "end"
# The supervisor's measurements: "section\t<calls>\t<wall>\t<cpu>\t<name>",
# "line\t<number>\t<samples>\t<cpu>", "last\t<line>" (where the snippet was when it
# ended or was stopped) and "note\t<what went wrong>".
SECTION, LINE, LAST_LINE, NOTE = "section", "line", "last", "note"
PROFILE_STOPPED = "profile-stopped"  # samples stopped while the CPU time went on
SECTIONS_UNSYNCHRONIZED = "sections-unsynchronized"  # events sent without waiting
PROFILE_UNSUPPORTED = "profile-unsupported"  # this interpreter's stacks lack exact lines
PROFILE_UNSAFE = "profile-unsafe"  # this interpreter's faulthandler can crash a sample
PROFILE_CRASHED = "profile-crashed"  # the process died of a fault while a sample was written
# The faults a sampler reading a frame that is not there yet dies of.
SAMPLER_FAULTS = (signal.SIGSEGV, signal.SIGBUS)
# CPython's faulthandler crashes when a trampoline frame is on top of the stack (a
# sample taken while C code calls back into Python: importing, say) before 3.12.8 and
# 3.13.1 (CPython gh-123967): sampling there would change the run's outcome.
PROFILE_UNSAFE_VERSIONS = (((3, 12, 0), (3, 12, 8)), ((3, 13, 0), (3, 13, 1)))


def profile_off(implementation, version):
    """Why an interpreter gets no line profile ("": it does). Only CPython's faulthandler
    names the exact line of each frame: PyPy's writes "approximate line numbers" (a
    function's first line), which would blame the wrong one."""
    if implementation != "cpython":
        return PROFILE_UNSUPPORTED
    if any(low <= tuple(version[:3]) < high for low, high in PROFILE_UNSAFE_VERSIONS):
        return PROFILE_UNSAFE
    return ""


PROFILE_OFF = profile_off(sys.implementation.name, sys.version_info)
PROFILES = not PROFILE_OFF


UNNEEDED_SYSCALLS = (
    b"userfaultfd",
    b"perf_event_open",
    b"bpf",
    b"keyctl",
    b"add_key",
    b"request_key",
    b"kexec_load",
    b"kexec_file_load",
    b"init_module",
    b"finit_module",
    b"delete_module",
    b"open_by_handle_at",
    b"mount",
    b"umount2",
    b"pivot_root",
    b"swapon",
    b"swapoff",
    b"reboot",
    b"acct",
    b"syslog",
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


def build_seccomp(allow_unix_sockets, cpu_accounted):
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
    # Kernel interfaces a snippet has no use for, each a known source of kernel exploits
    # (userfaultfd stalls the kernel on a page fault; perf_event_open and bpf reach
    # deep into it; the keyring is per user, shared with other runs).
    for name in UNNEEDED_SYSCALLS:
        rules.append((name, eperm, []))
    if not cpu_accounted:
        # A process that ignores SIGCHLD (or sets SA_NOCLDWAIT) has its children
        # reaped by the kernel, which then discards their CPU time: without a cgroup
        # counting every process, the supervisor's count is the figure, so no
        # disposition of SIGCHLD may be set (seccomp cannot see which one).
        rules.append(
            (
                b"rt_sigaction",
                eperm,
                [ArgCmp(0, SCMP_CMP_EQ, SIGCHLD, 0), ArgCmp(1, SCMP_CMP_NE, 0, 0)],
            )
        )
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
                fd = os.open(path, O_PATH | os.O_CLOEXEC)
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


# --- the snippet's side of measuring: it says when, the supervisor measures ----------

# The pipes to the supervisor, in the snippet's process (and only there: a process it
# forks has another CPU clock, and its sections are not measured).
CHANNELS = {"events": None, "acks": None, "profile": None, "pid": None}
ACK = b"."
MAX_NAME = 100


class Section:
    """`with section("name"):` or `@section("name")`: the supervisor reads the CPU
    time and the time of the snippet's process when it is entered and left."""

    def __init__(self, name):
        name = str(name).replace("/", "∕").replace("\t", " ").replace("\n", " ")
        self.name = name[:MAX_NAME]

    def __enter__(self):
        tell_supervisor(">%d\t%s\n" % (_thread.get_ident(), self.name))
        return self

    def __exit__(self, *exc_info):
        tell_supervisor("<%d\n" % _thread.get_ident())
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


def tell_supervisor(event):
    """Send a section's entry or exit and wait until the supervisor has read the
    clocks: its figures then stand for exactly what ran in between. Measuring never
    fails the snippet: if the supervisor cannot hear, sections stop."""
    if CHANNELS["pid"] != os.getpid():
        return
    try:
        os.write(CHANNELS["events"], event.encode("utf-8", "replace"))
        if os.read(CHANNELS["acks"], 1) != ACK:
            raise OSError(errno.EPIPE, "the supervisor did not answer")
    except (OSError, TypeError, ValueError):
        CHANNELS["pid"] = None


def install_section_module():
    module = types.ModuleType("playground", "Measure named parts of your snippet.")
    module.section = Section
    sys.modules["playground"] = module


CLOCK_PROCESS_CPUTIME_ID = 2
SIGEV_THREAD_ID = 4


class SigEvent(ctypes.Structure):
    _fields_ = [
        ("value", ctypes.c_void_p),
        ("signo", ctypes.c_int),
        ("notify", ctypes.c_int),
        ("thread_id", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


class TimeSpec(ctypes.Structure):
    _fields_ = [("seconds", ctypes.c_long), ("nanoseconds", ctypes.c_long)]


class ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", TimeSpec), ("value", TimeSpec)]


def prepare_profile(profile_fd, interval):
    """faulthandler writes the stack of the thread a SIGPROF lands on, at that instant,
    from C: even in the middle of a long C call (numpy's `a @ b`, `sorted()`), whose
    line is the one on the stack. A Python handler would run only after the call, on
    the next line. Also used once when the worker stops the snippet at a limit.

    The timer is made now, before the code comes, and armed by `start_profile`: a timer
    on the CPU time of the whole process (every thread, numpy's own included) whose
    signal always goes to the main thread, where the snippet's code waits for what its
    threads do: the main thread's line is charged with it."""
    os.set_blocking(profile_fd, False)  # a full pipe drops samples; the snippet runs on
    faulthandler.register(signal.SIGPROF, file=profile_fd, all_threads=False, chain=False)
    if not interval:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    event = SigEvent(None, signal.SIGPROF, SIGEV_THREAD_ID, os.getpid())
    timer = ctypes.c_void_p()
    if libc.timer_create(CLOCK_PROCESS_CPUTIME_ID, ctypes.byref(event), ctypes.byref(timer)):
        return  # no profile: measuring never fails the snippet
    nanoseconds = int(interval * 1e9)
    every = TimeSpec(nanoseconds // 1000000000, nanoseconds % 1000000000)
    PROFILE.update(arm=libc.timer_settime, timer=timer, every=ITimerSpec(every, every))


PROFILE = {"arm": None, "timer": None, "every": None}


def start_profile():
    """Arm the profile's timer, as the snippet's code starts (one call)."""
    if PROFILE["arm"] is not None:
        PROFILE["arm"](PROFILE["timer"], 0, ctypes.byref(PROFILE["every"]), None)


# --- the supervisor's side: sections and the line profile, measured -------------------

PROFILE_HEADER = "Stack (most recent call first):"  # how faulthandler starts a stack
# The profile pipe is read at most this often: a sample is a few short writes, and
# waking for each would take CPU from the snippet.
PROFILE_BATCH_SECONDS = 0.02
PIPE_BYTES = 1 << 20  # the most an unprivileged process may give a pipe
# More section events (or unread answers) than this at once were not waited for: a
# snippet following the protocol has at most one in flight per thread.
MAX_EVENTS_AT_ONCE = 64
# Section events measured in one run: each costs the run a round trip through the
# supervisor (charged to it, as all the supervisor does); past this many, sections stop.
MAX_EVENTS = 100_000
# The profile's pipe carries what the timer writes: at most one stack per interval of
# the snippet process's CPU time (and one when it is stopped). More stacks than that,
# with this margin, or more bytes than their largest size, were written by the snippet.
PROFILE_SLACK_SAMPLES = 64
MAX_SAMPLE_BYTES = 64 * 1024  # faulthandler: 100 frames of at most ~530 bytes each
FIONREAD = 0x541B  # bytes waiting in a pipe, asked of either end
MAX_SECTIONS = 100
MAX_DEPTH = 50
MAX_REPORTED_LINES = 500
MAX_LINES = 1 << 16  # distinct lines kept: the stacks are the snippet's to forge
# A final sample, asked for when the worker stops the snippet, may take this long.
FINAL_SAMPLE_SECONDS = 0.05
SECTIONS_FLOODED = "sections-flooded"  # more than MAX_EVENTS section events
PROFILE_FLOODED = "profile-flooded"  # more on the profile's pipe than the timer writes
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def counter_seconds(raw):
    """A cgroup's CPU counter: v1's cpuacct.usage (nanoseconds), or v2's cpu.stat
    (its usage_usec line, in microseconds)."""
    if raw[:11] == b"usage_usec ":
        return int(raw[11 : raw.index(b"\n")]) / 1e6
    return int(raw) / 1e9


def process_cpu(pid):
    """A live (or not yet reaped) process's CPU time: its own threads' clock, exact,
    and what it has reaped of its children (in clock ticks: /proc's precision)."""
    try:
        own = time_module.clock_gettime(((~pid) << 3) | 2)  # its CPUCLOCK_SCHED
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return own + (int(fields[13]) + int(fields[14])) / CLOCK_TICKS  # cutime, cstime
    except (OSError, IndexError, ValueError):
        return 0.0  # gone meanwhile: reaped, its time is its reaper's now


def descendants(pid):
    """Every live process below `pid` (each thread lists the children it started)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            threads = os.listdir("/proc/%d/task" % parent)
        except OSError:
            continue
        for thread in threads:
            try:
                with open("/proc/%d/task/%s/children" % (parent, thread)) as f:
                    kids = [int(p) for p in f.read().split()]
            except OSError:
                continue
            found += kids
            stack += kids
    return found


class RunClock:
    """The CPU time of the whole run so far, read where the snippet cannot steer it:
    the run's cgroup counter (every process ever in the cgroup, this supervisor
    included), or, where no cgroup counts it, the supervisor's own count: itself, what
    it has reaped, and every live process below it."""

    def __init__(self, counter_fd):
        self.counter = counter_fd if counter_fd >= 0 else None

    def seconds(self):
        if self.counter is not None:
            try:
                return counter_seconds(os.pread(self.counter, 4096, 0))
            except (OSError, ValueError):
                return None  # unreadable now: this moment is not measured
        own = resource.getrusage(resource.RUSAGE_SELF)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
        for pid in descendants(os.getpid()):
            total += process_cpu(pid)
        return total


class Measure:
    """What the supervisor measures of the run: the run's CPU time (`RunClock`) and
    the time at each section event, and each profile sample weighed by the snippet
    process's CPU clock (of every thread, read with clock_getcpuclockid's id) and filed
    under the section its main thread was in."""

    def __init__(self, pid, main_path, interval, run_clock):
        self.clock = ((~pid) << 3) | 2  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
        self.run_clock = run_clock
        self.interval = interval
        # The snippet's main thread has the id of ours: fork copies the calling thread.
        self.main_thread = str(_thread.get_ident())
        self.context = ""  # the main thread's innermost measured section ("": none)
        self.sections = {}  # "outer/inner" -> [calls, wall, cpu], in order first entered
        self.stacks = {}  # thread -> [(path, wall, cpu)] of the sections it is in
        self.unsynchronized = False
        self.flooded = False  # sections stopped after MAX_EVENTS
        self.event_count = 0
        self.events = b""
        self.marker = 'File "%s", line ' % main_path
        self.lines = {}  # (section, line) -> [samples, cpu]
        self.profile = ""
        self.profile_bytes = 0
        self.profile_flooded = False
        self.pending = None  # a sample's weight, until its line is read
        self.samples = 0
        self.sample_open = False  # the last stack's header came, none of its lines yet
        # The process's clock when measuring began, and at the last samples read.
        self.started_cpu = self.sampled_cpu = self.cpu() or 0.0
        self.final_cpu = None
        self.last_line = None

    def cpu(self):
        try:
            return time_module.clock_gettime(self.clock)
        except OSError:
            return None  # reaped

    @property
    def events_closed(self):
        """Whether section events are no longer measured (read and dropped)."""
        return self.unsynchronized or self.flooded

    def read_events(self, data, acks):
        """Section entries and exits, each at this moment's clocks; one answer each.
        Once the snippet is seen sending them without waiting, or past MAX_EVENTS, they
        are read and dropped (the run says why), and the answers end: a thread still
        waiting for one reads the end of the pipe and goes on without sections."""
        if self.events_closed:
            return
        wall, cpu = time_module.monotonic(), self.run_clock.seconds()
        lines = (self.events + data).split(b"\n")
        self.events = lines.pop()[:4096]
        self.event_count += len(lines)
        if len(lines) > MAX_EVENTS_AT_ONCE:
            self.unsynchronized = True
        elif self.event_count > MAX_EVENTS:
            self.flooded = True
        else:
            for line in lines:
                if cpu is not None:
                    self.event(line.decode("utf-8", "replace"), wall, cpu)
            try:
                os.write(acks, ACK * len(lines))
                # A snippet that waits for its answers leaves one unread per thread at
                # most; more piling up means events sent past the protocol.
                unread = fcntl.ioctl(acks, FIONREAD, bytes(4))
                self.unsynchronized = int.from_bytes(unread, sys.byteorder) > MAX_EVENTS_AT_ONCE
            except OSError:
                self.unsynchronized = True  # answers piled up unread: nobody waited
        if self.events_closed:
            os.close(acks)

    def event(self, line, wall, cpu):
        thread, _, name = line[1:].partition("\t")
        name = name.replace("/", "∕")[:MAX_NAME]
        if line[:1] == ">":
            if thread not in self.stacks and len(self.stacks) >= MAX_SECTIONS:
                return
            stack = self.stacks.setdefault(thread, [])
            parent = stack[-1][0] if stack else ""
            path = parent + "/" + name if parent else name
            if (
                parent is None  # inside one not counted
                or len(stack) >= MAX_DEPTH
                or (path not in self.sections and len(self.sections) >= MAX_SECTIONS)
            ):
                path = None  # kept on the stack, so that its exit matches, not counted
            elif path not in self.sections:
                self.sections[path] = [0, 0.0, 0.0]
            stack.append((path, wall, cpu))
        elif line[:1] == "<" and self.stacks.get(thread):
            path, entered_wall, entered_cpu = self.stacks[thread].pop()
            if path is not None:
                figures = self.sections[path]
                figures[0] += 1
                figures[1] += wall - entered_wall
                figures[2] += cpu - entered_cpu
        if thread == self.main_thread:
            measured = [path for path, _, _ in self.stacks.get(thread, ()) if path is not None]
            self.context = measured[-1] if measured else ""

    def read_profile(self, data):
        """faulthandler's stacks: each sample's line is the innermost frame of main.py,
        filed under the main thread's section; the samples read together share the CPU
        time since the last ones. More than the timer can have written is dropped,
        and the profile with it."""
        now = self.cpu()
        if now is None:
            now = self.final_cpu  # the process has ended: its last reading
        self.profile_bytes += len(data)
        if self.profile_flooded or self.profile_overflows(now):
            self.profile_flooded, self.lines, self.last_line = True, {}, None
            return
        lines = (self.profile + data.decode("ascii", "replace")).split("\n")
        self.profile = lines.pop()[:65536]
        samples = sum(1 for line in lines if line.startswith(PROFILE_HEADER))
        weight = 0.0
        if samples and now is not None:
            weight, self.sampled_cpu = (now - self.sampled_cpu) / samples, now
        for line in lines:
            self.sample_open = line.startswith(PROFILE_HEADER)
            if self.sample_open:
                self.pending = weight
                self.samples += 1
            elif self.pending is not None and line.lstrip().startswith(self.marker):
                digits = line.lstrip()[len(self.marker) :].split(" ", 1)[0]
                key = (self.context, int(digits)) if digits.isdigit() else None
                if key and (key in self.lines or len(self.lines) < MAX_LINES):
                    counts = self.lines.setdefault(key, [0, 0.0])
                    counts[0] += 1
                    counts[1] += self.pending
                    self.last_line = key[1]
                self.pending = None

    def sampler_crashed(self, status):
        """Whether the snippet's process died of a fault in the middle of writing a
        sample: in the sampler, not in the snippet's code, which a signal handler
        interrupts and never the reverse. CPython before 3.13 makes a frame the thread's
        current one in two steps (`tstate->cframe`, then its `current_frame`) each time
        C code calls into Python; faulthandler, sampling in between, follows a pointer
        not yet set."""
        cut = self.sample_open or bool(self.profile)  # a header alone, or half a line
        return cut and os.WIFSIGNALED(status) and os.WTERMSIG(status) in SAMPLER_FAULTS

    def profile_overflows(self, now):
        """Whether the pipe has held more than the timer can have written by `now`."""
        spent = max((now or self.sampled_cpu) - self.started_cpu, 0.0)
        most = PROFILE_SLACK_SAMPLES + (spent / self.interval if self.interval else 0)
        return self.samples > most or self.profile_bytes > most * MAX_SAMPLE_BYTES

    def profile_stopped(self):
        """Whether the samples stopped while the process went on using CPU time (the
        snippet took SIGPROF, or ended the timer)."""
        if not self.interval or self.final_cpu is None or self.profile_flooded:
            return False
        lag = self.final_cpu - self.sampled_cpu
        return lag > max(20 * self.interval, 0.1) and lag > 0.25 * self.final_cpu

    def report(self, status):
        lines = []
        for path, (calls, wall, cpu) in self.sections.items():
            if calls:  # entered, never left (the snippet ended inside it): not reported
                lines.append("%s\t%d\t%.6f\t%.6f\t%s" % (SECTION, calls, wall, cpu, path))
        top = sorted(self.lines.items(), key=lambda item: -item[1][1])[:MAX_REPORTED_LINES]
        lines += [
            "%s\t%d\t%d\t%.6f\t%s" % (LINE, n, count, cpu, context)
            for (context, n), (count, cpu) in top
        ]
        if self.last_line is not None:
            lines.append("%s\t%d" % (LAST_LINE, self.last_line))
        notes = [
            (self.profile_stopped(), PROFILE_STOPPED),
            (PROFILE_OFF and sys.argv[8] != "0", PROFILE_OFF),  # a profile was asked for
            (self.unsynchronized, SECTIONS_UNSYNCHRONIZED),
            (self.flooded, SECTIONS_FLOODED),
            (self.profile_flooded, PROFILE_FLOODED),
            (self.sampler_crashed(status), PROFILE_CRASHED),
        ]
        lines += ["%s\t%s" % (NOTE, note) for wanted, note in notes if wanted]
        return lines


def read_ready(fd):
    """What a non-blocking pipe holds now (b"" at its end, None if empty)."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


def write_all(fd, data):
    """Write everything on a non-blocking pipe the worker reads (it may be full)."""
    deadline = time_module.monotonic() + 5
    while data and time_module.monotonic() < deadline:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            select.select([], [fd], [], 0.05)
        except OSError:
            return


# --- the snippet: its files, its code, its end ----------------------------------------


def prepare_snippet_files():
    """Before the code comes: standard input from /dev/null, and ./main.py open for
    the code, so that a run does not pay for them (~0.5 ms together on a small VM,
    most of it the first touches of pages shared with the supervisor since the fork).
    Returns main.py, open, and a descriptor of the pipe the code comes on."""
    code = os.dup(0)
    read_nothing()
    sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
    return open(SNIPPET_FILE, "wb"), code


def frame(source, stdin=b""):
    """What the worker sends once the sandbox is ready: a header with both sizes, the
    code, then the snippet's standard input (read by `read_code`)."""
    return b"%010d %010d\n" % (len(source), len(stdin)) + source + stdin


def read_exactly(fd, size):
    chunks, left = [], size
    while left and (chunk := os.read(fd, min(left, 65536))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_code(fd):
    """The code from the worker's pipe (`frame`); the standard input that follows it
    stays in the pipe, which becomes the snippet's standard input (where there is
    none, /dev/null stays)."""
    header = read_exactly(fd, FRAME_HEADER_BYTES)
    try:
        code_size, input_size = int(header[:10]), int(header[11:21])
    except ValueError:  # the worker went before it sent the code
        code_size = input_size = 0
    source = read_exactly(fd, code_size)
    if input_size:
        os.dup2(fd, 0)
    os.close(fd)
    return source


def compile_snippet(source, main_file):
    """The snippet compiled as ./main.py and its `__main__` namespace, or None after a
    syntax error (printed, as Python prints it)."""
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
        return None
    install_section_module()
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    return code, main.__dict__


def print_snippet_exception(exc):
    import traceback

    # Drop this launcher's own frame so the traceback starts in main.py.
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)


PR_SET_CHILD_SUBREAPER = 36
WALL = 0x40000000  # __WALL: children whatever signal they were cloned to send at exit


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


def woken(signum, frame):
    pass  # SIGCHLD: the wake-up descriptor has a byte now


def reap(snippet, measure):
    """Reap what has ended; the snippet's wait status once it has."""
    status = None
    while True:
        # The snippet's CPU clock still reads while it is a zombie, not once reaped.
        cpu = measure.cpu()
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG | WALL)
        except ChildProcessError:
            return status
        if not pid:
            return status
        if pid == snippet:
            status, measure.final_cpu = wait_status, cpu


class Supervisor:
    """The parent of the snippet's process, in the sandbox: see `supervise`."""

    def __init__(self, snippet, report, events, acks, profile, interval, libc, run_clock):
        self.snippet, self.report, self.libc = snippet, report, libc
        self.events, self.acks, self.profile = events, acks, profile
        main_path = os.path.join(os.getcwd(), SNIPPET_FILE)
        self.measure = Measure(snippet, main_path, interval, run_clock)
        self.wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Quietly: a warning would go to the run's standard error.
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        signal.signal(SIGCHLD, woken)
        os.set_blocking(acks, False)  # answers nobody reads must not stop us
        for fd in (events, profile):
            os.set_blocking(fd, False)
        self.poller = select.poll()
        for fd in (self.wake_read, events, profile):
            self.poller.register(fd, select.POLLIN)
        self.profile_due = 0.0

    def watch(self):
        """Until the snippet's process ends: reap, and measure what it tells."""
        while True:
            status = reap(self.snippet, self.measure)
            if status is not None:
                return status
            timeout = -1
            if self.profile_due:
                timeout = max(self.profile_due - time_module.monotonic(), 0) * 1000
                if not timeout:
                    self.poller.register(self.profile, select.POLLIN)
                    self.profile_due, timeout = 0.0, -1
            for fd, _ in self.poller.poll(timeout):
                if fd == self.wake_read:
                    read_ready(fd)
                elif fd == self.events:
                    if not self.take(fd):
                        self.poller.unregister(fd)
                elif fd == self.profile:
                    self.poller.unregister(fd)  # back after the batch's time, if open
                    if self.take(fd):
                        self.profile_due = time_module.monotonic() + PROFILE_BATCH_SECONDS

    def take(self, fd):
        """Measure what `fd` holds; False once the snippet's end of it is closed."""
        data = read_ready(fd)
        if data:
            self.measure_from(fd, data)
        return data != b""

    def measure_from(self, fd, data):
        if fd == self.events:
            # The stacks sampled before these events belong to the sections before them.
            self.drain(self.profile)
            self.measure.read_events(data, self.acks)
        else:
            self.measure.read_profile(data)

    def last_sample(self):
        """Where the snippet is, now that the worker stops it: one more stack, from
        its main thread (tgkill: the process's other threads may be numpy's), even if
        it is asleep."""
        if self.libc.tgkill(self.snippet, self.snippet, signal.SIGPROF) != 0:
            return
        deadline = time_module.monotonic() + FINAL_SAMPLE_SECONDS
        before = self.measure.samples
        while time_module.monotonic() < deadline:
            select.select([self.profile], [], [], FINAL_SAMPLE_SECONDS / 5)
            self.drain(self.profile)
            if self.measure.samples > before and self.measure.pending is None:
                break

    def drain(self, fd):
        """Measure everything `fd` holds now."""
        while data := read_ready(fd):
            self.measure_from(fd, data)


def supervise(supervisor, report):
    """Wait for the snippet, then end every process it left; report on `report`."""
    snippet = supervisor.snippet
    status = None
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        status = supervisor.watch()
    except Stop:
        try:  # noqa: SIM105 - contextlib's import would cost every run
            supervisor.last_sample()
        except Stop:
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
        cpu = supervisor.measure.cpu()
        try:
            pid, wait_status = os.waitpid(-1, WALL)
        except ChildProcessError:
            break
        if pid == snippet and status is None:
            status, supervisor.measure.final_cpu = wait_status, cpu
    for fd in (supervisor.events, supervisor.profile):
        supervisor.drain(fd)
    tree = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    if status is None:
        status = signal.SIGKILL  # stopped by the worker before it ended
    # The snippet's status, its processes' CPU, and ours (start-up, fork, reaping,
    # measuring): the worker charges the run both, less what came before its code.
    lines = supervisor.measure.report(status)
    lines.append(
        "%s %d %.6f %.6f"
        % (END, status, tree.ru_utime + tree.ru_stime, own.ru_utime + own.ru_stime)
    )
    write_all(report, ("\n".join(lines) + "\n").encode("utf-8", "replace"))
    os.close(report)
    os._exit(0)


def main():
    """Start-up, then the fork: the supervisor never returns; the snippet's process
    returns its compiled code and namespace (None after a syntax error)."""
    libc = ctypes.CDLL(None, use_errno=True)
    die_with_parent(libc)
    file_bytes, processes, address_space, open_files, allow_unix, report, cpu_counter = (
        int(a) for a in sys.argv[1:8]
    )
    interval = int(sys.argv[8]) / 1e6 if PROFILES else 0.0
    read_only, read_write = (a.split(os.pathsep) if a else [] for a in sys.argv[9:11])
    try:
        # Built now, applied in the snippet's process.
        seccomp = build_seccomp(allow_unix, cpu_counter >= 0)
        ruleset = build_landlock(read_only, read_write) if read_only or read_write else None
        set_limits(file_bytes, processes, address_space, open_files)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER failed")
        # A process's first compile() sets the parser up (~1.3 ms): done here, as
        # start-up, so that the snippet's process inherits it ready.
        exec(compile("pass", SNIPPET_FILE, "exec"), {})
        # Between the supervisor and the snippet's process: section events, their
        # answers, and the profile's stacks (os.pipe's are not inherited by programs
        # the snippet starts).
        events_read, events_write = os.pipe()
        acks_read, acks_write = os.pipe()
        profile_read, profile_write = os.pipe()
        try:  # noqa: SIM105 - a smaller pipe drops samples sooner, nothing worse
            fcntl.fcntl(profile_write, 1031, PIPE_BYTES)  # F_SETPIPE_SZ
        except OSError:
            pass
        signal.signal(signal.SIGUSR1, stop)  # the worker's "time is up"
        # Held back until the supervisor waits: a limit can be hit before fork returns.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        # The worker moves us into the run's cgroup, then sends one byte: forking
        # before that would leave the snippet's process outside the cgroup's limits.
        if os.read(0, 1) != GO:
            raise OSError(errno.EPIPE, "the worker did not confine the sandbox")
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
        for fd in (events_write, acks_read, profile_write):
            os.close(fd)
        supervisor = Supervisor(
            snippet,
            report,
            events_read,
            acks_write,
            profile_read,
            interval,
            libc,
            RunClock(cpu_counter),
        )
        # All of this is start-up, reported on the report descriptor (the snippet
        # never sees it) and not charged to the run: the worker reads the run's CPU
        # accounting from here on.
        start_up = resource.getrusage(resource.RUSAGE_SELF)
        os.write(report, b"%s %.6f\n" % (STARTUP.encode(), start_up.ru_utime + start_up.ru_stime))
        supervise(supervisor, report)
    try:
        # The run's CPU counter is the supervisor's to read, not the snippet's.
        for fd in (events_read, acks_write, profile_read, cpu_counter):
            if fd >= 0:
                os.close(fd)
        CHANNELS.update(events=events_write, acks=acks_read, profile=profile_write)
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
    try:  # noqa: SIM105 - measuring never fails the snippet
        prepare_profile(profile_write, interval)
    except Exception:  # noqa: S110
        pass
    try:  # noqa: SIM105
        # As under `python -X faulthandler`: a process that crashes (a ctypes mistake, a
        # C extension's bug, or the profile's sampler) leaves on standard error the
        # Python line it was on, for its author and for the failure's message.
        faulthandler.enable(file=sys.stderr)
    except Exception:  # noqa: S110
        pass
    # A worker starts us ahead of the run: we wait here, confined, until the code
    # arrives. What this process spent until then is start-up as well: the supervisor
    # counts it with the snippet's CPU, so it is reported (then the descriptor closed,
    # before any of the snippet's code runs) and taken off.
    os.write(report, b"%s\n" % READY.encode())
    source = read_code(code)
    prepared = resource.getrusage(resource.RUSAGE_SELF)
    os.write(report, b"%s %.6f\n" % (PREPARED.encode(), prepared.ru_utime + prepared.ru_stime))
    os.close(report)
    compiled = compile_snippet(source, main_file)
    if compiled is not None:
        CHANNELS["pid"] = os.getpid()
        try:  # noqa: SIM105
            start_profile()
        except Exception:  # noqa: S110
            pass
    return compiled


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
    os._exit(status)


# `python -c` runs this as __main__; the server imports it only for its constants. The
# snippet runs here, at the top level: each frame of this launcher under the snippet's
# is more for the profile's every sample to write.
if __name__ == "__main__":
    _compiled = main()
    _status = 1
    if _compiled is not None:
        try:
            exec(*_compiled)
            _status = 0
        except SystemExit as _exit:
            _status = exit_status(_exit)
        except BaseException as _exception:
            print_snippet_exception(_exception)
    finish(_status)

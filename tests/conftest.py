import os
import pickle
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from runs import sandbox
from runs.models import Offsets, Run, Series, Worker
from runs.queue import execution, heartbeat, tasks
from runs.sandbox import Limits, environments, host

ROOT = Path(__file__).resolve().parent.parent
HTMX = {"HX-Request": "true"}  # the header htmx sends with its requests


def session_key(client) -> str:
    """The test client's session key, made by a first page view."""
    client.get("/")
    return client.session.session_key


SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session", autouse=True)
def _own_data_dir(tmp_path_factory):
    """The suite's own DATA_DIR, for this process and the workers and servers it starts:
    never the one a `make run` in the same checkout uses (its sockets and pipes)."""
    from django.conf import settings as django_settings

    before = django_settings.DATA_DIR, os.environ.get("DATA_DIR"), os.environ.get("SECRET_KEY")
    data_dir = tmp_path_factory.mktemp("data")
    django_settings.DATA_DIR = data_dir
    os.environ["DATA_DIR"] = str(data_dir)
    # Processes started here read the key from the environment: the new DATA_DIR has none.
    os.environ["SECRET_KEY"] = django_settings.SECRET_KEY
    yield data_dir
    django_settings.DATA_DIR = before[0]
    for name, value in (("DATA_DIR", before[1]), ("SECRET_KEY", before[2])):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# --- the fast loop: `make test-fast` leaves out what the markers name -------------------

# Fixtures that start a sandbox, a worker (which starts sandboxes) or the browser: a test
# using one is marked for it, so that nobody has to remember.
NEEDS = {
    "sandbox": {"mode", "unprivileged", "start_worker", "worker_env", "live_server"},
    "browser": {"chromium"},
}


def pytest_collection_modifyitems(items):
    for item in items:
        for marker, fixtures in NEEDS.items():
            if fixtures & set(getattr(item, "fixturenames", ())):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _sandboxes_only_where_marked(request, monkeypatch):
    """A test that starts a sandbox without saying so fails, in the full suite too: the
    fast loop (`-m "not sandbox"`) can then trust the markers."""
    if request.node.get_closest_marker("sandbox"):
        return

    def unmarked(*args, **kwargs):
        raise AssertionError("this test starts a sandbox: mark it @pytest.mark.sandbox")

    from runs.sandbox import standby, watch

    for module in (sandbox, standby, watch):
        monkeypatch.setattr(module, "launch", unmarked)


@pytest.fixture(scope="session", autouse=True)
def _static_files_without_collectstatic():
    """Pages find their static files where they are written when nobody has run
    `collectstatic` (the fast loop); `make test` runs it first, and then the suite
    serves the collected, hashed files as production does."""
    from django.test import override_settings

    if (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
        yield
        return
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    with override_settings(
        STATIC_ROOT=None,
        WHITENOISE_USE_FINDERS=True,
        STORAGES=settings.STORAGES | {"staticfiles": plain},
    ):
        yield


@pytest.fixture(autouse=True)
def _fast_tests(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Most tests have no worker: the form need not wait for a run that cannot end.
    settings.PAGE_WAIT_SECONDS = 0


@pytest.fixture(autouse=True)
def _heartbeat_stops_with_the_test(django_db_blocker):
    # Executing a run here starts this process's heartbeat thread: it must not outlive
    # the test's database (its next beat would fail in whatever test runs then). Its
    # row goes with it, after the test's own database access has ended.
    yield
    with django_db_blocker.unblock():
        heartbeat.stop()


@pytest.fixture(autouse=True)
def _no_standby_sandbox_between_tests():
    # Runs executed here prepare the next run's sandbox, as a worker does; a test must
    # neither inherit one made under another test's settings nor leave one running.
    sandbox.discard_standby()
    yield
    sandbox.discard_standby()


@pytest.fixture(scope="session", autouse=True)
def _what_the_suite_starts_stays_its_own():
    # A subreaper from the start: whatever the suite's sandboxes, workers and servers
    # leave behind (a worker killed mid-run, a daemon that called setsid) is re-parented
    # to this process, never to init, so the suite can count it as its own.
    from runs.sandbox import host

    host.become_subreaper()


def processes_of(uid: int) -> list[psutil.Process]:
    """The live processes of `uid` that this test process started, directly or through
    what it started: never another's on the same machine (a `make run` beside the suite
    keeps sandboxes of the same account ready).

    Zombies are left out: they run nothing, and on hosts whose PID 1 does not reap,
    the parts of a sandbox whose worker was killed stay zombies forever.
    """
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.uids().real == uid and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def sandbox_processes() -> list[psutil.Process]:
    """The live processes of the sandbox account this test started (only meaningful as
    root): see processes_of."""
    import pwd

    try:
        uid = pwd.getpwnam(settings.SANDBOX_USER).pw_uid
    except KeyError:
        return []
    return processes_of(uid)


def built_environment(name: str) -> environments.Environment:
    """The declared environment `name`, as built here; the test is skipped only where
    its interpreter is absent from this host (CI builds every one it has)."""
    declared = next(e for e in environments.declared() if e.name == name)
    if not host.interpreter_candidates(declared.interpreter):
        pytest.skip(f"{declared.interpreter} is not on this host")
    env = environments.named(name)
    assert env is not None, f"{name}'s interpreter is here, but it is not built (snippetenv)"
    return env


def limits(**overrides) -> Limits:
    """The configured limits with a short timeout, and any of them changed."""
    base = Limits.from_settings(timeout_s=5)
    return Limits(**(vars(base) | overrides))


def execute(code: str, **fields) -> Run:
    """Submit `code` and run it here, end to end (real sandbox, CodeCarbon, database)."""
    run = Run.objects.submit(code, **fields)
    execution.execute(run)
    run.refresh_from_db()
    return run


def run_series(series: Series) -> Series:
    """Run a repeat or a comparison here to its end, as the workers would: every queued
    run, and a comparison's next rounds until its answer is clear."""
    while True:
        for queued in series.runs.filter(status=Run.Status.QUEUED).order_by("created_at"):
            execution.execute(queued)
        if not series.runs_until_clear or not tasks.continue_comparison(series):
            break
    series.refresh_from_db()
    return series


class Following(sandbox.Observer):
    """An observer that hands each tick to `each`, every `tick_seconds`."""

    def __init__(self, each, tick_seconds: float = 0.5):
        self.each, self.tick_seconds = each, tick_seconds

    def tick(self, tick: sandbox.Tick) -> None:
        self.each(tick)


def run(code: str, **overrides) -> sandbox.Outcome:
    """`code` (dedented) in the real sandbox, as a worker runs it. A go that CPython's
    own sampler race crashed (launcher.Measure.sampler_crashed: rare, never the
    snippet's doing) is run again once, as the worker runs it again: a test of what
    the snippet does is not failed by the interpreter's race."""
    return counted_run(code, **overrides)[0]


def counted_run(code: str, **overrides) -> tuple[sandbox.Outcome, float]:
    """As `run`, with the CPU the host saw of the go that is kept (this process's
    RUSAGE_CHILDREN): a go run again leaves the first out of the count."""
    for _ in range(2):
        before = children_cpu()
        outcome = sandbox.run(textwrap.dedent(code), limits(**overrides))
        seen = children_cpu() - before
        if not outcome.sampler_crashed:
            break
    return outcome, seen


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


NOBODY = 65534


def run_unprivileged(code: str, **overrides) -> sandbox.Outcome:
    """`sandbox.run` in a child of this process that has dropped to `nobody`: the
    server of an unprivileged container (no other account, no writable cgroups)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(reader)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            outcome = run(code, **overrides)
            with os.fdopen(writer, "wb") as out:
                pickle.dump(outcome, out)
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as data:
        raw = data.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and raw, "the unprivileged server failed"
    return pickle.loads(raw)  # noqa: S301 - written by our own child above


@pytest.fixture
def unprivileged(settings):
    settings.SANDBOX_MODE = "rlimits"
    sandbox.isolation.cache_clear()
    yield run_unprivileged
    sandbox.isolation.cache_clear()


@pytest.fixture(params=["bubblewrap", "rlimits"])
def mode(request, settings):
    """Run a test under both isolation modes: namespaces, and the fallback without them."""
    settings.SANDBOX_MODE = request.param
    sandbox.isolation.cache_clear()
    yield request.param
    sandbox.isolation.cache_clear()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def printed(run: Run) -> str:
    """What a run has printed so far, as its page shows it (while it runs, from the
    chunks its worker appends)."""
    run = Run.objects.filter(pk=run.pk).first()
    return run.output_after(Offsets())[0] if run else ""


class WorkerProcess:
    """A real `manage.py worker` process on the test database."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        # A file, not a pipe: nobody reads a pipe after start-up, and a full one
        # would freeze the worker.
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "worker", "--interval", "0.02"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()}")
            return "ready" in self.log.read_text()

        wait_for(ready, timeout=60)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def database_url() -> str:
    """The database this process uses now (the test database), as DATABASE_URL."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    host, port = db["HOST"] or "localhost", db["PORT"] or 5432
    return f"postgres://{db['USER']}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def worker_env(transactional_db):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "playground.settings",
        "WORKER_HEARTBEAT_SECONDS": "0.2",
        "WORKER_STALE_SECONDS": "1.5",
    }
    return env


@pytest.fixture
def start_worker(worker_env, settings, tmp_path):
    settings.WORKER_STALE_SECONDS = 1.5
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(worker_env | env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
    Worker.objects.all().delete()


def host_hardware():
    """What CodeCarbon detects on this host, as the runs' figures are built from it."""
    from runs.figures import measure

    session = measure.Session()  # a tracker lists its hardware once it has started
    session.finish(sandbox.Outcome())
    return session.hardware


def finished(run: Run) -> Run | None:
    run.refresh_from_db()
    return run if run.is_over else None


# --- the browser, one for the whole session (browser tests and accessibility tests) ---

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium():
    # Playwright's sync API keeps an event loop in this thread; the ORM calls that tests
    # and fixtures make between browser steps are ordinary blocking calls all the same.
    from playwright.sync_api import sync_playwright  # here: the fast loop needs no browser

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        # In UTC, whatever the host's zone: a zone names a country, whose grid the
        # playground proposes (a test that wants one sets its context's timezone_id).
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, env=os.environ | {"TZ": "UTC"}
        )
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]

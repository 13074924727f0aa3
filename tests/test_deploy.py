"""The deployment files say what README says. `make image-test` builds and runs the image
and compose.yaml for real (deploy/image/test.py); these check what needs no container."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def test_compose_starts_database_web_and_worker_on_one_postgresql():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "web", "worker"}
    web, worker = services["web"], services["worker"]
    url = web["environment"]["DATABASE_URL"]
    assert url.startswith("postgres://") and "@db:5432/" in url
    assert worker["environment"]["DATABASE_URL"] == url
    assert worker["environment"]["WORKERS_ONLY"] == "1"
    assert web["environment"]["SECRET_KEY"] == worker["environment"]["SECRET_KEY"]
    port = web["environment"]["BIND"].rsplit(":", 1)[1]
    assert web["ports"] == [f"${{PLAYGROUND_PORT:-{port}}}:{port}"]
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    assert web["build"] == worker["build"] == "."
    # One image for both, nameable without editing the file; so is PostgreSQL's.
    assert web["image"] == worker["image"] == "${PLAYGROUND_IMAGE:-codecarbon-playground}"
    assert services["db"]["image"].startswith("${POSTGRES_IMAGE:-postgres:")
    # The worker container waits for the web container's migrations (bin/serve).
    assert worker["environment"]["MIGRATE_ON_START"] == "0"


def test_the_image_builds_from_the_official_python_unless_told_otherwise():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=python:3.12-slim-bookworm\nFROM ${BASE}\n" in dockerfile


def _serve_worker_only(data_dir: Path, wait: int) -> subprocess.Popen:
    env = os.environ | {
        "DATA_DIR": str(data_dir),
        "WORKERS_ONLY": "1",
        "MIGRATE_ON_START": "0",
        "MIGRATE_WAIT": str(wait),
        "PYTHON": sys.executable,
    }
    env.pop("DATABASE_URL", None)  # a database of its own: SQLite in data_dir
    return subprocess.Popen(
        [str(ROOT / "bin" / "serve")], env=env, stderr=subprocess.PIPE, text=True
    )


def _workers_below(process: subprocess.Popen) -> list[psutil.Process]:
    try:
        below = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in below if "worker" in " ".join(p.cmdline())]


def test_a_worker_that_must_not_migrate_waits_for_the_migrations(tmp_path):
    serve = _serve_worker_only(tmp_path, wait=120)
    try:
        time.sleep(3)  # longer than one check: bin/serve is waiting, no worker started
        assert serve.poll() is None and _workers_below(serve) == []
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
        env = os.environ | {"DATA_DIR": str(tmp_path)}
        env.pop("DATABASE_URL", None)
        subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=120)
        deadline = time.monotonic() + 60
        while not _workers_below(serve) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _workers_below(serve), "no worker started once the database was migrated"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)


def test_a_worker_gives_up_on_a_database_nobody_migrates(tmp_path):
    serve = _serve_worker_only(tmp_path, wait=2)
    _, stderr = serve.communicate(timeout=60)
    assert serve.returncode == 1
    assert "the database is not migrated after" in stderr


def test_the_image_serves_through_the_front_with_its_packages():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["bin/serve"]' in dockerfile
    for package in ("bubblewrap", "libseccomp2", "nginx-light"):
        assert package in dockerfile
    assert "nginx" in (ROOT / "bin" / "serve").read_text()
    assert "@LISTEN@" in (ROOT / "deploy" / "nginx.conf").read_text()


def locked(lock: str) -> dict[str, str]:
    """{package: version} of a lock `make lock` wrote, checking that each has hashes."""
    pinned = {}
    for entry in re.split(r"\n(?=\S)", (ROOT / lock).read_text()):
        first = entry.split("\n", 1)[0]
        if first and not first.startswith("#"):
            name, version = first.split(" ", 1)[0].split("==")
            assert "--hash=sha256:" in entry, f"{lock}: {name} has no hash"
            pinned[name.lower().replace("_", "-")] = version
    return pinned


def test_every_installed_package_is_pinned_with_its_hashes():
    """The virtual environment is what requirements-dev.lock says, to the version (make
    lock writes it): nothing a dependency pulls in floats."""
    from importlib import metadata

    installed = {
        d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()
    }
    assert installed == locked("requirements-dev.lock")


def test_the_image_lock_is_the_servers_part_of_the_dev_lock():
    """What the image installs (requirements.lock) is what the tests ran against."""
    server, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    assert server.items() <= dev.items()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[\[=]", line)[0].lower()
            assert name in server, name

"""The deployment files say what README says: checked as data, since no container
engine runs here."""

from pathlib import Path

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
    assert f"{port}:{port}" in web["ports"]
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    assert web["build"] == worker["build"] == "."


def test_the_image_serves_through_the_front_with_its_packages():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["bin/serve"]' in dockerfile
    for package in ("bubblewrap", "libseccomp2", "nginx-light"):
        assert package in dockerfile
    assert "nginx" in (ROOT / "bin" / "serve").read_text()
    assert "@LISTEN@" in (ROOT / "deploy" / "nginx.conf").read_text()

"""`make image-test`: the container image, built as README tells a Docker user, then run.

Builds the image from the Dockerfile, changing nothing but `--build-arg BASE` (a local
stand-in for python:3.12-slim-bookworm: deploy/image/base), from a build context holding
the checkout's tracked files plus planted developer artifacts (.env with a secret,
var/secret_key, caches, test artifacts, a database). Then checks:

1. the image: no planted artifact and no secret in it; its user is not root; its files
   are the ones the app runs; /data is empty;
2. its default configuration (SQLite in /data): it starts, its HEALTHCHECK answers,
   `POST /run` succeeds with figures that add up, and one run in each environment;
3. compose.yaml (PostgreSQL from a local stand-in for the official image) with
   compose.bubblewrap.yaml: a run is isolated by bubblewrap, the worker container waited
   for the web container's migrations instead of failing, and `--scale worker=2` shows
   one more live worker in /healthz;

and removes what it made (containers, volumes, images, the build context) whatever
happens. Prints how long each step took and the image's size.
"""

import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TAG = secrets.token_hex(4)
BASE = f"localhost/ccp-image-test-base:{TAG}"
POSTGRES = f"localhost/ccp-image-test-postgres:{TAG}"
APP = f"localhost/ccp-image-test:{TAG}"
PROJECT = f"ccp-image-test-{TAG}"
CANARY = f"canary-{secrets.token_hex(16)}"
# What a developer's checkout holds and the image must not: .dockerignore keeps them out.
PLANTED = [
    ".env",
    ".env.production",
    "var/secret_key",
    "var/db.sqlite3",
    ".hypothesis/examples/canary",
    ".schemathesis/canary",
    ".pytest_cache/canary",
    ".ruff_cache/canary",
    ".mypy_cache/canary",
    "test-artifacts/canary.png",
    ".venv/canary",
    "db.sqlite3",
]
# What the app runs, and nothing else, at the top of /app.
APP_FILES = {
    "bin",
    "deploy",
    "environments.toml",
    "manage.py",
    "playground",
    "requirements.lock",
    "runs",
    "static",
    "staticfiles",
    "templates",
}
os.environ["CONTAINERS_CONF"] = str(HERE / "containers.conf")
timings: dict[str, float] = {}


def sh(*args: str, check: bool = True, **kwargs) -> str:
    done = subprocess.run(args, text=True, capture_output=True, **kwargs)
    if check and done.returncode:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def step(name: str):
    class Timed:
        def __enter__(self):
            print(f"--- {name}", flush=True)
            self.started = time.monotonic()

        def __exit__(self, *exc):
            timings[name] = time.monotonic() - self.started

    return Timed()


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
    print(f"ok: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: dict | None = None, timeout: float = 90) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    asked = urllib.request.Request(url, data, headers)  # noqa: S310 (our own http URL)
    try:
        with urllib.request.urlopen(asked, timeout=timeout) as r:  # noqa: S310
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def healthy(base: str, workers: int, within: float = 180) -> dict:
    """Waits until /healthz answers 200 with this many live workers."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = request(f"{base}/healthz", timeout=5)
            last = (status, body)
            if status == 200 and body["workers_alive"] == workers:
                return body
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{base}/healthz never reported {workers} live worker(s): {last}")


def run(base: str, code: str, env: str | None = None) -> dict:
    body = {"code": code} | ({"env": env} if env else {})
    status, result = request(f"{base}/run", body)
    expect(
        status == 200 and result["status"] == "succeeded",
        f"{env or 'default'}: POST /run succeeded",
    )
    parts = [result[f"{p}_energy_kwh"] or 0.0 for p in ("cpu", "ram", "gpu")]
    expect(
        result["energy_kwh"] > 0
        and result["emissions_g"] > 0
        and math.isclose(sum(parts), result["energy_kwh"], rel_tol=1e-6),
        f"{env or 'default'}: energy {result['energy_kwh']:.3g} kWh = CPU + RAM + GPU, "
        f"CO2 {result['emissions_g']:.3g} g, isolation {result['isolation']}",
    )
    return result


def build_context() -> Path:
    """The checkout's tracked files (as edited), plus the planted artifacts."""
    context = Path(tempfile.mkdtemp(prefix="ccp-image-context."))
    for name in sh("git", "-C", str(ROOT), "ls-files", "-z").split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)
    for name in PLANTED:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(f"SECRET_KEY={CANARY}\n")
    return context


def as_root_in_image(script: str, check: bool = True) -> str:
    """What `script` prints in a throwaway container of the image, run as root so that
    it may read every file."""
    return sh("podman", "run", "--rm", "--user", "root", APP, "sh", "-c", script, check=check)


def check_image() -> None:
    config = json.loads(sh("podman", "image", "inspect", APP))[0]["Config"]
    expect(config.get("User") == "app", "the image runs as its user `app`, not root")
    expect(
        not any(e.startswith("SECRET_KEY") for e in config.get("Env", [])),
        "no SECRET_KEY in its environment",
    )
    files = as_root_in_image("ls -A /app; echo --; ls -A /data")
    top, data = files.split("--")
    expect(
        set(top.split()) == APP_FILES,
        f"/app holds what the app runs: {' '.join(sorted(top.split()))}",
    )
    expect(data.split() == [], "/data is empty (the default database is the container's own)")
    found = as_root_in_image(
        f"grep -rlF {CANARY} /app /data /home /root /tmp /opt /etc 2>/dev/null; "
        "find / -xdev \\( -name .env -o -name '.env.*' -o -name secret_key -o -name '*.sqlite3' "
        "-o -name .hypothesis -o -name .schemathesis -o -name .pytest_cache "
        "-o -name test-artifacts \\) -print",
        check=False,
    )
    expect(
        found == "", f"no planted artifact or secret anywhere in the image ({len(PLANTED)} planted)"
    )


def check_default_configuration() -> None:
    name = f"{PROJECT}-sqlite"
    try:
        sh(
            "podman",
            "run",
            "-d",
            "--name",
            name,
            "-e",
            f"SECRET_KEY={secrets.token_urlsafe(40)}",
            "-p",
            "127.0.0.1::8000",
            APP,
        )
        port = sh("podman", "port", name, "8000").rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        healthy(base, workers=1, within=120)
        expect(
            sh("podman", "healthcheck", "run", name, check=False) == "", "its HEALTHCHECK answers"
        )
        expect(sh("podman", "exec", name, "id", "-un") == "app", "its processes run as `app`")
        result = run(base, "print('hi')")
        expect(result["stdout"] == "hi\n", "the run printed what the snippet printed")
        status, environments = request(f"{base}/api/environments")
        names = [e["name"] for e in environments["environments"]]
        expect(status == 200 and len(names) == 3, f"environments: {', '.join(names)}")
        for env in names:
            expect(run(base, "import sys; print(sys.version)", env)["env"] == env, f"{env} ran it")
    except BaseException:
        print(sh("sh", "-c", f"podman logs {name} 2>&1 | tail -40", check=False))
        raise
    finally:
        sh("podman", "rm", "--force", "--volumes", name, check=False)


def compose(*args: str, check: bool = True) -> str:
    files = ["-f", str(ROOT / "compose.yaml"), "-f", str(ROOT / "compose.bubblewrap.yaml")]
    return sh(
        str(Path(sys.executable).parent / "podman-compose"),
        "-p",
        PROJECT,
        *files,
        *args,
        check=check,
    )


def compose_down() -> None:
    """compose down, then what podman-compose's down leaves behind: the containers a
    `--scale` added, the containers' anonymous volumes (/data), and so its network.

    Removal is tried again for a while: when `podman rm` returns, the cleanup process
    conmon started for a stopped container can still hold its volume, and the
    `volume rm` that comes too early fails (one CI run left the db volume so)."""
    label = f"label=io.podman.compose.project={PROJECT}"

    def left() -> dict[str, list[str]]:
        listed = {
            kind: sh("podman", *command, "--filter", label, check=False).split()
            for kind, command in {
                "containers": ("ps", "--all", "--quiet"),
                "volumes": ("volume", "ls", "--quiet"),
                "networks": ("network", "ls", "--quiet"),
            }.items()
        }
        listed["volumes"] += [v for v in anonymous if exists("volume", v)]
        listed["networks"] += [n for n in [f"{PROJECT}_default"] if exists("network", n)]
        return {kind: sorted(set(names)) for kind, names in listed.items() if names}

    containers = sh("podman", "ps", "--all", "--quiet", "--filter", label, check=False)
    inspected = json.loads(sh("podman", "inspect", *containers.split())) if containers else []
    anonymous = {m["Name"] for c in inspected for m in c["Mounts"] if m.get("Name")}
    compose("down", "--volumes", check=False)
    failures: list[str] = []
    deadline = time.monotonic() + 60
    while (leftovers := left()) and time.monotonic() < deadline:
        for kind, command in (
            ("containers", ("rm", "--force", "--volumes")),
            ("volumes", ("volume", "rm", "--force")),
            ("networks", ("network", "rm", "--force")),
        ):
            if names := leftovers.get(kind):
                done = subprocess.run(("podman", *command, *names), capture_output=True, text=True)
                failures += [done.stderr.strip()] if done.returncode else []
        if left():
            time.sleep(2)
    said = f" (podman said: {' | '.join(failures[-3:])})" if leftovers and failures else ""
    expect(not leftovers, f"compose down left nothing behind {leftovers or ''}".strip() + said)


def exists(kind: str, name: str) -> bool:
    return subprocess.run(("podman", kind, "exists", name), check=False).returncode == 0


def check_compose() -> None:
    port = free_port()
    os.environ |= {
        "SECRET_KEY": secrets.token_urlsafe(40),
        "PLAYGROUND_IMAGE": APP,
        "POSTGRES_IMAGE": POSTGRES,
        "PLAYGROUND_PORT": str(port),
    }
    base = f"http://127.0.0.1:{port}"
    try:
        compose("up", "-d")
        healthy(base, workers=2)
        result = run(base, "print('hi')")
        expect(
            result["isolation"].startswith("bubblewrap"),
            "compose.bubblewrap.yaml: bubblewrap ran it",
        )
        logs = sh("sh", "-c", f"podman logs {PROJECT}_worker_1 2>&1", check=False)
        expect(
            "Traceback" not in logs and "stopped (status" not in logs,
            "the worker waited for the migrations instead of failing",
        )
        compose("up", "-d", "--scale", "worker=2")
        healthy(base, workers=3)
        print("ok: --scale worker=2: /healthz shows 3 live workers (the web container's and two)")
    finally:
        compose_down()


def main() -> None:
    started = time.monotonic()
    context = None
    try:
        with step("base images (local stand-ins for the official ones)"):
            # The server's own interpreter (the virtual environment's base), or PYTHON_BASE.
            python = os.environ.get("PYTHON_BASE") or sys.executable
            sh(str(HERE / "base"), BASE, python)
            sh(str(HERE / "postgres"), POSTGRES)
        with step("podman build (the Dockerfile, with --build-arg BASE)"):
            context = build_context()
            # Docker's format: OCI images drop HEALTHCHECK.
            sh(
                "podman",
                "build",
                "--format=docker",
                "--network=host",
                "--build-arg",
                f"BASE={BASE}",
                "-t",
                APP,
                str(context),
            )
        size = int(json.loads(sh("podman", "image", "inspect", APP))[0]["Size"])
        with step("the image's files"):
            check_image()
        with step("the default configuration (SQLite)"):
            check_default_configuration()
        with step("compose (PostgreSQL, bubblewrap, two workers)"):
            check_compose()
    finally:
        for image in (APP, POSTGRES, BASE):
            sh("podman", "rmi", "--force", image, check=False)
        if context:
            shutil.rmtree(context, ignore_errors=True)
    print(f"\nimage-test passed in {time.monotonic() - started:.0f} s; image {size / 1e9:.2f} GB")
    for name, seconds in timings.items():
        print(f"  {seconds:6.0f} s  {name}")


if __name__ == "__main__":
    main()

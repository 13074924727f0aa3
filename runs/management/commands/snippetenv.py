import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

REQUIREMENTS = Path(settings.BASE_DIR) / "requirements-snippet.txt"


class Command(BaseCommand):
    help = (
        "Create the interpreter snippets run with (SNIPPET_PYTHON): a virtual "
        "environment of the system Python with numpy, readable by the sandbox user."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--base-python",
            default="/usr/bin/python3",
            help="Interpreter to build the environment from (default: %(default)s); it "
            "must live where the sandbox can see it (/usr).",
        )

    def handle(self, *, base_python: str, **options) -> None:
        python = Path(settings.SNIPPET_PYTHON)
        env = python.parent.parent
        stamp = env / ".requirements"
        wanted = REQUIREMENTS.read_text()
        if python.exists() and stamp.exists() and stamp.read_text() == wanted:
            self.stdout.write(f"Snippet environment {env} is up to date.")
            return
        self.stdout.write(f"Creating snippet environment {env} from {base_python} ...")
        self.call([base_python, "-m", "venv", "--clear", str(env)])
        self.call([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)])
        stamp.write_text(wanted)
        # The sandbox user must be able to read and execute it, nothing more.
        for root, dirs, files in os.walk(env):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)  # noqa: S103 (read-only to others)
            for name in files:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444)
        for parent in [env, *env.parents] if os.geteuid() == 0 else []:
            if parent == Path("/"):
                break
            if not os.stat(parent).st_mode & 0o001:
                self.stderr.write(
                    f"Warning: {parent} is not searchable by other users; the sandbox user "
                    "cannot reach the snippet interpreter. Set SNIPPET_PYTHON elsewhere."
                )
        self.stdout.write(f"Snippet interpreter ready: {python}")

    def call(self, command: list[str]) -> None:
        result = subprocess.run(command, stdout=sys.stdout, stderr=sys.stderr)
        if result.returncode != 0:
            raise CommandError(f"{' '.join(command)} failed with status {result.returncode}")

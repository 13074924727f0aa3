"""Settings read as a fresh process reads them: from the environment and DATA_DIR."""

import os
import subprocess
import sys

from django.conf import settings

PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def django_process(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATA_DIR"}}
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", PRINT_KEY],
        cwd=settings.BASE_DIR,
        env=base | {"DJANGO_SETTINGS_MODULE": "playground.settings"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_secret_key_the_generated_one_in_data_dir_is_used(tmp_path):
    (tmp_path / "secret_key").write_text("generated-by-make\n")
    result = django_process({"DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "generated-by-make"


def test_the_environment_wins_over_the_file(tmp_path):
    (tmp_path / "secret_key").write_text("generated-by-make\n")
    result = django_process({"DATA_DIR": str(tmp_path), "SECRET_KEY": "from-env"})
    assert result.stdout.strip() == "from-env"


def test_no_key_anywhere_says_what_to_do(tmp_path):
    result = django_process({"DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert f"put one in {tmp_path / 'secret_key'}" in result.stderr

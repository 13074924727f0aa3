"""Where the processes of one machine meet: hand-over sockets and wake-up pipes.

Scoped by the database they serve: a worker only ever meets the web processes of its
own database, even where two servers share DATA_DIR (the test suite beside `make run`
in one checkout, say), and so never takes, stores and runs a run of another database.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings
from django.db import connection


def directory() -> Path:
    """This machine's meeting place for the database in use, made on first use."""
    db = connection.settings_dict
    identity = f"{connection.vendor}|{db.get('HOST')}|{db.get('PORT')}|{db.get('NAME')}"
    path = settings.DATA_DIR / "local" / hashlib.sha256(identity.encode()).hexdigest()[:16]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path

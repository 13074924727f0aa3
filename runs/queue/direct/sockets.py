"""Hand a new run straight to an idle worker on this machine, past the queue table.

Queueing a run through the table costs a row, a poll (or a wake-up) and a claim: more
than `print('hi')` takes to run. So an idle worker also listens on a Unix socket of its
own (in this machine's meeting place for its database, runs.queue.direct.rendezvous), and only
while idle (or ending the sandbox of a run it has
stored and sent): a busy worker's socket is closed, and offering to it costs a refused
connect. The web process offers the run itself (its row, serialized) to one idle
worker, a new single run before anything of it is written: the worker starts its code
and meanwhile claims the run in one statement under the fair queue's rule (it writes a
new run's row itself, as running; it updates a stored one), so a run still runs once,
and a refused one is ended unstored. It answers with the row's primary key, or that it
did not take the run. Anything else (no idle worker here, workers on other machines, a
refusal, no answer in time) falls back to the queue table, which every worker polls.

A taken run's connection stays open while it runs: the worker says on it when the run
has printed (PROGRESS), and sends the run's row once it is stored, so that a request
waiting for the run answers without a named pipe or another read of the database. A
connection that ends without the row (the worker died) leaves the waiter to the
database.

Nothing here knows about runs: payloads go both ways, a key, and pokes. The protocol
that carries a run over it, both ends, is runs.queue.direct.protocol.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import socket
import struct

from django.conf import settings

from . import rendezvous

logger = logging.getLogger(__name__)

# The worker's answer: the primary key of the run's row, or NOT_TAKEN.
ANSWER, NOT_TAKEN = struct.Struct("!q"), 0
# After its answer, from a worker that took the run: it has progressed; its stored row.
PROGRESS, RESULT = b"\n", b"="
# The web process waits this long for the worker's answer, then the queue takes over.
ANSWER_SECONDS = 1.0
# A run's row, serialized: its code (escaped, at worst 6 bytes a byte) and the rest.
MAX_OFFER_BYTES = settings.MAX_CODE_BYTES * 6 + 64 * 1024
# A stored row larger than this (long output) is not sent: the waiter reads it.
MAX_RESULT_BYTES = 1024 * 1024
# How long a worker gives the web process to answer its client and hang up.
HANG_UP_SECONDS = 0.05
LENGTH = struct.Struct("!I")


def _directory():
    return rendezvous.directory() / "handoff"


def offer(payload: bytes) -> Handed | None:
    """Offer `payload` (a run, its row perhaps not yet written) to an idle worker here:
    the connection on which it answers (`Handed.taken`), or None when no worker here is
    idle (or the hand-over is off: settings.HANDOVER)."""
    if not settings.HANDOVER:
        return None
    try:
        paths = [entry.path for entry in os.scandir(_directory())]
    except OSError:
        return None
    random.shuffle(paths)
    for path in paths:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(ANSWER_SECONDS)
        try:
            connection.connect(path)
            connection.sendall(LENGTH.pack(len(payload)) + payload)
        except OSError:
            connection.close()
            continue  # busy or gone: try the next, then the queue
        return Handed(connection)
    return None


class Handed:
    """The web process's end of a run offered to a worker here."""

    def __init__(self, connection: socket.socket):
        self.connection = connection

    def taken(self) -> int | None:
        """The primary key of the run's row if the worker took the run (and stored a
        new one); None if it did not, or gave no answer within ANSWER_SECONDS."""
        try:
            (key,) = ANSWER.unpack(_read_exactly(self.connection, ANSWER.size))
        except (OSError, ValueError):
            return None  # the worker went away, or is too slow: the queue
        return key if key != NOT_TAKEN else None

    def receive(self, timeout: float) -> bytes | None:
        """PROGRESS, the run's stored row (b"" when too large to send), or None when
        nothing came within `timeout`. EOFError: the worker is gone without a word."""
        ready, _, _ = select.select([self.connection], [], [], max(timeout, 0))
        if not ready:
            return None
        kind = self.connection.recv(1)
        if kind == PROGRESS:
            return PROGRESS
        if kind == RESULT:
            try:
                return _read_payload(self.connection, MAX_RESULT_BYTES)
            except (OSError, ValueError):
                pass
        raise EOFError("the worker ended the hand-over without the run's row")

    def close(self) -> None:
        self.connection.close()


def sweep() -> int:
    """Remove the sockets of workers that died without closing them (a worker calls
    it as it starts); how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(_directory()):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(entry.path)
                except ConnectionRefusedError:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
    return removed


class Offer:
    """A web process's offer, accepted by a worker: `payload`, answered once, then
    (if taken) told how the run goes until `result` or `close`."""

    def __init__(self, connection: socket.socket, payload: bytes):
        self.connection: socket.socket | None = connection  # None once closed
        self.payload = payload

    def answer(self, key: int | None) -> None:
        """The run's primary key once this worker has claimed it; None: not taken."""
        # The web process may have given up meanwhile: it stores the run itself, and
        # the row's unique public id settles which of the two runs it.
        if not self._send(ANSWER.pack(key or NOT_TAKEN)) or key is None:
            self.close()

    def progress(self) -> None:
        self._send(PROGRESS)

    def result(self, row: bytes) -> None:
        """The run's row as stored; the last word. Returns once the web process has
        hung up (it has answered its client), or after HANG_UP_SECONDS: what the worker
        does next (ending the sandbox, starting the next one) would compete with the
        answer."""
        if len(row) > MAX_RESULT_BYTES:
            row = b""
        if self._send(RESULT + LENGTH.pack(len(row)) + row) and self.connection is not None:
            with contextlib.suppress(OSError):
                select.select([self.connection], [], [], HANG_UP_SECONDS)
        self.close()

    def _send(self, data: bytes) -> bool:
        if self.connection is None:
            return False
        try:
            self.connection.sendall(data)
        except OSError:
            self.close()  # the web process stopped waiting: nobody to tell
            return False
        return True

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class Listener:
    """A worker's socket, open while the worker is idle (see the module's docstring)."""

    def __init__(self) -> None:
        # Short: a socket's path must fit in 108 bytes.
        self.path = str(_directory() / f"{os.getpid()}.sock")
        self.sock: socket.socket | None = None

    def open(self) -> None:
        """Listen for offers (no-op when listening already, where it cannot, or with
        the hand-over off)."""
        if self.sock is not None or not settings.HANDOVER:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _directory().mkdir(mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            # Runs still reach this worker through the queue, a little later.
            logger.warning("no direct hand-off at %s: %s", self.path, exc)
            sock.close()
            return
        self.sock = sock

    def close(self) -> None:
        """Stop listening: offers waiting to be accepted are refused, and go to the
        queue."""
        if self.sock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.sock.close()
        self.sock = None

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def accept(self) -> Offer | None:
        """The offer waiting, if any. The worker stops listening: it is busy now."""
        if self.sock is None:
            return None
        try:
            connection, _ = self.sock.accept()
        except BlockingIOError:
            return None
        self.close()
        connection.settimeout(ANSWER_SECONDS)
        try:
            payload = _read_payload(connection)
        except (OSError, ValueError):
            connection.close()
            return None
        return Offer(connection, payload)


def _read_payload(connection: socket.socket, limit: int = MAX_OFFER_BYTES) -> bytes:
    (length,) = LENGTH.unpack(_read_exactly(connection, LENGTH.size))
    if length > limit:
        raise ValueError("larger than a hand-over may be")
    return _read_exactly(connection, length)


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(min(size - len(data), 65536))
        if not chunk:
            raise ValueError("the offer ended early")
        data += chunk
    return bytes(data)

"""A running run's output, appended as it comes (see OutputChunk)."""

from __future__ import annotations

from typing import NamedTuple

from django.db import models

# The largest offset a chunk stores (a PositiveIntegerField, on every database).
MAX_OFFSET = 2**31 - 1


class Offsets(NamedTuple):
    """How much of each output stream a viewer has seen, in characters; in a URL,
    `?since=<stdout>.<stderr>`."""

    stdout: int = 0
    stderr: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> Offsets | None:
        """The offsets a poll sent, or None for none or nonsense (sent whole then)."""
        try:
            stdout, stderr = (int(part) for part in (raw or "").split("."))
        except ValueError:
            return None
        # Past what a chunk's offsets can hold (and SQLite's integers): nonsense too.
        in_range = 0 <= stdout <= MAX_OFFSET and 0 <= stderr <= MAX_OFFSET
        return cls(stdout, stderr) if in_range else None

    def __str__(self) -> str:
        return f"{self.stdout}.{self.stderr}"


class OutputChunk(models.Model):
    """What a running run printed between two of its worker's progress writes: output
    is appended as it comes instead of rewritten whole, polls read only the chunks past
    what their viewer has seen, and the run's end gathers them into its row (and
    deletes them). Characters `start` to `end` of the stream, as the sandbox decoded it."""

    class Stream(models.TextChoices):
        STDOUT = "stdout"
        STDERR = "stderr"

    # No index of its own: the poll's index starts with the run (one page less to write
    # per progress write).
    run = models.ForeignKey(
        "Run", on_delete=models.CASCADE, related_name="output_chunks", db_index=False
    )
    stream = models.CharField(max_length=6, choices=Stream)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        indexes = [
            # A poll: WHERE run = ? AND stream = ? AND end > (what its viewer has seen).
            models.Index(fields=["run", "stream", "end"], name="output_chunk_poll_idx")
        ]

    def __str__(self) -> str:
        return f"{self.stream} {self.start}–{self.end} of run {self.run_id}"

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from runs.figures import grids
from runs.figures.formatting import BIDI_CONTROLS, summary_lines, terminal_safe
from runs.models import Run, Worker, run_json
from runs.queue import execution, heartbeat


class Command(BaseCommand):
    help = (
        "Run a Python snippet in the sandbox, measure it with CodeCarbon, store the run "
        "and print its output and metrics. Exits 0 only when the snippet succeeded."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="File with the snippet, or - to read stdin.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--timeout", type=float, help="Wall-clock limit in seconds.")
        parser.add_argument("--country", help="3-letter ISO code of the grid (e.g. FRA).")
        parser.add_argument("--region", help="Region within the country (e.g. california).")
        parser.add_argument(
            "--env", help="The environment to run in (default: the default one; see snippetenv)."
        )
        parser.add_argument(
            "--stdin",
            metavar="FILE",
            help="A file the snippet reads on its standard input (default: none).",
        )

    def handle(self, *, path, json: bool, timeout, country, region, env, stdin, **options) -> None:
        if path == "-" and stdin == "-":
            raise CommandError("The snippet and its --stdin cannot both come from -.")
        code = self.read(path)
        fields = {"source": Run.Source.CLI, "env": env}
        if stdin is not None:
            fields["stdin"] = self.read(stdin)
        if timeout is not None:
            if not 0 < timeout <= settings.MAX_EXECUTION_TIMEOUT:
                raise CommandError(
                    f"--timeout must be more than 0 and at most {settings.MAX_EXECUTION_TIMEOUT:g} "
                    "seconds (MAX_EXECUTION_TIMEOUT)."
                )
            fields["timeout_s"] = timeout
        if country is not None:
            country = country.upper()
            if country not in grids.countries():
                raise CommandError(f"Unknown country {country!r}: use a 3-letter ISO code.")
            fields["country_iso_code"] = country
        if region is not None:
            fields["region"] = region.lower()
        try:
            run = Run.objects.submit(code, **fields)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        execution.execute(run, kind=Worker.Kind.CLI)
        heartbeat.stop()
        if json:
            self.stdout.write(dumps(run_json(run)))
        else:
            self.stdout.write(self.shown(run.stdout, self.stdout), ending="")
            self.stderr.write(self.shown(run.stderr, self.stderr), ending="")
            grid = grids.grid_of(run.country_iso_code, run.region)
            # The summary holds snippet-made text too: its error, its sections' names.
            summary = "\n".join(summary_lines(run, grid.name))
            self.stdout.write(self.shown(summary, self.stdout))
        if run.status != Run.Status.SUCCEEDED:
            sys.exit(1)

    @staticmethod
    def shown(text: str, stream) -> str:
        """The snippet's output as written to `stream`: made harmless for a terminal."""
        return terminal_safe(text) if stream.isatty() else text

    def read(self, path: str) -> str:
        try:
            raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text; is it a binary file?") from None


# JSON escapes only the controls below 0x20: DEL and the C1 controls (CSI, OSC, ...)
# would reach a terminal raw, and bidirectional controls reorder what a terminal shows.
# Escaped, they are the same JSON strings.
_JSON_CONTROLS = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), *BIDI_CONTROLS)}


def dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False).translate(_JSON_CONTROLS)

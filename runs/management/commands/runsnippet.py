import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from runs.figures import comparisons, grids
from runs.figures.formatting import BIDI_CONTROLS, summary_lines, terminal_safe, watt_hours
from runs.models import MAX_REPETITIONS, Run, Series, Worker, run_json, series_json
from runs.queue import execution, heartbeat, tasks


class Command(BaseCommand):
    help = (
        "Run a Python snippet in the sandbox, measure it with CodeCarbon, store the run "
        "and print its output and metrics. Exits 0 only when the snippet succeeded."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path",
            nargs="+",
            help="File with the snippet, or - to read stdin. Two to four files compare "
            "them; one file with several --env compares it on each environment.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--timeout", type=float, help="Wall-clock limit in seconds.")
        parser.add_argument("--country", help="3-letter ISO code of the grid (e.g. FRA).")
        parser.add_argument("--region", help="Region within the country (e.g. california).")
        parser.add_argument(
            "--env",
            action="append",
            help="The environment to run in (default: the default one; see snippetenv). "
            "Repeat it to compare: one per file, or several for one file.",
        )
        parser.add_argument(
            "--pairs",
            type=int,
            default=MAX_REPETITIONS,
            help=f"A comparison's rounds at most (default {MAX_REPETITIONS}): it runs until "
            "the answer is clear.",
        )
        parser.add_argument(
            "--stdin",
            metavar="FILE",
            help="A file the snippet reads on its standard input (default: none).",
        )

    def handle(
        self, *, path, json: bool, timeout, country, region, env, stdin, pairs, **options
    ) -> None:
        paths, envs = path, env or []
        if stdin == "-" and "-" in paths:
            raise CommandError("The snippet and its --stdin cannot both come from -.")
        if len(paths) > 1 or len(envs) > 1:
            return self.compare(paths, envs, stdin, pairs, json)
        code = self.read(paths[0])
        fields = {"source": Run.Source.CLI, "env": envs[0] if envs else None}
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
        tasks.stop_abandoned()
        try:
            run = Run.objects.submit(code, **fields)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        with Interrupt(lambda: Run.objects.get(pk=run.pk).cancel(), self.stderr) as interrupt:
            execution.execute(run, kind=Worker.Kind.CLI)
        heartbeat.stop()
        run.refresh_from_db()  # stopped before it started: execute stored nothing on it
        if json:
            self.stdout.write(dumps(run_json(run)))
        else:
            self.stdout.write(self.shown(run.stdout, self.stdout), ending="")
            self.stderr.write(self.shown(run.stderr, self.stderr), ending="")
            grid = grids.grid_of(run.country_iso_code, run.region)
            # The summary holds snippet-made text too: its error, its sections' names.
            summary = "\n".join(summary_lines(run, grid.name))
            self.stdout.write(self.shown(summary, self.stdout))
        interrupt.exit(succeeded=run.status == Run.Status.SUCCEEDED)

    def compare(self, paths: list[str], envs: list[str], stdin, pairs: int, json: bool) -> None:
        """Two to four variants (files, or one file on several environments) in rounds
        until the answer is clear, run here one after another as the workers would."""
        if len(paths) == 1:
            codes = [self.read(paths[0])] * len(envs)
        elif len(envs) <= 1:
            codes, envs = [self.read(p) for p in paths], envs * len(paths)
        elif len(envs) == len(paths):
            codes = [self.read(p) for p in paths]
        else:
            raise CommandError("Give one --env for all the files, or one per file.")
        tasks.stop_abandoned()
        try:
            series = Series.objects.submit(
                Series.Kind.COMPARE,
                codes,
                pairs,
                envs=envs or None,
                stdins=[self.read(stdin)] if stdin is not None else None,
                source=Run.Source.CLI,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        with Interrupt(lambda: Series.objects.get(pk=series.pk).stop(), self.stderr) as interrupt:
            while not interrupt.signal:
                for run in series.runs.filter(status=Run.Status.QUEUED).order_by(
                    "repetition", "variant"
                ):
                    if interrupt.signal:
                        break
                    execution.execute(run, kind=Worker.Kind.CLI)
                    run.refresh_from_db(fields=["status"])
                    if not json:
                        self.stderr.write(
                            f"{run.variant}{run.repetition} {run.get_status_display()}"
                        )
                if interrupt.signal:
                    break
                count = series.next_round(series.runs_for_results())
                if not count:
                    series.finish()
                    break
                series.add_round(count)
        if interrupt.signal:
            series.stop()  # a round its stop did not see yet: added while it stopped
        heartbeat.stop()
        series.refresh_from_db()
        failed = series.runs.exclude(status=Run.Status.SUCCEEDED).exists()
        if json:
            self.stdout.write(dumps(series_json(series)))
            interrupt.exit(succeeded=not failed)
            return
        results = series.results()
        summary = [f"{series.title} {series.public_id}", series.headline(results) or ""]
        for row in comparisons.ranking(results) or [
            comparisons.Ranked(v, n, results.variants[v], None)
            for v, n in zip(series.variants, series.names, strict=True)
        ]:
            energy = row.side.energy
            median = watt_hours(energy.median) if energy else "—"
            said = row.verdict if row.against is not None else "(the reference)"
            summary.append(f"   {row.name:<12} median {median:<12} {said}")
        self.stdout.write(self.shown("\n".join(summary), self.stdout))
        interrupt.exit(succeeded=not failed)

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


class Interrupt:
    """Ctrl+C (or a TERM) is the page's Stop button: the first asks `stop` to stop the
    run or the comparison, whose sandbox then ends within a second and is stored as
    Stopped with what it printed and used, and the command ends after its summary with
    128 + the signal's number. A second one ends the command at once (what ran is then
    the workers' reaper's)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: Callable[[], object], stderr):
        self.stop, self.stderr = stop, stderr
        self.signal = 0
        self.stopper: threading.Thread | None = None

    def __enter__(self) -> "Interrupt":
        # Signals reach the main thread only (call_command may come from another).
        main = threading.current_thread() is threading.main_thread()
        self.previous = {n: signal.signal(n, self.handle) for n in self.SIGNALS if main}
        return self

    def __exit__(self, kind, *exc) -> None:
        self.restore()
        if self.stopper is not None:
            self.stopper.join()
        if kind is KeyboardInterrupt:  # the second Ctrl+C: no traceback
            raise SystemExit(128 + signal.SIGINT)

    def exit(self, succeeded: bool) -> None:
        """The command's status: 0 only when all succeeded, 128 + the signal's number
        when one stopped it."""
        if self.signal:
            sys.exit(128 + self.signal)
        if not succeeded:
            sys.exit(1)

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def handle(self, number: int, frame) -> None:
        self.restore()  # the next one ends the command
        self.signal = number
        # Not in the handler itself: it runs between two steps of the main thread,
        # maybe in the middle of a query on the main thread's database connection.
        self.stopper = threading.Thread(target=self._stop, name="runsnippet-stop")
        self.stopper.start()
        self.stderr.write("Stopping; press Ctrl+C again to quit at once.")

    def _stop(self) -> None:
        try:
            self.stop()
        finally:
            connection.close()  # this thread's own


# JSON escapes only the controls below 0x20: DEL and the C1 controls (CSI, OSC, ...)
# would reach a terminal raw, and bidirectional controls reorder what a terminal shows.
# Escaped, they are the same JSON strings.
_JSON_CONTROLS = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), *BIDI_CONTROLS)}


def dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False).translate(_JSON_CONTROLS)

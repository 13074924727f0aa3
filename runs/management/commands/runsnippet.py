import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from runs.figures import comparisons, grids
from runs.figures.formatting import BIDI_CONTROLS, summary_lines, terminal_safe, watt_hours
from runs.models import MAX_REPETITIONS, Run, Series, Worker, run_json, series_json
from runs.queue import execution, heartbeat


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
        while True:
            for run in series.runs.filter(status=Run.Status.QUEUED).order_by(
                "repetition", "variant"
            ):
                execution.execute(run, kind=Worker.Kind.CLI)
                if not json:
                    self.stderr.write(f"{run.variant}{run.repetition} {run.get_status_display()}")
            count = series.next_round(series.runs_for_results())
            if not count:
                series.finish()
                break
            series.add_round(count)
        heartbeat.stop()
        failed = series.runs.exclude(status=Run.Status.SUCCEEDED).exists()
        if json:
            self.stdout.write(dumps(series_json(series)))
            if failed:
                sys.exit(1)
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
        if failed:
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

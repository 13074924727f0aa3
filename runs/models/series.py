"""Repeats and comparisons: runs of one snippet, or of two interleaved, and what they
say together (its numbers and words: runs.figures.comparisons)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from ..figures import breakdown, comparisons, stats
from ..figures.comparisons import Measured
from ..sandbox import environments
from ..snippets import diffs, outputs
from . import links
from .fleet import ControlRun, Repeatability
from .rules import (
    VARIANTS,
    clean_code,
    clean_env,
    clean_repetitions,
    clean_section,
    clean_stdin,
    clean_variants,
)
from .run import Run, sent_by


class SeriesQuerySet(models.QuerySet["Series"]):
    def submit(
        self,
        kind: str,
        codes: Sequence[object],
        repetitions: int,
        run_fields: dict[str, Any] | None = None,
        envs: Sequence[str | None] | None = None,
        stdins: Sequence[str | None] | None = None,
        **fields: Any,
    ) -> Series:
        """Create a series and its runs, interleaved: A1, B1, A2, B2, ... (the caller
        queues them, as for single runs); `run_fields` are set on every run (its grid),
        `envs` name each variant's environment (the default where None), `stdins` what
        A and B read on standard input (B shares A's where it has none; C and D read
        A's). A comparison has two to four variants (`codes`).
        A comparison runs until its answer is clear, at most `repetitions` pairs: only
        its first round is created here (the queue adds the next, runs.queue.tasks)."""
        repetitions = clean_repetitions(repetitions, repetitions)
        checked = clean_variants(codes) if kind == Series.Kind.COMPARE else [clean_code(codes[0])]
        sides = [clean_env(env) for env in (envs or [None] * len(codes))]
        inputs = [clean_stdin(text) for text in (stdins or [""])]
        clean_section(checked, fields.get("section", ""))
        return self.start(kind, checked, repetitions, run_fields, sides, inputs, **fields)

    def start(
        self,
        kind: str,
        codes: list[str],
        repetitions: int,
        run_fields: dict[str, Any] | None,
        envs: list[str],
        stdins: list[str],
        **fields: Any,
    ) -> Series:
        """`submit`'s series, from checked input (a form's cleaned data, or `submit`'s)."""
        if kind == Series.Kind.COMPARE:
            fields["max_pairs"] = repetitions
            repetitions = Series.first_round(repetitions)
            # Two variants are shown side by side; more, each in turn.
            fields["diff"] = diffs.for_storage(codes[0], codes[1]) if len(codes) == 2 else None
        with transaction.atomic():
            series = self.create(
                kind=kind,
                code_a=codes[0],
                code_b=codes[1] if len(codes) > 1 else "",
                env_a=envs[0],
                env_b=envs[1] if len(envs) > 1 else "",
                stdin_a=stdins[0],
                stdin_b=stdins[1] if len(stdins) > 1 and len(codes) > 1 else stdins[0],
                others=[
                    {"code": code, "env": env}
                    for code, env in zip(codes[2:], envs[2:] or [""] * len(codes[2:]), strict=True)
                ],
                repetitions=repetitions,
                **fields,
            )
            series.add_runs(range(1, repetitions + 1), **(run_fields or {}))
        return series

    def stalled(self) -> SeriesQuerySet:
        """Comparisons not finished with no run waiting or running: their last round
        ended but nobody started the next (its worker died in between). A terminal's
        comparison is its own process's to continue (runsnippet)."""
        return (
            self.filter(kind=Series.Kind.COMPARE, max_pairs__isnull=False, finished_at__isnull=True)
            .exclude(runs__status__in=Run.IN_FLIGHT)
            .exclude(source=Run.Source.CLI)
        )


class Series(models.Model):
    """Repetitions of one snippet, or of two to four interleaved for a comparison."""

    class Kind(models.TextChoices):
        REPEAT = "repeat", "Repeat"
        COMPARE = "compare", "Comparison"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=Kind, default=Kind.REPEAT)
    code_a = models.TextField()
    code_b = models.TextField(blank=True, default="")
    # Each side's environment (runs.sandbox.environments): a comparison may run the same
    # code in two. "": a series from before environments (the default then).
    env_a = models.CharField(max_length=32, blank=True, default="")
    env_b = models.CharField(max_length=32, blank=True, default="")
    # What each side reads on its standard input (the same unless set apart).
    stdin_a = models.TextField(blank=True, default="")
    stdin_b = models.TextField(blank=True, default="")
    # A comparison's variants after B (C, D): [{"code", "env"}], each reading A's input.
    others = models.JSONField(default=list, blank=True)
    repetitions = models.PositiveSmallIntegerField()
    # The first run of each side is a warm-up: kept and shown, left out of the statistics.
    warmup = models.BooleanField(default=False)
    # Compare this named section of both snippets (runs.figures.breakdown) instead of the runs.
    section = models.CharField(max_length=100, blank=True, default="")
    session_key = models.CharField(max_length=40, blank=True, default="")
    client = models.CharField(max_length=64, blank=True, default="")
    source = models.CharField(max_length=8, choices=Run.Source, default=Run.Source.WEB)
    created_at = models.DateTimeField(default=timezone.now)
    # A comparison runs in rounds until its answer is clear, up to this many pairs
    # (stats.decide). None: a fixed number of pairs, all queued at once (older ones).
    max_pairs = models.PositiveSmallIntegerField(null=True, blank=True)
    # When a comparison that runs until clear stopped, and why, if not clear.
    finished_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=300, blank=True, default="")
    # Its hosts' repeatability when it stopped ([Repeatability.as_dict()]).
    host_repeatability = models.JSONField(null=True, blank=True)
    # A comparison's code side by side, computed once when it is created (runs.snippets.diffs);
    # None: too long to show so.
    diff = models.JSONField(null=True, blank=True)

    objects = SeriesQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.public_id}"

    def get_absolute_url(self) -> str:
        name = "runs:compare-detail" if self.kind == self.Kind.COMPARE else "runs:series-detail"
        return reverse(name, kwargs={"public_id": self.public_id})

    def short_url(self) -> str:
        """The link to share: its short id's while that names it alone."""
        short = links.short_id(self)
        if short is None:
            return self.get_absolute_url()
        name = "runs:short-compare" if self.kind == self.Kind.COMPARE else "runs:short-series"
        return reverse(name, args=[short])

    def embed_url(self) -> str:
        return reverse("runs:series-embed", kwargs={"public_id": self.public_id})

    def ordered_runs(self) -> list[Run]:
        return list(self.runs.order_by("repetition", "variant"))

    # What its medians, verdict and next round are computed from (`results`): not the
    # runs' code and output, up to 60 of each.
    RESULT_FIELDS = [
        "series",
        "variant",
        "repetition",
        "status",
        "energy_kwh",
        "emissions_g",
        "duration_s",
        "cpu_seconds",
        "baseline_energy_kwh",
        "baseline_cpu_seconds",
        "carbon_intensity_g_per_kwh",
        "sections",
        "stdout_digest",
    ]

    def runs_for_results(self) -> list[Run]:
        return list(self.runs.order_by("repetition", "variant").only(*self.RESULT_FIELDS))

    @property
    def variants(self) -> str:
        if self.kind != self.Kind.COMPARE:
            return "A"
        return VARIANTS[: 2 + len(self.others)]

    @property
    def title(self) -> str:
        """What its pages call it: "Repeated run", "A/B comparison", "3-way comparison"."""
        if self.kind != self.Kind.COMPARE:
            return "Repeated run"
        return "A/B comparison" if not self.is_n_way else f"{len(self.variants)}-way comparison"

    @property
    def is_n_way(self) -> bool:
        """A comparison of more than two variants: each against A, ranked."""
        return len(self.variants) > 2

    @property
    def variant_labels(self) -> dict[str, str]:
        """How the page names each variant: a repeat has one, which is not an "A"."""
        if self.kind != self.Kind.COMPARE:
            return {"A": "Runs"}
        return {variant: variant for variant in self.variants}

    def _other(self, variant: str) -> dict[str, str]:
        other: dict[str, str] = self.others[VARIANTS.index(variant) - 2]
        return other

    def code_of(self, variant: str) -> str:
        if variant in "AB":
            return self.code_b if variant == "B" else self.code_a
        return self._other(variant)["code"]

    def stdin_of(self, variant: str) -> str:
        return self.stdin_b if variant == "B" else self.stdin_a

    @property
    def inputs_apart(self) -> bool:
        """A comparison whose two sides read different standard inputs."""
        return self.kind == self.Kind.COMPARE and self.stdin_a != self.stdin_b

    def env_of(self, variant: str) -> str:
        if variant in "AB":
            env = self.env_b if variant == "B" else self.env_a
        else:
            env = self._other(variant)["env"]
        return env or environments.default().name

    @property
    def across_environments(self) -> bool:
        """A comparison whose variants run in more than one environment."""
        return self.kind == self.Kind.COMPARE and len({self.env_of(v) for v in self.variants}) > 1

    @property
    def environments_named(self) -> str:
        """ "A cpython-3.12, B pypy-3.10": each variant's environment, in a line."""
        return ", ".join(f"{v} {self.env_of(v)}" for v in self.variants)

    @property
    def names(self) -> tuple[str, ...]:
        """How its verdicts name each variant: with its environment where they differ."""
        if not self.across_environments:
            return tuple(self.variants)
        return tuple(f"{v} ({self.env_of(v)})" for v in self.variants)

    def add_runs(self, repetitions: range, **run_fields: Any) -> list[Run]:
        """Queued runs for these repetitions, interleaved A, B, (C, D,) A, B… (the
        caller queues them)."""
        return [
            Run.objects.add(
                self.code_of(variant),
                session_key=self.session_key,
                source=self.source,
                client=self.client,
                series=self,
                variant=variant,
                repetition=repetition,
                env=self.env_of(variant),
                stdin=self.stdin_of(variant),
                **run_fields,
            )
            for repetition in repetitions
            for variant in self.variants
        ]

    def waiting_behind(self) -> int:
        """How many of its owner's other runs go before this series' next run: the fair
        queue runs one client's runs oldest first (0 while one of its own is running)."""
        if self.finished_at or self.runs.filter(status=Run.Status.RUNNING).exists():
            return 0
        queued = self.runs.filter(status=Run.Status.QUEUED).order_by("created_at", "id").first()
        if queued is None:
            return 0
        return (
            Run.objects.of_client(self.client)
            .filter(status__in=Run.IN_FLIGHT, created_at__lt=queued.created_at)
            .exclude(series=self)
            .count()
        )

    @staticmethod
    def first_round(max_pairs: int) -> int:
        """The pairs a comparison of at most `max_pairs` starts with (and is admitted
        by: runs.models.limits)."""
        return stats.looks(max_pairs)[0]

    @property
    def runs_until_clear(self) -> bool:
        """A comparison that adds rounds until its answer is clear (not an older one
        whose pairs were all queued at once)."""
        return self.kind == self.Kind.COMPARE and self.max_pairs is not None

    @property
    def pair_cap(self) -> int:
        return self.max_pairs or self.repetitions

    @property
    def first_look(self) -> int:
        """After how many pairs the first verdict comes."""
        return stats.looks(self.pair_cap)[0]

    def completed_look(self, runs: list[Run]) -> int:
        """The pairs of the last look whose runs have all ended (0: none yet)."""
        first_unfinished = min(
            (run.number for run in runs if not run.is_over), default=self.repetitions + 1
        )
        done = 0
        for look in stats.looks(self.pair_cap):
            if look > self.repetitions or look >= first_unfinished:
                break
            done = look
        return done

    def is_finished(self, runs: list[Run]) -> bool:
        # A comparison stopped on request has its end before its last runs' (they stop
        # within a second): it is over once both are.
        if self.runs_until_clear and self.finished_at is None:
            return False
        return all(run.is_over for run in runs)

    def stoppable_by(self, session_key: str | None, client: str) -> bool:
        return sent_by(self, session_key, client)

    def stop(self, abandoned: bool = False) -> list[Run]:
        """Stop it for its author (or, `abandoned`, for the terminal that ran it and went
        away): no new round, and each of its runs still queued or running stopped
        (Run.cancel). The runs that were."""
        if self.runs_until_clear and self.finished_at is None:
            why = "its terminal (runsnippet) went away" if abandoned else "on request"
            self.finish(
                f"Stopped {why} after {self.repetitions} pairs, before the answer was clear."
            )
        reason = Run.ABANDONED if abandoned else Run.STOPPED_BEFORE_START
        in_flight = self.runs.filter(status__in=Run.IN_FLIGHT).only("pk", "status")
        return [run for run in in_flight if run.cancel(reason)]

    def next_round(self, runs: list[Run]) -> int:
        """How many pairs a comparison that runs until clear adds now: the next round
        once every run so far has ended and the answer is not clear (0 otherwise)."""
        if not self.runs_until_clear or self.finished_at or not all(r.is_over for r in runs):
            return 0
        results = self.results(runs)
        if not results.wants_more:
            return 0
        previous = max(
            (look for look in stats.looks(self.pair_cap) if look < self.repetitions), default=0
        )
        first, *others = (results.variants[v].measured for v in self.variants)
        if not any(
            n in first and n in other
            for other in others
            for n in range(previous + 1, self.repetitions + 1)
        ):
            return 0  # the last round gave no pair to compare: more would not either
        later = [look for look in stats.looks(self.pair_cap) if look > self.repetitions]
        return later[0] - self.repetitions if later else 0

    def add_round(self, count: int) -> list[Run]:
        """`count` more pairs on the same grid, numbered after the last: created once,
        whoever else tries at the same moment (the runs' worker, a repair)."""
        first = self.runs.order_by("repetition").first()
        assert first is not None, "a series has its first round from the start"
        grid = {"country_iso_code": first.country_iso_code, "region": first.region}
        with transaction.atomic():
            added = Series.objects.filter(
                pk=self.pk, repetitions=self.repetitions, finished_at__isnull=True
            ).update(repetitions=models.F("repetitions") + count)
            if not added:
                return []
            start = self.repetitions + 1
            self.repetitions += count
            return self.add_runs(range(start, self.repetitions + 1), follow_up=True, **grid)

    def finish(self, reason: str = "") -> None:
        """A comparison that runs until clear stops: with the repeatability of its hosts
        as it was then, which its page keeps showing."""
        now = timezone.now()
        self.finished_at, self.stop_reason = now, reason[:300]
        self.host_repeatability = [spread.as_dict() for spread in self._host_spreads_at(now)]
        Series.objects.filter(pk=self.pk, finished_at__isnull=True).update(
            finished_at=self.finished_at,
            stop_reason=self.stop_reason,
            host_repeatability=self.host_repeatability,
        )

    def is_warmup(self, run: Run) -> bool:
        """The first run of each side, kept but left out of the statistics if asked."""
        return self.warmup and run.repetition == 1

    def measured(self, run: Run) -> Measured | None:
        """What this series compares of `run`: the whole run, or its named section
        (None when the run did not report that section: it never left it)."""
        if not self.section:
            own_cpu = None
            if run.cpu_seconds is not None and run.baseline_cpu_seconds is not None:
                own_cpu = max(run.cpu_seconds - run.baseline_cpu_seconds, 0.0)
            return Measured(
                run.energy_kwh, run.net_energy_kwh, run.duration_s, run.emissions_g,
                run.cpu_seconds, own_cpu, run.energy_range,
            )  # fmt: skip
        part = breakdown.section_figures(run, self.section)
        if part is None:
            return None
        intensity = run.carbon_intensity_g_per_kwh or 0.0
        return Measured(
            part["energy_kwh"], None, part["duration_s"], part["energy_kwh"] * intensity,
            part["cpu_seconds"], part["cpu_seconds"], run.range_of(part),
        )  # fmt: skip

    def results(self, runs: list[Run] | None = None) -> comparisons.Results:
        """Per-variant summaries and, for a comparison, B against A, from every run that
        ran to its end or to a limit (warm-up runs left out): a failed or timed-out run's
        energy was spent, and leaving it out would rest the verdict on the runs that
        survived. Of the whole runs or of the series' section; what they say is
        runs.figures.comparisons' to work out."""
        runs = self.ordered_runs() if runs is None else runs
        variants = {}
        for variant in self.variants:
            mine = [r for r in runs if r.variant == variant]
            counted = [r for r in mine if not self.is_warmup(r)]
            measured = [
                r for r in counted if r.status in Run.MEASURED_ENDINGS and r.energy_kwh is not None
            ]
            variants[variant] = comparisons.side(
                {r.number: self.measured(r) for r in measured},
                runs=mine,
                succeeded=sum(1 for r in measured if r.status == Run.Status.SUCCEEDED),
                failed=sum(1 for r in counted if r.is_over and r.status != Run.Status.SUCCEEDED),
                ended_badly={r.number for r in measured if r.status != Run.Status.SUCCEEDED},
                counted=len(measured),
            )
        result = comparisons.Results(
            names=self.names,
            variants=variants,
            finished=sum(1 for r in runs if r.is_over),
            total=len(runs),
            is_over=self.is_finished(runs),
        )
        if self.is_n_way:
            comparisons.compare_each(result, self.completed_look(runs), self.pair_cap)
        elif self.kind == self.Kind.COMPARE:
            comparisons.compare(result, self.completed_look(runs), self.pair_cap)
        result.failures = comparisons.failures(variants, self.names)
        result.warnings = comparisons.warnings(
            result,
            repeat=self.kind == self.Kind.REPEAT,
            labels=self.variant_labels,
            section=self.section,
            stop_reason=self.stop_reason,
        )
        return result

    def outputs(self, runs: list[Run], other: str = "B") -> outputs.Agreement | None:
        """Whether its runs printed the same: A's and `other`'s of each pair, or each
        of a repeat's runs against its first (None until two have ended). Reads no
        output but the first differing pair's, for its diff."""
        ended = {
            (r.variant, r.number): r
            for r in runs
            if r.status in Run.MEASURED_ENDINGS and r.stdout_digest
        }
        if self.kind == self.Kind.COMPARE:
            pairs = [
                (n, a, ended[(other, n)])
                for (v, n), a in ended.items()
                if v == "A" and (other, n) in ended
            ]
        else:
            first = min(ended.values(), key=lambda r: r.number, default=None)
            pairs = [(r.number, first, r) for r in ended.values() if first and r is not first]
        if not pairs:
            return None
        pairs.sort(key=lambda pair: pair[0])
        differing = [n for n, a, b in pairs if a.stdout_digest != b.stdout_digest]
        text = ""
        if differing:
            n, a, b = next(pair for pair in pairs if pair[0] == differing[0])
            stored = dict(Run.objects.filter(pk__in=[a.pk, b.pk]).values_list("pk", "stdout"))
            if self.kind == self.Kind.COMPARE:
                labels = (f"A, pair {n}", f"{other}, pair {n}")
            else:
                labels = (f"run {a.repetition}", f"run {b.repetition}")
            text = outputs.diff(stored.get(a.pk, ""), stored.get(b.pk, ""), labels)
        return outputs.Agreement(len(pairs), differing, text)

    def headline(self, results: comparisons.Results) -> str | None:
        """A comparison's one answer, in plain words (None before its first look)."""
        if self.is_n_way:
            return comparisons.ranking_headline(results)
        return comparisons.headline(results)

    def basis(self, results: comparisons.Results, runs: list[Run]) -> str:
        """What the headline rests on, and why time may say otherwise."""
        provenance: dict[str, Any] = next(
            (r.provenance for r in runs if r.provenance.get("cpu")), {}
        )
        return comparisons.basis(results, provenance)

    def host_spreads(self) -> list[Repeatability]:
        """The repeatability of the hosts this ran on: as it was when it stopped, or,
        while it runs, as it is now."""
        if self.host_repeatability is not None:
            # Comparisons stored before one host was counted once hold it once per run.
            stored = {s["host"]: s for s in self.host_repeatability}
            return [Repeatability.from_dict(s) for s in stored.values()]
        return self._host_spreads_at(timezone.now())

    def _host_spreads_at(self, moment: datetime) -> list[Repeatability]:
        # No ordering: DISTINCT over the runs' default ordering would keep every run's row.
        hosts = self.runs.order_by().values_list("provenance__host", flat=True).distinct()
        spreads = [ControlRun.objects.repeatability(host, at=moment) for host in hosts if host]
        return [spread for spread in spreads if spread]

    def verdicts(self, results: comparisons.Results) -> comparisons.Verdicts:
        """Each compared figure, B against A, for the page's breakdown and the export."""
        return comparisons.verdicts(results)

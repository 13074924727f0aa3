"""The app's models, one module per thing modelled; imported here, where Django and
the rest of the app look for them."""

from .busy import RESULT_WRITE_SECONDS
from .fleet import (
    CONTROL_RUNS_KEPT,
    CONTROL_RUNS_NEEDED,
    REPEATABILITY_MAX_AGE,
    REPEATABILITY_RUNS,
    UNSTABLE_HOST_CV,
    Baseline,
    ControlRun,
    Repeatability,
    Worker,
)
from .formats import run_json, series_json
from .output import Offsets, OutputChunk
from .rules import (
    MAX_REPETITIONS,
    MIN_PAGE_TIMEOUT,
    VARIANTS,
    clean_code,
    clean_env,
    clean_repetitions,
    clean_section,
    clean_stdin,
    clean_timeout,
    clean_variants,
)
from .run import Run
from .series import Series
from .service import LoginFailure, Maintenance, StoredBytes

__all__ = [
    "CONTROL_RUNS_KEPT",
    "CONTROL_RUNS_NEEDED",
    "MAX_REPETITIONS",
    "MIN_PAGE_TIMEOUT",
    "REPEATABILITY_MAX_AGE",
    "REPEATABILITY_RUNS",
    "RESULT_WRITE_SECONDS",
    "UNSTABLE_HOST_CV",
    "VARIANTS",
    "Baseline",
    "ControlRun",
    "LoginFailure",
    "Maintenance",
    "Offsets",
    "OutputChunk",
    "Repeatability",
    "Run",
    "Series",
    "StoredBytes",
    "Worker",
    "clean_code",
    "clean_env",
    "clean_repetitions",
    "clean_section",
    "clean_stdin",
    "clean_timeout",
    "clean_variants",
    "run_json",
    "series_json",
]

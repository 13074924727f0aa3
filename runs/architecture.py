"""The app's parts, highest first (README "Code map"). A module may import from its
own part and from the parts below it, never from one above; and no module imports
itself back through others. tests/test_architecture.py holds the code to this.

- web: what answers HTTP, and its helpers (who a client is, what it may do now).
- queue: a submitted run's way to a worker and through it (`execution`).
- hand-over: the queue's fast path on one machine (`runs.queue.direct`).
- models: what is stored, and the rules over stored data (limits, retention).
- figures and snippets: numbers and words from measurements, and reading a
  snippet's text; no database.
- sandbox: running a snippet in isolation; no database, no energy.
"""

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "web",
        (
            "runs.admin",
            "runs.api",
            "runs.apps",
            "runs.checks",
            "runs.clients",
            "runs.export",
            "runs.forms",
            "runs.logins",
            "runs.management",
            "runs.middleware",
            "runs.pages",
            "runs.templatetags",
            "runs.urls",
            "runs.views",
        ),
    ),
    ("queue", ("runs.queue",)),
    ("hand-over", ("runs.queue.direct",)),
    ("models", ("runs.models", "runs.migrations")),
    ("figures", ("runs.figures", "runs.snippets")),
    ("sandbox", ("runs.sandbox",)),
    ("architecture", ("runs.architecture", "runs")),
]


def layer_of(module: str) -> int:
    """The position of `module`'s part in LAYERS (0 is the highest); the longest
    prefix decides, so `runs` itself (the package) is the last."""
    best, depth = len(LAYERS), -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    return best

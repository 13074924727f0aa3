"""Starter snippets offered on the playground page, and the comparisons it opens."""

from __future__ import annotations

from typing import TypedDict


class Comparison(TypedDict):
    """A starter that opens the comparison page with two snippets ready to compare."""

    slug: str
    title: str
    code_a: str
    code_b: str
    # Side B in another environment: the first declared one that is not A's ("" keeps
    # both in the default), to compare interpreters rather than code.
    other_env: bool


EXAMPLES = [
    {
        "slug": "busy-loop",
        "title": "Busy loop (a fixed amount of work)",
        "code": """# The same ten million additions on every run: a busy
# host makes it take longer, never do less, so runs compare
# (about 1 s of one CPU thread on a quiet 2-core VM).
total = 0
for i in range(10_000_000):
    total += i
print(f"{total:,}")
""",
    },
    {
        "slug": "sections",
        "title": "Where the energy goes: named sections",
        "code": """import random

from playground import section

# Each section's CPU time and energy are measured by the sandbox, not by this
# code: the run's page shows them in a table, nested ones indented.
with section("make data"):
    random.seed(1)
    data = [random.random() for _ in range(300_000)]

with section("sort"):
    ordered = sorted(data)

with section("sum of squares"):
    total = sum(x * x for x in data)

print(f"{ordered[0]:.6f} {total:,.0f}")
""",
    },
    {
        "slug": "sum-two-ways",
        "title": "Summing: a Python loop vs. numpy",
        "code": """import numpy as np

values = np.arange(5_000_000, dtype=np.float64)

total = 0.0
for v in values.tolist():  # pure Python
    total += v
print("loop ", total)

print("numpy", values.sum())  # vectorised: try this line alone
""",
    },
    {
        "slug": "numpy-matmul",
        "title": "numpy: matrix multiplication",
        "code": """import numpy as np

rng = np.random.default_rng(0)
a = rng.standard_normal((800, 800))
b = rng.standard_normal((800, 800))
for _ in range(5):
    c = a @ b
print("checksum", round(float(c.sum()), 3))
""",
    },
    {
        "slug": "sleep",
        "title": "Waiting costs little: sleep(2)",
        "code": """import time

print("sleeping...", flush=True)
time.sleep(2)
print("done: compare this run's energy with the busy loop")
""",
    },
]

SORT_SETUP = """import random

random.seed(42)
data = [random.random() for _ in range(2_000)]
"""
BUBBLE_SORT = """
def bubble_sort(items):
    items = list(items)
    for i in range(len(items)):
        for j in range(len(items) - 1 - i):
            if items[j] > items[j + 1]:
                items[j], items[j + 1] = items[j + 1], items[j]
    return items
"""
INTERPRETER_LOOP = """# The same pure-Python loop in each interpreter: a JIT (PyPy) or not.
total = 0
for i in range(5_000_000):
    total += i * i % 7
print(total)
"""

# Starters that open the comparison page (the playground's picker lists them too).
COMPARISONS: list[Comparison] = [
    {
        "slug": "compare-sorting",
        "title": "Compare: sorted() vs. a hand-written bubble sort",
        "code_a": f"# A: bubble sort\n{SORT_SETUP}{BUBBLE_SORT}\nprint(bubble_sort(data)[:3])\n",
        "code_b": f"# B: the built-in sorted()\n{SORT_SETUP}\nprint(sorted(data)[:3])\n",
        "other_env": False,
    },
    {
        "slug": "compare-interpreters",
        "title": "Compare interpreters: one loop in two environments",
        "code_a": INTERPRETER_LOOP,
        "code_b": INTERPRETER_LOOP,
        "other_env": True,
    },
]


def comparison(slug: str) -> Comparison | None:
    return next((c for c in COMPARISONS if c["slug"] == slug), None)


# The comparison page's starting pair: the same sum, two ways.
COMPARE_A = """# A: summing in a Python loop
total = 0
for i in range(3_000_000):
    total += i
print(total)
"""
COMPARE_B = """# B: the built-in sum()
total = sum(range(3_000_000))
print(total)
"""

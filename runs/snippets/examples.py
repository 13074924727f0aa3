"""Starter snippets offered on the playground page."""

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
        "slug": "sort-two-ways",
        "title": "Sorting: sorted() vs. a hand-written bubble sort",
        "code": """import random

random.seed(42)
data = [random.random() for _ in range(2_000)]

def bubble_sort(items):
    items = list(items)
    for i in range(len(items)):
        for j in range(len(items) - 1 - i):
            if items[j] > items[j + 1]:
                items[j], items[j + 1] = items[j + 1], items[j]
    return items

# Swap the two lines below and compare the energy of each run.
result = bubble_sort(data)
# result = sorted(data)
print(result[:3])
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

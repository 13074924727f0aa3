"""The layout's promise (runs.architecture, README "Code map"): imports go one way, from
a part to its own or a lower one, and no module comes back to itself through others."""

import ast
import re
from pathlib import Path

from runs.architecture import LAYERS, layer_of

RUNS = Path(__file__).resolve().parent.parent / "runs"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(RUNS.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in RUNS.rglob("*.py")}


def imports_of(module: str) -> set[str]:
    """The app's modules `module` imports, anywhere in it (type-only ones included: a
    layer is a layer for the reader too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from package import module` imports the module; `from module import name`
            # the module.
            names = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_belongs_to_a_declared_part():
    undeclared = [m for m in MODULES if layer_of(m) == len(LAYERS)]
    assert undeclared == []


def test_no_module_imports_from_a_higher_part():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if layer_of(target) < layer_of(module)
    ]
    assert upward == []


def test_no_module_imports_itself_back_through_others():
    cycles = []
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_check_sees_imports_that_would_break_the_rules():
    # The walk above is only as good as its reading of imports: an upward and a
    # circular import, written as the app writes them, are found.
    assert "runs.figures.stats" in GRAPH["runs.figures.comparisons"]
    assert "runs.queue.direct.protocol" in GRAPH["runs.queue.tasks"]  # `from .direct import`
    assert "runs.models" in GRAPH["runs.views"]
    assert layer_of("runs.views") < layer_of("runs.queue.tasks") < layer_of("runs.models.run")
    assert layer_of("runs.models.run") < layer_of("runs.figures.stats")
    assert layer_of("runs.figures.stats") < layer_of("runs.sandbox.watch")


def code_map() -> dict[str, str]:
    """README's code map: each part's row, by the part's name."""
    readme = (RUNS.parent / "README.md").read_text()
    section = readme.split("### Code map", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): "|".join(cells) for cells in rows[2:]}  # past the header


def test_readme_code_map_matches_the_tree():
    parts = code_map()
    assert list(parts) == [name for name, _ in LAYERS if name != "architecture"]
    for name, row in parts.items():
        for path in re.findall(r"`(runs/[\w/.]+)`", row):
            assert (RUNS.parent / path).exists(), f"{name}: {path} is not in the tree"
        # Every module of a package the row names is named in it.
        for package in re.findall(r"`runs/([\w/]+)/`", row):
            for module in sorted((RUNS / package).glob("*.py")):
                if module.stem != "__init__":
                    assert f"`{module.stem}`" in row, f"{name}: {package}/{module.name} unnamed"
    # And every package of the app has a row.
    named = {p for row in parts.values() for p in re.findall(r"`runs/([\w/]+)/`", row)}
    packages = {p.parent.name for p in RUNS.glob("*/__init__.py")} - {"migrations"}
    assert packages - {"management", "templatetags"} <= named

"""The house has no circles and no stairs going up: every import of the package, at module level or inside a
function, goes to a module of the same stage or an earlier one, and no modules import each other in a circle.

The stages follow the data path (DEVELOPERS.md): corpus -> vocab -> data -> network -> trace -> features/analysis ->
comparison -> plots/report -> callback, CLI, Hub, serve. The imports are read from the source with ``ast`` (nothing
is imported), so a lazy import inside a function counts as much as one at the top; so do ``TYPE_CHECKING`` imports,
except the top-level package's own, which name its lazily exported API for type checkers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Stage of each top-level module or subpackage of lstm_interp (callbacks/ ships as lstm_interp.callbacks).
STAGES: dict[str, int] = {
    # shared utilities: files written whole, lazy exports, the version, manifests, the config, metrics
    "lstm_interp._io": 0, "lstm_interp._lazy": 0, "lstm_interp._version": 0, "lstm_interp.manifest": 0,
    "lstm_interp.config": 0, "lstm_interp.metrics": 0,
    "lstm_interp.vocab": 1,
    "lstm_interp.data": 2, "lstm_interp.ngram": 2,  # corpora and batches; the n-gram baseline counts characters
    "lstm_interp.models": 3,  # the network, its folder on disk, its Lightning module
    "lstm_interp.tracing": 4,
    "lstm_interp.features": 5, "lstm_interp.interventions": 5, "lstm_interp.analysis": 5,
    "lstm_interp.experiments": 5,
    "lstm_interp.comparison": 6,
    "lstm_interp.plots": 7, "lstm_interp.report": 7,
    "lstm_interp.callbacks": 8, "lstm_interp.demo_texts": 8, "lstm_interp.demo_findings": 8, "lstm_interp.demo": 8,
    "lstm_interp.hub": 8, "lstm_interp.serve": 8, "lstm_interp.cli": 8,
    "lstm_interp": 9,  # the top-level package: the API, exported lazily from every stage
}  # fmt: skip


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name), callbacks/ as lstm_interp.callbacks."""
    found = {}
    for top, prefix in ((ROOT / "lstm_interp", ["lstm_interp"]), (ROOT / "callbacks", ["lstm_interp", "callbacks"])):
        for path in sorted(top.rglob("*.py")):
            parts = prefix + list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that the module ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if name == "lstm_interp":
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    return {t for t in targets if t.split(".")[0] == "lstm_interp"} - {name}


def stage_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in STAGES:
            return STAGES[".".join(parts[:n])]
    raise KeyError(module)


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_stage() -> None:
    unplaced = []
    for module in package_modules():
        try:
            stage_of(module)
        except KeyError:
            unplaced.append(module)
    assert unplaced == [], f"place these in STAGES (tests/test_import_graph.py): {unplaced}"


def test_no_module_imports_from_a_later_stage() -> None:
    graph = import_graph()
    upward = sorted(
        f"{module} (stage {stage_of(module)}) imports {target} (stage {stage_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if stage_of(target) > stage_of(module)
    )
    assert upward == [], "imports that run back up the data path:\n" + "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert circles(import_graph()) == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The reader sees lazy imports, relative imports and circles (so the two tests above are not vacuous)."""
    source = ROOT / "lstm_interp" / "models" / "char_lstm.py"
    modules = package_modules()
    assert "lstm_interp.models.model_folder" in imported("lstm_interp.models.char_lstm", source, modules)
    lazy = tmp_path / "lazy.py"
    lazy.write_text(
        "def push(model):\n    from lstm_interp.hub.push_to_hub import push_to_hub\n    from . import checkpoint\n"
    )
    found = imported("lstm_interp.models.lazy", lazy, modules)
    assert found == {"lstm_interp.hub.push_to_hub", "lstm_interp.models.checkpoint"}
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert stage_of("lstm_interp.hub.load_pretrained") > stage_of("lstm_interp.models.char_lstm")

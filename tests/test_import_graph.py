"""The package's import graph has no cycles and no upward imports, lazy (function-level) imports included.

Every module under ``src/diamond_kedro`` is parsed with ``ast`` (nothing is imported), every ``import`` /
``from ... import`` anywhere in it is collected (module level, inside functions, under ``TYPE_CHECKING``),
and the module graph is checked against the layers below: a module may import its own package and the
layers under it, never one above. A lazy import hides a cycle from Python, not from this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import diamond_kedro

PACKAGE = "diamond_kedro"
ROOT = Path(diamond_kedro.__file__).resolve().parent

# Lowest first. The first part of a module's name below ``diamond_kedro`` gives its layer.
LAYERS: list[tuple[str, ...]] = [
    ("", "errors"),  # the package root, the user-facing error base class
    ("utils", "reporting"),  # atomic writes, locks, state files, kernel-choice cache; the metrics sink
    ("replay", "distributed"),  # the Arrow replay store and its samplers; DDP helpers over replay batches
    ("models",),  # torch modules: blocks < U-Net < denoiser / reward-end model / actor-critic < agent
    ("envs",),  # Atari, Catch, the world-model env, the collector
    ("config",),  # validated Atari parameters (names the games of envs)
    ("evaluation",),  # fidelity, scores, videos, reports
    ("datasets",),  # static-dataset sources, the replay-store writer, the static_world_model config
    ("csgo",),  # the CS:GO dataset, config and generation, built on datasets
    ("builders",),  # config -> models, shared by training and play
    ("training",),  # the training runs
    ("play", "io"),  # play from run folders; Kedro dataset classes
    ("hooks",),
    ("sweep", "pipelines", "pipeline_registry", "settings", "cli", "convert_run", "__main__"),
]
# Same-or-lower layer, still not allowed: play rebuilds a run's models through ``builders``, never a run.
FORBIDDEN = {("play", "training")}


def module_files() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its file (``from pkg import mod`` names ``mod``)."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                if name == PACKAGE or name.startswith(PACKAGE + "."):
                    target = resolve(name)
                    if target and target != mod:
                        graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return found


def part(mod: str) -> str:
    return mod.split(".")[1] if "." in mod else ""


def layer(mod: str) -> int:
    for i, names in enumerate(LAYERS):
        if part(mod) in names:
            return i
    raise AssertionError(f"{mod}: its package {part(mod)!r} has no layer in tests/test_import_graph.py LAYERS")


def test_the_parser_sees_lazy_and_relative_imports():
    """The check below is only as good as the graph: a function-level import and ``from pkg import mod`` count."""
    graph = import_graph(module_files())
    # ``from diamond_kedro.config import parse_config`` inside a function of play.loading, nowhere else
    assert "diamond_kedro.config" in graph["diamond_kedro.play.loading"]
    # ``from diamond_kedro import distributed`` at module level
    assert "diamond_kedro.distributed" in graph["diamond_kedro.training.run_common"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    found = cycles(import_graph(module_files()))
    assert not found, "import cycles (lazy imports included): " + "; ".join(" <-> ".join(c) for c in found)


def test_no_upward_imports():
    graph = import_graph(module_files())
    bad = sorted(
        f"{mod} -> {target}"
        for mod, targets in graph.items()
        for target in targets
        if layer(target) > layer(mod) or (part(mod), part(target)) in FORBIDDEN
    )
    assert not bad, "imports from a lower layer to a higher one (see LAYERS):\n" + "\n".join(bad)

"""The package's shape, read from the source with ``ast`` (nothing is imported): no import cycles, every import
goes down the layer order of ARCHITECTURE.md, and no module grows past 500 lines.

What counts as an import: every ``import``/``from … import`` of an ``ishow`` module anywhere in a file — module
level, inside functions (lazy imports are real dependencies: they run when called) and under ``if TYPE_CHECKING:``
(a type-only import is still a dependency of the code's meaning: hiding ``app`` ↔ ``server`` behind one is how a
cycle survived before). Cycles are strongly connected components of that graph; there must be none.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "ishow"
MAX_LINES = 500

# Bottom to top. A module may import modules of its own layer or of any layer below, never above
# (ARCHITECTURE.md "Layers" lists the same table). Prefixes match a module and everything under it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("ishow", "ishow.errors", "ishow.audio_format", "ishow.events", "ishow.backoff", "ishow.logs")),
    ("config", ("ishow.config",)),
    (
        "core",
        (
            "ishow.policy",
            "ishow.boundary",
            "ishow.metrics",
            "ishow.mutes",
            "ishow.utterance_queue",
            "ishow.batcher",
            "ishow.ledger",
            "ishow.audio_buffer",
            "ishow.web_guard",
            "ishow.reload",
        ),
    ),
    ("edges", ("ishow.sources", "ishow.engine", "ishow.outputs")),
    ("stages", ("ishow.synth_stage", "ishow.pipeline", "ishow.intake", "ishow.player", "ishow.lifecycle")),
    ("http", ("ishow.control_surface", "ishow.server")),
    ("composition", ("ishow.daemon_controls", "ishow.app", "ishow.serve", "ishow.voices", "ishow.doctor")),
    ("entry", ("ishow.bench", "ishow.cli", "ishow.__main__")),
)

# Within a layer, pairs that must not meet (importer prefix → forbidden prefixes).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ishow.policy": ("ishow.web_guard", "ishow.reload"),  # pure functions of config and events
    "ishow.sources": ("ishow.engine", "ishow.outputs"),
    "ishow.engine": ("ishow.sources", "ishow.outputs"),
    "ishow.outputs": ("ishow.sources", "ishow.engine"),
    # the model and its accelerators know nothing of engines, workers or registries
    "ishow.engine.f5": ("ishow.engine.accel", *(f"ishow.engine.{m}" for m in ("base", "worker", "registry"))),
    "ishow.engine.accel": tuple(f"ishow.engine.{m}" for m in ("base", "worker", "registry", "f5_engine")),
    # the HTTP layer sees the control surface only, never the stages behind it
    "ishow.server": ("ishow.synth_stage", "ishow.pipeline", "ishow.intake", "ishow.player"),
    "ishow.control_surface": ("ishow.synth_stage", "ishow.pipeline", "ishow.intake", "ishow.player"),
}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    runs: bool  # False under ``if TYPE_CHECKING:``


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The ishow module a dotted name refers to (``ishow.a.b.Name`` → ``ishow.a.b``), or None if not ours."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                hidden.update(id(n) for n in ast.walk(child))
    return hidden


def imports_of(module: str) -> Iterator[Import]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    hidden = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None and target != module:
                yield Import(module, target, node.lineno, id(node) not in hidden)


ALL_IMPORTS = [imp for m in MODULES for imp in imports_of(m)]


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS (and ARCHITECTURE.md)"
    return rank


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in edges:
        graph[e.importer].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_the_reader_sees_real_imports() -> None:
    """Guards the guard: known edges of each kind are found (module level, lazy, TYPE_CHECKING)."""
    seen = {(i.importer, i.target, i.runs) for i in ALL_IMPORTS}
    assert ("ishow.app", "ishow.server", True) in seen  # module level
    assert ("ishow.engine.registry", "ishow.engine.base", True) in seen
    assert ("ishow.cli", "ishow.app", True) in seen  # inside a function
    assert ("ishow.server", "ishow.control_surface", False) in seen  # under TYPE_CHECKING
    assert len(MODULES) > 100 and len(ALL_IMPORTS) > 300


def test_no_import_cycles() -> None:
    assert cycles(ALL_IMPORTS) == []


def test_the_cycle_finder_finds_cycles() -> None:
    a, b, c = "ishow.app", "ishow.server", "ishow.errors"
    edges = [Import(a, b, 1, True), Import(b, c, 1, True), Import(c, a, 1, True)]
    assert cycles(edges) == [sorted([a, b, c])]
    assert cycles(edges[:2]) == []


def test_imports_follow_the_layer_order() -> None:
    wrong = []
    for imp in ALL_IMPORTS:
        if layer_of(imp.target) > layer_of(imp.importer):
            up = LAYERS[layer_of(imp.target)][0]
            wrong.append(f"{imp.importer}:{imp.line} imports {imp.target} (layer {up!r}, above it)")
        for prefix, banned in FORBIDDEN.items():
            if imp.importer == prefix or imp.importer.startswith(prefix + "."):
                hit = [b for b in banned if imp.target == b or imp.target.startswith(b + ".")]
                if hit:
                    wrong.append(f"{imp.importer}:{imp.line} imports {imp.target} ({prefix} never imports {hit[0]})")
    assert wrong == [], "\n".join(wrong)


def test_the_http_layer_sees_only_the_control_surface() -> None:
    server = {i.target for i in ALL_IMPORTS if i.importer == "ishow.server"}
    assert "ishow.control_surface" in server
    assert not {t for t in server if t.startswith(("ishow.app", "ishow.daemon_controls", "ishow.engine"))}


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_module_over_500_lines() -> None:
    files = [*PACKAGE.rglob("*.py"), *(REPO / "tools").rglob("*.py")]
    big = {
        str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert big == {}, f"split these by job (≤ {MAX_LINES} lines each): {big}"


# Imported by the package but not runtime dependencies: the extras in pyproject.toml, and upstream f5_tts/vocos
# that ``ishow bench`` times when they happen to be installed.
OPTIONAL_IMPORTS = {
    "ray": "cluster",
    "starlette": "cluster",
    "onnxruntime": "onnx",
    "tensorrt": "tensorrt",
    "cudnn": "cudnn",  # nvidia-cudnn-frontend (opt-in attention kernel)
}
NOT_DEPENDENCIES = {"f5_tts", "vocos", "triton"}  # triton: part of torch's CUDA wheels, imported only where present
IMPORT_NAMES = {"pyyaml": "yaml", "prometheus-client": "prometheus_client", "espeakng-loader": "espeakng_loader"}


def test_runtime_dependencies_are_what_the_runtime_imports() -> None:
    import re
    import sys
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {
        IMPORT_NAMES.get(name, name.replace("-", "_"))
        for name in (re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"])
    }
    imported: set[str] = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"ishow"} - NOT_DEPENDENCIES
    for name, extra in OPTIONAL_IMPORTS.items():
        assert name in third_party and extra in project["optional-dependencies"], (name, extra)
    assert declared == third_party - set(OPTIONAL_IMPORTS)


def test_architecture_md_states_these_rules() -> None:
    """ARCHITECTURE.md's layer table is this test's LAYERS (same layers, same order, same modules), and short."""
    import re

    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 150
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    table = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("layer", "") and not cells[0].startswith("-"):
            names = re.findall(r"`([^`]+)`", cells[1])
            table.append((cells[0], tuple(n if n == "ishow" else f"ishow.{n}" for n in names if n != "ishow.")))
    assert table == [(name, prefixes) for name, prefixes in LAYERS]

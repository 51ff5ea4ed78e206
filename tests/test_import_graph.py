"""The package's import graph: no cycle, and every import points to the same or an earlier stage.

The stage order is declared once, in ``docs/architecture.md`` (the numbered list under
"Stage order"); this test reads it from there. The graph is built with :mod:`ast` from every
``import`` of every module of ``bids_decode``, the ones inside functions included, so nothing
is imported to check it. Three rules:

1. no cycle between modules (not even inside one folder);
2. a module imports only modules of its own stage or of an earlier one;
3. no private module (``_name.py``) is imported from outside its folder, and an import inside a
   function is only there to keep a heavy dependency (torch, torchvision) off the import path
   of those who do not need it: its target must import one of them, itself or through its own
   top-level imports.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "bids_decode"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
HEAVY = {"torch", "torchvision"}
STAGE_LINE = re.compile(r"^\s*(\d+)\.\s+((?:`[\w.]+`(?:,\s*)?)+)")


def stage_order(text: str) -> dict[str, int]:
    """``{stage name: rank}`` from the numbered list under the "Stage order" heading."""
    section = text.split("## Stage order", 1)[1].split("\n## ", 1)[0]
    ranks: dict[str, int] = {}
    for line in section.splitlines():
        m = STAGE_LINE.match(line)
        if m:
            for name in re.findall(r"`([\w.]+)`", m.group(2)):
                ranks[name] = int(m.group(1))
    return ranks


def module_files(package_dir: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of a package directory (``__init__`` names the package)."""
    mods = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


class Edge:
    """One import of ``target`` by ``source``; ``lazy`` when inside a function."""

    def __init__(self, source: str, target: str, line: int, lazy: bool):
        self.source, self.target, self.line, self.lazy = source, target, line, lazy

    def __repr__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}{' (lazy)' if self.lazy else ''}"


def _imports(tree: ast.Module):
    """(node, inside a function) for every import statement of a module."""
    def walk(node, lazy):
        for child in ast.iter_child_nodes(node):
            inside = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, lazy
            yield from walk(child, inside)
    yield from walk(tree, False)


def import_graph(package_dir: Path) -> tuple[dict[str, Path], list[Edge], dict[str, set[str]]]:
    """Modules, the edges between them, and each module's top-level external imports."""
    mods = module_files(package_dir)
    edges: list[Edge] = []
    external: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node, lazy in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in mods]
                targets = subs + ([module] if len(subs) < len(node.names) else [])
            for target in targets:
                if not lazy and target.split(".")[0] in HEAVY:
                    external[name].add(target.split(".")[0])
                while target and target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != name:
                    edges.append(Edge(name, target, node.lineno, lazy))
    return mods, edges, external


def cycles(mods, edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted({e.target for e in edges if e.source == m}) for m in mods}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def stage_of(module: str, ranks: dict[str, int]) -> str:
    """The stage a module belongs to: its first component under the package (the package's
    own ``__init__`` belongs to the last stage, with the entry points)."""
    parts = module.split(".")
    if len(parts) == 1:
        return max(ranks, key=ranks.get)
    return parts[1]


def violations(package_dir: Path, ranks: dict[str, int]) -> list[str]:
    """Every broken rule of the module docstring, one line each."""
    mods, edges, external = import_graph(package_dir)
    found = [f"import cycle: {' <-> '.join(c)}" for c in cycles(mods, edges)]
    unknown = sorted({stage_of(m, ranks) for m in mods} - set(ranks))
    found += [f"module or folder {u!r} has no stage in the declared order" for u in unknown]
    heavy = _heavy_modules(mods, edges, external)
    for e in edges:
        src, dst = stage_of(e.source, ranks), stage_of(e.target, ranks)
        if src in ranks and dst in ranks and ranks[dst] > ranks[src]:
            found.append(f"{e}: stage {src!r} ({ranks[src]}) imports the later stage "
                         f"{dst!r} ({ranks[dst]})")
        leaf = e.target.rsplit(".", 1)[-1]
        folder = e.target.rsplit(".", 1)[0] if "." in e.target else e.target
        if (leaf.startswith("_") and not leaf.startswith("__") and mods[e.target].name !=
                "__init__.py" and not (e.source + ".").startswith(folder + ".")):
            found.append(f"{e}: private module imported from outside its folder {folder}")
        if e.lazy and e.target not in heavy:
            found.append(f"{e}: an import inside a function, but {e.target} needs no heavy "
                         f"dependency ({', '.join(sorted(HEAVY))}): import it at the top")
    return found


def _heavy_modules(mods, edges, external) -> set[str]:
    """Modules whose import loads torch or torchvision (directly or through top-level imports)."""
    heavy = {m for m in mods if external[m]}
    changed = True
    while changed:
        changed = False
        for e in edges:
            if not e.lazy and e.target in heavy and e.source not in heavy:
                heavy.add(e.source)
                changed = True
    return heavy


def test_stage_order_is_declared_once_in_the_architecture_doc():
    ranks = stage_order(ARCHITECTURE.read_text())
    folders = {p.name for p in (ROOT / PACKAGE).iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(ranks), f"folders without a stage: {sorted(folders - set(ranks))}"
    assert ranks["errors"] == 0 and ranks["cli"] == max(ranks.values())


def test_imports_point_one_way_and_never_in_a_circle():
    ranks = stage_order(ARCHITECTURE.read_text())
    found = violations(ROOT / PACKAGE, ranks)
    assert not found, "the import graph breaks the declared stage order:\n" + "\n".join(found)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


RANKS = {"errors": 0, "utils": 0, "inputs": 1, "decoding": 2, "cli": 3}
CLEAN = {
    "__init__.py": "",
    "errors.py": "",
    "utils/__init__.py": "",
    "utils/files.py": "from pkg import errors\n",
    "inputs/__init__.py": "",
    "inputs/layout.py": "from pkg.utils.files import x\nfrom . import _private\n",
    "inputs/_private.py": "",
    "decoding/__init__.py": "from pkg.inputs import layout\n",
    "decoding/net.py": "import torch\n",
    "decoding/solve.py": "def f():\n    from pkg.decoding import net\n",
    "cli.py": "from pkg.decoding import solve\nfrom .inputs.layout import y\n",
}


def test_the_checker_passes_a_clean_tree_and_names_each_broken_rule(tmp_path):
    """A back import, a cycle, a private module used outside its folder and a needless lazy
    import are each reported; the clean tree gives nothing."""
    assert violations(_write_package(tmp_path / "clean", CLEAN), RANKS) == []

    back = dict(CLEAN, **{"inputs/layout.py": "from pkg.decoding import solve\n"})
    assert any("imports the later stage 'decoding'" in v
               for v in violations(_write_package(tmp_path / "back", back), RANKS))

    cyc = dict(CLEAN, **{"inputs/a.py": "from pkg.inputs import b\n",
                         "inputs/b.py": "def f():\n    import pkg.inputs.a\n"})
    found = violations(_write_package(tmp_path / "cycle", cyc), RANKS)
    assert "import cycle: pkg.inputs.a <-> pkg.inputs.b" in found

    private = dict(CLEAN, **{"cli.py": "from pkg.inputs import _private\n"})
    assert any("private module imported from outside its folder pkg.inputs" in v
               for v in violations(_write_package(tmp_path / "private", private), RANKS))

    lazy = dict(CLEAN, **{"cli.py": "def main():\n    from pkg.inputs import layout\n"})
    assert any("import it at the top" in v
               for v in violations(_write_package(tmp_path / "lazy", lazy), RANKS))

    unknown = dict(CLEAN, **{"reports/__init__.py": ""})
    assert any("'reports' has no stage" in v
               for v in violations(_write_package(tmp_path / "unknown", unknown), RANKS))


def test_stage_order_parses_the_numbered_list():
    text = ("# A\n\n## Stage order\n\n0. `errors`, `utils`: shared\n1. `inputs`: runs\n"
            "   continued text 2. `x`\n2. `cli`\n\n## Next\n3. `other`\n")
    assert stage_order(text) == {"errors": 0, "utils": 0, "inputs": 1, "cli": 2}

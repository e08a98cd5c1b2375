"""The shape of the code, read from the files: arrows point from the apps to the core only.

Every ``import`` and ``from ... import`` of the project's own packages is read with :mod:`ast`
(at module level and inside functions, relative imports resolved) into a graph of first-party
modules, which must have no cycle; no module may import another module's ``_private`` name; the
core imports no app and no UI or web library, and the apps do not import each other. The
checker is tested on small synthetic packages too, so that a green run means something.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from metaseg_viewer.io import MASK_SUFFIXES, SUFFIXES

ROOT = Path(__file__).resolve().parents[1]
#: Top-level first-party packages and their folders.
PACKAGES = {
    "metaseg_viewer": ROOT / "src" / "metaseg_viewer",
    "server": ROOT / "server",
    "streamlit_app": ROOT / "streamlit_app",
    "metaseg_napari": ROOT / "plugins" / "metaseg_napari",
    "training": ROOT / "training",
}
CORE = "metaseg_viewer"
APPS = ("server", "streamlit_app", "metaseg_napari", "training")
#: Libraries of the doors, never of the core (nor of training, which runs headless).
UI_LIBRARIES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "fastapi", "starlette",
                "streamlit", "uvicorn")


@dataclass(frozen=True)
class Import:
    """One imported dotted path: ``import a.b`` gives ``a.b``, ``from a import b`` gives
    ``a`` with name ``b``; ``line`` for messages."""

    importer: str
    module: str
    name: str | None
    line: int

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}" if self.name else self.module


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    """Module name → source file, for every ``.py`` file below each package folder."""
    modules = {}
    for top, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path) -> tuple[list[Import], dict[str, str], ast.Module]:
    """Every import in the file, the local names bound to imported modules, and the tree."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, None, node.lineno))
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                if alias.name != "*":
                    found.append(Import(module, base, alias.name, node.lineno))
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return found, aliases, tree


def target_module(path: str, modules: dict[str, Path]) -> str | None:
    """The first-party module a dotted path refers to: the longest prefix that is a module."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Edges importer → imported first-party module. ``import a.b.c`` points to ``a.b.c`` only,
    not to its parent packages, so a package's ``__init__`` importing its submodules is no
    circle; ``from pkg import x`` points to ``pkg.x`` where that is a module, else to ``pkg``."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in imports_of(name, path)[0]:
            target = target_module(imp.path, modules)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles (``[a, b, ..., a]``) that together pass through every module of every strongly
    connected group of modules (Tarjan), shortest first within a group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        covered: set[str] = set()
        for start in group:
            if start not in covered:
                cycles.append(_cycle_through(start, set(group), graph))
                covered.update(cycles[-1])
    return cycles


def _cycle_through(start: str, members: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from ``start`` back to itself through ``members``."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # every member of a group has one


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_uses(modules: dict[str, Path]) -> list[str]:
    """``_names`` that a module takes from another first-party module, by import or attribute.

    A private *module* (``pkg/_layers.py``) may be imported from inside ``pkg``; a private
    *name* in a module belongs to that module alone. Dunder names are public.
    """
    problems: set[str] = set()
    for name, path in modules.items():
        found, aliases, tree = imports_of(name, path)
        used = [(imp.path, imp.line) for imp in found]
        for node in ast.walk(tree):
            chain = _attribute_chain(node)
            if chain and chain[0] in aliases:
                used.append((".".join([aliases[chain[0]], *chain[1:]]), node.lineno))
        for dotted, line in used:
            if target_module(dotted, modules) is None:
                continue  # not first-party
            parts = dotted.split(".")
            first = next((i for i, part in enumerate(parts) if _is_private(part)), None)
            if first is None:
                continue
            owner, private = ".".join(parts[:first]), ".".join(parts[: first + 1])
            if private in modules and (name == owner or name.startswith(owner + ".")):
                continue  # a private module, used inside its own package
            problems.add(f"{name}:{line} uses {private}")
    return sorted(problems)


def _attribute_chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]`` for the outermost attribute of a chain on a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not parts or not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def layer_violations(modules: dict[str, Path]) -> list[str]:
    """Imports against the layering: core → app or UI library; app → another app; training →
    UI library."""
    problems = []
    for name, path in modules.items():
        top = name.split(".")[0]
        for imp in imports_of(name, path)[0]:
            imported = imp.module.split(".")[0] if imp.module else ""
            if top == CORE:
                forbidden = (*APPS, *UI_LIBRARIES)
            elif top == "training":
                forbidden = tuple(a for a in APPS if a != top) + UI_LIBRARIES
            else:
                forbidden = tuple(a for a in APPS if a != top)
            if imported in forbidden:
                problems.append(f"{name}:{imp.line} imports {imp.path}")
    return problems


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    found = module_files(PACKAGES)
    assert {"metaseg_viewer.io", "server.app", "training.loop"} <= set(found)  # the walk saw them
    return found


def test_no_import_cycles(modules):
    cycles = find_cycles(import_graph(modules))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules(modules):
    problems = private_uses(modules)
    assert not problems, "private names used across modules:\n" + "\n".join(problems)


def test_core_imports_no_app_and_apps_not_each_other(modules):
    problems = layer_violations(modules)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return module_files({"pkg": root / "pkg"})


def test_checker_reports_a_cycle_through_an_import_inside_a_function(tmp_path):
    modules = _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import f\n",
        "pkg/a.py": "from .b import g\n\ndef f():\n    return g()\n",
        "pkg/b.py": "def g():\n    from pkg import a\n    return a\n",
        "pkg/c.py": "import pkg.a\n",
    })
    assert find_cycles(import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_checker_accepts_a_package_that_reexports_its_submodules(tmp_path):
    modules = _write(tmp_path, {
        "pkg/__init__.py": "from pkg.sub import f\nfrom pkg import _hidden\n",
        "pkg/_hidden.py": "X = 1\n",
        "pkg/sub/__init__.py": "from .core import f\n",
        "pkg/sub/core.py": "from pkg._hidden import X\nfrom pkg.sub import helpers\n"
                           "def f():\n    return helpers.g(), X, helpers.__name__\n",
        "pkg/sub/helpers.py": "def g():\n    return 1\n",
    })
    assert find_cycles(import_graph(modules)) == []
    assert private_uses(modules) == []


def test_checker_reports_private_names_by_import_and_by_attribute(tmp_path):
    modules = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "_LIMIT = 1\n\ndef _check():\n    return _LIMIT\n",
        "pkg/b.py": "from .a import _LIMIT\n",
        "pkg/c.py": "import pkg.a as alias\n\ndef f():\n    return alias._check()\n",
        "pkg/d/__init__.py": "",
        "pkg/d/e.py": "from pkg import a\nX = a._LIMIT\n",
    })
    assert private_uses(modules) == ["pkg.b:1 uses pkg.a._LIMIT", "pkg.c:4 uses pkg.a._check",
                                     "pkg.d.e:2 uses pkg.a._LIMIT"]


def test_checker_reports_the_core_importing_an_app(tmp_path):
    (tmp_path / "metaseg_viewer").mkdir()
    (tmp_path / "metaseg_viewer" / "x.py").write_text("def f():\n    import fastapi\n"
                                                       "    from server.app import app\n")
    modules = module_files({"metaseg_viewer": tmp_path / "metaseg_viewer"})
    assert layer_violations(modules) == ["metaseg_viewer.x:2 imports fastapi",
                                         "metaseg_viewer.x:3 imports server.app.app"]


# --- copies that cannot import the core: checked equal to it ------------------------------------

def _manifests() -> list[Path]:
    found = [p for p in (ROOT / "napari.yaml", PACKAGES["metaseg_napari"] / "napari.yaml")
             if p.is_file()]
    assert found, "no napari.yaml found"
    return found


@pytest.mark.parametrize("manifest", _manifests(), ids=lambda p: str(p.relative_to(ROOT)))
def test_napari_manifest_claims_exactly_the_accepted_suffixes(manifest):
    """napari.yaml is static YAML, so its reader patterns are a copy of io.SUFFIXES and io.MASK_SUFFIXES."""
    text = manifest.read_text(encoding="utf-8")
    found = re.findall(r"filename_patterns:\s*\[([^\]]*)\]", text)
    assert len(found) == 1, f"{manifest}: expected one inline filename_patterns list"
    patterns = sorted(p.strip().strip("\"'") for p in found[0].split(","))
    assert patterns == sorted(f"*{suffix}" for suffix in (*SUFFIXES, *MASK_SUFFIXES))

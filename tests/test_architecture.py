"""Architecture checks on the package's source (read with :mod:`ast`, nothing imported):

* no import cycle between modules of ``stvsr``, imports inside functions included;
* no underscore name imported from another ``stvsr`` module;
* the networks in ``stvsr.models`` have no fast-path switch: their speed paths live in
  ``stvsr.infer.optimize*`` and are bound by :func:`stvsr.infer.optimize`.

Violations in files that are being fixed on another branch are listed in ``KNOWN_*``; an entry
that no longer occurs fails the test, so the lists only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# known exceptions (an entry that no longer occurs fails the test): none left
KNOWN_CYCLES: list[list[str]] = []
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()
# names that switch a model between a reference path and a speed path, or pick a memory layout
FAST_PATH_NAMES = {
    "fast_enabled", "fast_layout", "fast_kernels", "FastKernels", "split_convs", "cache_terms",
    "nbr_terms", "ref_terms", "conv_part", "runs_as_module", "has_forward_hooks",
    "channels_last", "memory_format", "is_grad_enabled", "__dict__",
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, inside functions and classes too, except those
    under ``if TYPE_CHECKING:`` (which never run)."""
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and is_type_checking(node.test) for b in node.body for n in ast.walk(b)}
    return [n for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skip]


def resolve(here: list[str], node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <...> import``; ``here`` is the importer's package."""
    if not node.level:
        return node.module or ""
    base = here[: len(here) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def modules(root: Path, package: str) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports. ``from a import b`` points at ``a.b`` when
    that is a module, else at ``a``; relative imports are resolved."""
    mods = modules(root, package)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                mod = resolve(here, node)
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod
                           for a in node.names]
            edges[name].update(t for t in targets if t in mods and t != name)
    return edges


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def private_imports(root: Path, package: str) -> set[tuple[str, str, str]]:
    """``(importer, module, name)`` for each ``from <package module> import _name`` whose module
    is another one (dunder names and a package's own submodules excepted)."""
    mods = modules(root, package)
    found = set()
    for name, path in mods.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in imports(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            mod = resolve(here, node)
            if mod == name or not (mod == package or mod.startswith(package + ".")):
                continue
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.add((name, mod, a.name))
    return found


def fast_path_names(path: Path) -> set[str]:
    """The :data:`FAST_PATH_NAMES` a source file mentions (names, attributes, imports,
    keyword arguments, definitions)."""
    seen: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name):
            seen.add(node.id)
        elif isinstance(node, ast.Attribute):
            seen.add(node.attr)
        elif isinstance(node, ast.alias):
            seen.add(node.asname or node.name)
        elif isinstance(node, ast.keyword) and node.arg:
            seen.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.arg):
            seen.add(node.name if not isinstance(node, ast.arg) else node.arg)
    return seen & FAST_PATH_NAMES


# --------------------------------------------------------------------------- the checkers


def test_checkers_on_a_made_up_package(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("from pkg import b\n\ndef f():\n    from pkg import c\n")
    (pkg / "b.py").write_text("try:\n    from .sub import d\nexcept ImportError:\n    pass\n")
    (pkg / "c.py").write_text("import pkg.a\n")  # a -> c inside a function: still a cycle
    (pkg / "e.py").write_text("_hidden = __version__ = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
        "from .. import b\nfrom ..e import _hidden, __version__\nfrom ._own import _x\n")
    edges = import_graph(tmp_path, "pkg")
    assert edges["pkg.a"] == {"pkg.b", "pkg.c"} and edges["pkg.sub.d"] == {"pkg.b", "pkg.e"}
    assert import_cycles(edges) == [["pkg.a", "pkg.c"], ["pkg.b", "pkg.sub.d"]]
    assert private_imports(tmp_path, "pkg") == {
        ("pkg.sub.d", "pkg.e", "_hidden"), ("pkg.sub.d", "pkg.sub._own", "_x")}
    model = tmp_path / "m.py"
    model.write_text("def forward(self, x, cache_terms=True):\n"
                     "    return x.contiguous(memory_format=torch.channels_last)\n")
    assert fast_path_names(model) == {"cache_terms", "memory_format", "channels_last"}


# --------------------------------------------------------------------------- stvsr


def test_no_import_cycle_among_stvsr_modules() -> None:
    """A cycle among modules, even through an import inside a function, means neither can be
    read, tested or replaced without the other."""
    edges = import_graph(SRC, "stvsr")
    assert len(edges) > 40 and "stvsr.infer.engine" in edges
    assert "stvsr.infer.tiling" in edges["stvsr.infer.runner"]
    cycles = import_cycles(edges)
    assert [c for c in cycles if c not in KNOWN_CYCLES] == []
    assert [c for c in KNOWN_CYCLES if c not in cycles] == [], "fixed: drop it from the list"


def test_no_private_name_imported_from_another_stvsr_module() -> None:
    found = private_imports(SRC, "stvsr")
    assert found - KNOWN_PRIVATE_IMPORTS == set()
    assert KNOWN_PRIVATE_IMPORTS - found == set(), "fixed: drop it from the list"


@pytest.mark.parametrize("path", sorted((SRC / "stvsr" / "models").glob("*.py")),
                         ids=lambda p: p.name)
def test_models_have_no_fast_path_switch(path: Path) -> None:
    """Each network's forward is the paper's computation only (see :mod:`stvsr.infer.optimize`
    for where the speed paths live)."""
    assert fast_path_names(path) == set()

"""The package's shape, checked: no import cycle, no function too long to read whole.

Each check reads the source (``ast``), so it sees what a reader sees: imports inside
functions and under ``TYPE_CHECKING`` count as much as those at the top of a module.
Failures name the modules or functions at fault.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiorq_flask

PACKAGE = Path(aiorq_flask.__file__).parent
MAX_FUNCTION_LINES = 60

Graph = dict[str, dict[str, int]]  # module -> {module it imports: line of the first import}


def package_files(suffix: str, root: Path = PACKAGE) -> list[Path]:
    """Every file of the package ending in ``suffix`` (``.py``, ``.lua``), sorted."""
    return sorted(path for path in root.rglob(f"*{suffix}") if "__pycache__" not in path.parts)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """The dotted name of a module file; a package's ``__init__.py`` is the package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# -- imports -----------------------------------------------------------------------------


def _is_within(module: str, package: str) -> bool:
    """``module`` is ``package`` itself or one of its submodules."""
    return module == package or module.startswith(package + ".")


def _imported(importer: str, target: str, names: list[str] | None, modules: set[str]) -> set[str]:
    """The package modules that ``import target`` (``names``: ``from target import ...``)
    runs in ``importer``: each package on the way to ``target`` and ``target`` itself, or
    the submodules named. A package the importer lives in is already running; it counts
    only when a name is taken from its ``__init__``."""
    parts = target.split(".")
    found = {
        prefix
        for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
        if prefix in modules and not _is_within(importer, prefix)
    }
    submodules = {f"{target}.{name}" for name in names or ()} & modules
    found |= submodules
    takes_names = names is None or len(submodules) < len(names)
    if target in modules and target != importer and takes_names:
        found.add(target)
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> dict[str, int]:
    """Every package module that ``path`` imports, anywhere in the file, with its line."""
    importer = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            targets = [(_absolute(importer, is_package, node), names)]
        else:
            continue
        for target, imported_names in targets:
            for module in _imported(importer, target, imported_names, modules):
                found[module] = min(found.get(module, node.lineno), node.lineno)
    return found


def import_graph(root: Path = PACKAGE) -> Graph:
    paths = package_files(".py", root)
    modules = {module_name(path, root) for path in paths}
    return {module_name(path, root): imports_of(path, modules, root) for path in paths}


def import_cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Each group of modules that import one another, directly or not (each strongly
    connected component of two or more modules), sorted."""
    return sorted(sorted(component) for component in _components(graph))


def _components(graph: Mapping[str, Mapping[str, int]]) -> Iterator[set[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> Iterator[set[str]]:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.get(module, {}):
            if imported not in index:
                yield from visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == module:
                    break
            if len(component) > 1:
                yield component

    for module in sorted(graph):
        if module not in index:
            yield from visit(module)


def describe(cycle: list[str], graph: Mapping[str, Mapping[str, int]]) -> str:
    """The imports among the modules of ``cycle``, one a line, with the line of each."""
    return "\n".join(
        f"  {importer} (line {line}) -> {imported}"
        for importer in cycle
        for imported, line in sorted(graph[importer].items())
        if imported in cycle
    )


# -- functions ---------------------------------------------------------------------------


def function_lengths(path: Path) -> Iterator[tuple[str, int, int]]:
    """(name, first line, lines) of every function and method; decorators not counted."""
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


# -- the checks --------------------------------------------------------------------------


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()

    cycles = import_cycles(graph)

    assert not cycles, "modules that import one another:\n" + "\n\n".join(
        describe(cycle, graph) for cycle in cycles
    )


def test_no_python_function_is_longer_than_60_lines() -> None:
    too_long = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name}: {lines} lines"
        for path in package_files(".py")
        for name, line, lines in function_lengths(path)
        if lines > MAX_FUNCTION_LINES
    ]

    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)


# -- the checker itself ------------------------------------------------------------------


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    package = root / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_the_cycle_check_sees_imports_inside_functions_and_under_type_checking(
    tmp_path: Path,
) -> None:
    package = write_package(
        tmp_path,
        {
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
            "b.py": "def f():\n    from . import a\n",
        },
    )

    assert import_cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_the_cycle_check_counts_a_package_import_as_its_init(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "ext.py": "def make():\n    from .sub.cli import run\n",
            "sub/__init__.py": "from ._impl import Impl\n",
            "sub/_impl.py": "from ..ext import State\n",
            "sub/cli.py": "",
        },
    )

    assert import_cycles(import_graph(package)) == [["pkg.ext", "pkg.sub", "pkg.sub._impl"]]


def test_the_cycle_check_ignores_submodules_taken_from_the_package_one_lives_in(
    tmp_path: Path,
) -> None:
    package = write_package(
        tmp_path,
        {"__init__.py": "from .a import A\n", "a.py": "from . import b\n", "b.py": ""},
    )

    assert import_cycles(import_graph(package)) == []

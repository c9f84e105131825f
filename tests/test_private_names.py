"""No module uses another module's private names (a leading ``_``), in src, tests or bench.

A private name is an implementation detail its module may change at will; a module that
reaches into another's couples the two silently. Read from the source with ``ast`` (no
import, no execution):

* ``from x import _y`` (any module ``x``, ``__future__`` aside);
* ``obj._y``, ``getattr(obj, "_y")`` (also ``setattr``/``hasattr``/``delattr`` and
  pytest's ``monkeypatch.setattr``) where ``_y`` is a private name that some other module of
  the project defines and this module does not.

"Defines" means a ``def``/``class``, an assignment target (``_y = ...``, ``self._y = ...``,
a dataclass field), a parameter, an import alias or a ``__slots__`` entry in the module: a
class reading its own ``other._y`` is its own business. Dunder names (``__call__``) are
public, and so is the private *module* ``bench/_harness.py`` (``from _harness import x``
imports public names of it).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = sorted((ROOT / "src" / "logwarden").rglob("*.py"))
TESTS = sorted((ROOT / "tests").rglob("*.py"))
BENCH = sorted((ROOT / "bench").rglob("*.py"))
_ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}


def is_private(name: str) -> bool:
    return len(name) > 1 and name.startswith("_") and not name.endswith("__")


def defined_names(tree: ast.AST) -> set[str]:
    """The private names a module defines (see the module docstring)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            out.add(node.asname)
        elif isinstance(node, ast.Call) and _called(node) == "setattr" and len(node.args) >= 2:
            # setattr(self, "_x", v) in the defining module: a definition, not a use
            if isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"):
                out.update(_strings(node.args[1]))
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            out.update(s for elt in ast.walk(node.value) for s in _strings(elt))
    return {n for n in out if is_private(n)}


def _called(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _strings(node: ast.AST) -> list[str]:
    return [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []


@dataclass(frozen=True)
class Use:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def private_uses(path: Path, tree: ast.AST, others: set[str]) -> list[Use]:
    """Uses in ``tree`` of private names of other modules; ``others``: the private names
    the project's other modules define."""
    own = defined_names(tree)
    foreign = others - own
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    out: list[Use] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if is_private(alias.name):
                    out.append(Use(name, node.lineno, f"from {module} import {alias.name}"))
        elif isinstance(node, ast.Attribute) and node.attr in foreign:
            out.append(Use(name, node.lineno, f"{ast.unparse(node)}"))
        elif isinstance(node, ast.Call) and _called(node) in _ATTR_CALLS:
            for arg in node.args[:2]:
                for text in _strings(arg):
                    last = text.rsplit(".", 1)[-1]  # monkeypatch.setattr("mod._x", ...)
                    if last in foreign:
                        out.append(Use(name, node.lineno, f"{_called(node)}(..., {text!r})"))
    return sorted(out, key=lambda u: (u.path, u.line, u.what))


@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def scan(paths: list[Path], project: list[Path]) -> list[Use]:
    """Private uses in ``paths``, against the private names defined across ``project``."""
    defined = {p: defined_names(parsed(p)) for p in project}
    uses: list[Use] = []
    for p in paths:
        others = set().union(*(names for q, names in defined.items() if q != p))
        uses += private_uses(p, parsed(p), others)
    return uses


PROJECT = SRC + TESTS + BENCH


def _report(uses: list[Use]) -> str:
    return "private names of other modules used:\n" + "\n".join(f"  {u}" for u in uses)


def test_src_uses_no_private_name_of_another_module() -> None:
    uses = scan(SRC, PROJECT)
    assert not uses, _report(uses)


def test_tests_and_bench_use_no_private_name_of_another_module() -> None:
    uses = scan(TESTS + BENCH, PROJECT)
    assert not uses, _report(uses)


def test_the_files_are_there() -> None:
    # A wrong root would scan nothing and pass: make sure the trees are the project's.
    names = {p.relative_to(ROOT).as_posix() for p in PROJECT}
    assert {"src/logwarden/__init__.py", "tests/conftest.py", "bench/_harness.py"} <= names
    assert len(SRC) > 20 and len(TESTS) > 10 and len(BENCH) > 5


# --- the scanner itself, on small modules with known answers --------------------------------


def _write(folder: Path, files: dict[str, str]) -> list[Path]:
    paths = []
    for name, text in files.items():
        p = folder / name
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


def test_scanner_finds_every_kind_of_private_use(tmp_path: Path) -> None:
    owner, user = _write(
        tmp_path,
        {
            "owner.py": (
                "from dataclasses import dataclass\n"
                "_LIMIT = 3\n"
                "def _helper(): pass\n"
                "@dataclass\n"
                "class Fmt:\n"
                "    _cut: int = 0\n"
                "    def __post_init__(self):\n"
                "        self._times = 1\n"
                "    def _parse(self): return self._times\n"
                "    def same(self, other): return other._times  # its own: fine\n"
            ),
            "user.py": (
                "from owner import _LIMIT, Fmt\n"
                "from . import _helper\n"
                "import os\n"
                "def f(fmt: Fmt, monkeypatch):\n"
                "    a = fmt._times\n"
                "    b = fmt._parse()\n"
                "    c = getattr(fmt, '_cut')\n"
                "    monkeypatch.setattr(fmt, '_parse', None)\n"
                "    monkeypatch.setattr('owner._helper', None)\n"
                "    os._exit(0)  # not a project name\n"
                "    return fmt.__call__, fmt.same(fmt)\n"
            ),
        },
    )
    project = [owner, user]
    found = [(u.line, u.what) for u in scan([user], project)]
    assert found == [
        (1, "from owner import _LIMIT"),
        (2, "from . import _helper"),
        (5, "fmt._times"),
        (6, "fmt._parse"),
        (7, "getattr(..., '_cut')"),
        (8, "setattr(..., '_parse')"),
        (9, "setattr(..., 'owner._helper')"),
    ]
    assert scan([owner], project) == []


def test_scanner_lets_a_module_use_its_own_private_names(tmp_path: Path) -> None:
    (one,) = _write(
        tmp_path,
        {
            "one.py": (
                "class A:\n"
                "    __slots__ = ('_n',)\n"
                "    def __init__(self, _seed=0):\n"
                "        setattr(self, '_m', _seed)\n"
                "    def merge(self, other):\n"
                "        return other._n + other._m + other._ok()\n"
                "    def _ok(self): return 0\n"
                "import numpy as _np\n"
                "x = _np.zeros\n"
            )
        },
    )
    other = tmp_path / "other.py"
    other.write_text("_n = _m = 1\ndef _ok(): pass\n", encoding="utf-8")
    assert scan([one], [one, other]) == []


@pytest.mark.parametrize("name", ["_x", "_Slot", "__x"])
def test_private_name_rule(name: str) -> None:
    assert is_private(name)


@pytest.mark.parametrize("name", ["x", "_", "__call__", "__version__", "Slot"])
def test_public_name_rule(name: str) -> None:
    assert not is_private(name)

"""Modules keep to their rooms (docs: ARCHITECTURE.md, "Rules of the house"): no module reads or
writes another module's private names.

An AST walk over ioengine/ and iosched/ flags every ``x._name`` (and ``getattr(x, "_name")``,
``setattr``, ``hasattr``) where ``x`` is not ``self``, ``cls`` or ``super()`` and either

- ``x`` is a name imported from outside the room (``File._issue_write`` in another module), or
- ``_name`` is not defined in the room at all (no class there declares it: a method or class
  attribute, a ``self._name`` assignment, a ``__slots__`` entry), so the object must be
  another module's (``file._issue_write`` in fstream.py).

A room is one module, except iosched/: the scheduler is one concept split over a few files
(io_queue drives its fair_queue's heap and flows directly, on the per-dispatch path), so iosched
is one room and its modules may use each other's private names. Nothing outside it may.

Without type inference this cannot see everything (a foreign object whose private name happens
to be defined in the room as well passes), but it catches the crossings that happen in
practice. Exceptions are listed in ALLOWED, each with its reason; an entry no longer needed
fails the test, so the list only shrinks.
"""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("ioengine", "iosched")
#: Packages that are one room (their modules share private names).
ONE_ROOM = ("iosched",)

#: (module path, the expression as ast.unparse writes it) → why it may cross.
ALLOWED: dict[tuple[str, str], str] = {
    ("ioengine/poller.py", "loop._selector"):
        "asyncio has no public way to wrap a running loop's selector; the poller must (idle polling)",
    ("ioengine/poller.py", "getattr(loop, '_selector', None)"):
        "as above: a loop without a selector (uvloop) is detected this way",
    ("ioengine/smp/__init__.py", "os._exit"):
        "os._exit is public API (exit without cleanup, in a forked shard); the underscore is historical",
}

_ACCESSORS = ("getattr", "setattr", "hasattr", "delattr")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_own(node: ast.expr) -> bool:
    """self, cls or super(): the object's own class and its bases."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def defined_private_names(tree: ast.AST) -> set[str]:
    """Private attribute names a module declares for its own objects."""
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ClassDef):
            for stmt in n.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(stmt.name)
                targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                    [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
                for t in targets:
                    if isinstance(t, ast.Name):
                        names.add(t.id)
                        if t.id == "__slots__" and stmt.value is not None:
                            names.update(c.value for c in ast.walk(stmt.value)
                                         if isinstance(c, ast.Constant) and isinstance(c.value, str))
        elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and _is_own(n.value):
            names.add(n.attr)
    return {x for x in names if _private(x)}


def imported_names(tree: ast.AST, module: str) -> dict[str, str]:
    """Local name → the absolute module it was imported from (for ``from m import x`` and
    ``import m``)."""
    package = module.rsplit(".", 1)[0]
    out: dict[str, str] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                out[(a.asname or a.name).split(".")[0]] = a.name
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (n.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for a in n.names:
                out[a.asname or a.name] = base
    return out


def _room(module: str) -> str:
    top = module.split(".")[0]
    return top if top in ONE_ROOM else module


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts) if rel.name != "__init__" else ".".join(parts) + ".__init__"


def crossings(sources: dict[str, str]) -> list[tuple[str, int, str]]:
    """(path, line, expression) of every access to another room's private name in ``sources``
    (path → source text; paths like "ioengine/file.py")."""
    trees = {p: ast.parse(src, p) for p, src in sources.items()}
    modules = {p: _module_name(ROOT / p) for p in sources}
    own: dict[str, set[str]] = {}
    for p, tree in trees.items():
        own.setdefault(_room(modules[p]), set()).update(defined_private_names(tree))
    found = []
    for p, tree in trees.items():
        module = modules[p]
        room = _room(module)
        imports = imported_names(tree, module)
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and _private(n.attr):
                obj, name = n.value, n.attr
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _ACCESSORS
                  and len(n.args) >= 2 and isinstance(n.args[1], ast.Constant)
                  and isinstance(n.args[1].value, str) and _private(n.args[1].value)):
                obj, name = n.args[0], n.args[1].value
            else:
                continue
            if _is_own(obj):
                continue
            if isinstance(obj, ast.Name) and obj.id in imports:
                # Imported from a module of the same room (iosched): its own names are ours.
                if _room(imports[obj.id]) == room and name in own[room]:
                    continue
                found.append((p, n.lineno, ast.unparse(n)))
            elif name not in own[room]:
                found.append((p, n.lineno, ast.unparse(n)))
    return found


def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text()
            for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def test_no_module_reads_another_modules_private_names() -> None:
    found = crossings(_sources())
    crossing = sorted({(p, line, expr) for p, line, expr in found if (p, expr) not in ALLOWED})
    assert not crossing, "private names read across modules (give the owner a public name):\n" + "\n".join(
        f"  {p}:{line}: {expr}" for p, line, expr in crossing)


def test_every_allowed_crossing_is_still_there() -> None:
    used = {(p, expr) for p, _, expr in crossings(_sources())}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED entries no longer needed (remove them): {stale}"


def test_the_walk_sees_crossings() -> None:
    """The checker itself: what it must flag, and what it must let through."""
    sources = {
        "ioengine/a.py": (
            "class A:\n"
            "    __slots__ = ('_slot',)\n"
            "    def __init__(self):\n"
            "        self._mine = 1\n"
            "    def _hook(self): pass\n"
            "    def same(self, other: 'A'):\n"
            "        return other._mine + other._slot + self._hook() + super()._base()\n"
        ),
        "ioengine/b.py": (
            "from .a import A\n"
            "import os\n"
            "class B(A):\n"
            "    def go(self, a):\n"
            "        a._mine = 2\n"
            "        getattr(a, '_slot')\n"
            "        return a._hook(), A._hook(self), os._exit, self._own_is_fine\n"
        ),
        "iosched/x.py": "class X:\n    def __init__(self):\n        self._heap = []\n",
        "iosched/y.py": "from .x import X\ndef peek(q: X):\n    return q._heap, X._heap\n",
    }
    found = {(p, expr) for p, _, expr in crossings(sources)}
    assert found == {
        ("ioengine/b.py", "a._mine"),
        ("ioengine/b.py", "getattr(a, '_slot')"),
        ("ioengine/b.py", "a._hook"),
        ("ioengine/b.py", "A._hook"),
        ("ioengine/b.py", "os._exit"),
    }


def test_every_logger_is_named_after_its_module() -> None:
    """``logging.getLogger(__name__)`` everywhere: a user tunes ioengine.fstream or silences
    ioengine.poller by the module's own name, and "ioengine" covers them all."""
    wrong = []
    for path, src in _sources().items():
        for n in ast.walk(ast.parse(src, path)):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "getLogger"
                    and not (len(n.args) == 1 and isinstance(n.args[0], ast.Name) and n.args[0].id == "__name__")):
                wrong.append(f"{path}:{n.lineno}: {ast.unparse(n)}")
    assert not wrong, "loggers not named by __name__:\n" + "\n".join(wrong)

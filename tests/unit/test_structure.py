"""The shape of the house: small classes and functions, no import cycle, and an engine
core that needs no socket library (read from the source with ast, not imported)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "wallaroo_nb"
MAX_CLASS_LINES = 350
MAX_FUNCTION_LINES = 60
SOCKET_LIBS = {"zmq", "socket", "selectors", "asyncio", "confluent_kafka"}
# the engine core and everything it runs with (testing.run_local runs exactly these)
CORE = "wallaroo_nb.engine.core"


def modules() -> dict:
    """Module name -> parsed source, for every module of the package."""
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = (ast.parse(f.read_text()), f.name == "__init__.py")
    return out


def imports(name: str, tree: ast.AST, is_pkg: bool, known: dict) -> set:
    """Every module ``name`` imports, anywhere in its code (lazy imports included)."""
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in known else mod)
    return found


def graph() -> dict:
    known = modules()
    return {name: imports(name, tree, is_pkg, known) for name, (tree, is_pkg) in known.items()}


def test_no_class_or_function_is_too_long():
    too_long = []
    for f in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            n = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and n > MAX_CLASS_LINES:
                too_long.append(f"class {f.name}:{node.name} {n} lines")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and n > MAX_FUNCTION_LINES:
                too_long.append(f"function {f.name}:{node.name} {n} lines")
    assert not too_long, too_long


def _cycles(g: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on: set = set()
    out: list = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    # the package's __init__ re-exports the API; modules never import it, so it is
    # left out (a module importing "wallaroo_nb" itself would show up as an edge)
    g = graph()
    g.pop("wallaroo_nb", None)
    assert _cycles(g) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_engine_core_needs_no_socket_library():
    g = graph()
    seen, todo = set(), [CORE]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(d for d in g.get(m, ()) if d.startswith("wallaroo_nb.") and d in g)
    reached = {d.split(".")[0] for m in seen for d in g[m]}
    assert "wallaroo_nb.engine.worker" not in seen and "wallaroo_nb.connectors.tcp" not in seen
    assert not reached & SOCKET_LIBS, sorted(reached & SOCKET_LIBS)

"""The imports a wheel's modules run when they are imported, found with `ast` (nothing is imported).

Every import statement becomes a Site with a kind that says when it runs:

    module         at import time, always (module level, class bodies, loops, `with` blocks)
    conditional    at import time under a module-level `if`/`match` (a flag, an env var, a platform), or
                   in an `except` fallback
    guarded        at import time inside `try:` whose first handler for a missing module (ImportError,
                   ModuleNotFoundError, Exception, BaseException, bare) does not re-raise, or inside
                   `with suppress(ImportError)`
    main           under `if __name__ == "__main__":` (not on import)
    function       inside a function or method (when it is called, not on import)
    type-checking  under `if TYPE_CHECKING:` (never at run time)

A walk from an entry module follows the wheel's own modules the way CPython imports them: each module
once, every parent package's __init__ with the module (importing a.b.c runs a/__init__ and a/b/__init__),
and `from pkg import name` importing pkg.name when it is a submodule. The chain of a module is a shortest
sequence of import statements (file:line) from the entry to it.
"""

from __future__ import annotations

import ast
import zipfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["module", "conditional", "guarded", "main", "function", "type-checking"]
# Lower runs more surely. Only the first three run on import; a path's kind is its least sure hop's.
ORDER: tuple[Kind, ...] = ("module", "conditional", "guarded", "main", "function", "type-checking")
RUNS_ON_IMPORT: tuple[Kind, ...] = ("module", "conditional", "guarded")
# Exceptions whose handler catches a missing module (ModuleNotFoundError and its bases).
CATCHES_MISSING = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def weaker(a: Kind, b: Kind) -> Kind:
    return a if ORDER.index(a) >= ORDER.index(b) else b


@dataclass(frozen=True)
class Site:
    """One module imported by one statement."""

    file: str  # the member path in the wheel ("sglang/utils.py")
    line: int
    target: str  # the absolute dotted name imported ("IPython.display", "sglang.srt.utils")
    kind: Kind
    condition: str = ""  # why it is conditional or guarded: the `if` test, the `except` clause

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"file": self.file, "line": self.line, "imports": self.target}
        if self.kind not in ("module",):
            out["kind"] = self.kind
        if self.condition:
            out["condition"] = self.condition
        return out


@dataclass(frozen=True)
class Module:
    name: str
    file: str | None  # None: a namespace package or an extension module (no Python source)
    sites: tuple[Site, ...] = ()
    error: str | None = None  # why the source could not be parsed


@dataclass
class _Ctx:
    kind: Kind = "module"
    conditions: tuple[str, ...] = ()

    def enter(self, kind: Kind, condition: str = "") -> _Ctx:
        if weaker(self.kind, kind) != kind:  # the outer context is less sure: it decides
            return self
        kept = self.conditions if self.kind == kind else ()
        return _Ctx(kind, kept + ((condition,) if condition else ()))


class WheelModules:
    """The Python modules in a wheel (a zip), parsed on first use. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path)
        self.sources: dict[str, str] = {}  # module -> member holding its source
        self.binaries: set[str] = set()  # extension modules (no source to read)
        self.packages: set[str] = set()  # every directory on a module path (packages, namespace ones too)
        for member in self._zip.namelist():
            parts = member.split("/")
            if not parts[0] or ".dist-info" in parts[0] or ".data" in parts[0]:
                continue
            for i in range(1, len(parts)):
                if not parts[i - 1].isidentifier():
                    break
                self.packages.add(".".join(parts[:i]))
            stem, _, ext = parts[-1].partition(".")
            if not all(p.isidentifier() for p in parts[:-1]) or not stem.isidentifier():
                continue
            if ext == "py":
                name = ".".join(parts[:-1]) if stem == "__init__" else ".".join([*parts[:-1], stem])
                self.sources[name] = member
            elif ext.endswith(("so", "pyd")) or ext == "abi3.so":
                self.binaries.add(".".join([*parts[:-1], stem]))
        self.top_level = frozenset(n.split(".")[0] for n in (*self.sources, *self.binaries, *self.packages))
        self._parsed: dict[str, Module] = {}

    def __enter__(self) -> WheelModules:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def owns(self, dotted: str) -> bool:
        """Whether the name is under one of the wheel's top-level packages."""
        return dotted.split(".")[0] in self.top_level

    def exists(self, dotted: str) -> bool:
        return dotted in self.sources or dotted in self.binaries or dotted in self.packages

    def is_package(self, dotted: str) -> bool:
        return dotted in self.packages

    def module(self, dotted: str) -> Module | None:
        if dotted in self._parsed:
            return self._parsed[dotted]
        if not self.exists(dotted):
            return None
        member = self.sources.get(dotted)
        if member is None:
            mod = Module(dotted, None)
        else:
            data = self._zip.read(member)
            try:
                tree = ast.parse(data, filename=member)
            except (SyntaxError, ValueError) as err:
                mod = Module(dotted, member, error=f"{member}: cannot parse: {err}")
            else:
                sites = tuple(_Collector(self, dotted, member).statements(tree.body, _Ctx()))
                mod = Module(dotted, member, sites)
        self._parsed[dotted] = mod
        return mod

    @property
    def parsed(self) -> int:
        return sum(1 for m in self._parsed.values() if m.file is not None)


class _Collector:
    """Turns one module's statements into Sites with their kinds."""

    def __init__(self, wheel: WheelModules, module: str, file: str) -> None:
        self.wheel = wheel
        self.module = module
        self.file = file
        # The package relative imports start from: the module itself for an __init__, else its parent.
        self.package = module if file.endswith("__init__.py") else module.rpartition(".")[0]

    def statements(self, body: list[ast.stmt], ctx: _Ctx) -> Iterator[Site]:
        for stmt in body:
            yield from self.statement(stmt, ctx)

    def statement(self, stmt: ast.stmt, ctx: _Ctx) -> Iterator[Site]:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                yield self.site(stmt, alias.name, ctx)
        elif isinstance(stmt, ast.ImportFrom):
            yield from self.import_from(stmt, ctx)
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from self.statements(stmt.body, ctx.enter("function"))
        elif isinstance(stmt, ast.If):
            yield from self.if_(stmt, ctx)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            yield from self.try_(stmt, ctx)
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            guard = next((i.context_expr for i in stmt.items if _suppresses_missing(i.context_expr)), None)
            inner = ctx.enter("guarded", f"with {_src(guard)}") if guard is not None else ctx
            yield from self.statements(stmt.body, inner)
        elif isinstance(stmt, ast.Match):
            for case in stmt.cases:
                yield from self.statements(case.body, ctx.enter("conditional", f"match {_src(stmt.subject)}"))
        else:  # class bodies, loops: run where they stand
            for name in ("body", "orelse"):
                yield from self.statements(getattr(stmt, name, []), ctx)

    def if_(self, stmt: ast.If, ctx: _Ctx) -> Iterator[Site]:
        test = stmt.test
        negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
        inner = test.operand if isinstance(test, ast.UnaryOp) and negated else test
        if _is_type_checking(inner):
            body_ctx, else_ctx = ctx.enter("type-checking"), ctx
            if negated:
                body_ctx, else_ctx = else_ctx, body_ctx
        elif _is_main_guard(test):
            body_ctx, else_ctx = ctx.enter("main"), ctx
        else:
            cond = _src(test)
            body_ctx = ctx.enter("conditional", f"if {cond}")
            else_ctx = ctx.enter("conditional", f"if not ({cond})")
        yield from self.statements(stmt.body, body_ctx)
        yield from self.statements(stmt.orelse, else_ctx)

    def try_(self, stmt: ast.Try | ast.TryStar, ctx: _Ctx) -> Iterator[Site]:
        handler = next((h for h in stmt.handlers if _catches_missing(h)), None)
        if handler is not None and not any(isinstance(s, ast.Raise) for s in handler.body):
            clause = "except" + (f" {_src(handler.type)}" if handler.type is not None else "")
            yield from self.statements(stmt.body, ctx.enter("guarded", f"try/{clause}"))
        else:
            yield from self.statements(stmt.body, ctx)
        for h in stmt.handlers:
            clause = "except" + (f" {_src(h.type)}" if h.type is not None else "")
            yield from self.statements(h.body, ctx.enter("conditional", f"{clause} (fallback)"))
        yield from self.statements(stmt.orelse, ctx)
        yield from self.statements(stmt.finalbody, ctx)

    def import_from(self, stmt: ast.ImportFrom, ctx: _Ctx) -> Iterator[Site]:
        if stmt.level:
            parts = self.package.split(".") if self.package else []
            if stmt.level - 1 >= len(parts):
                return  # beyond the top-level package: an ImportError CPython reports, not a dependency
            base_parts = parts[: len(parts) - (stmt.level - 1)]
            base = ".".join([*base_parts, *([stmt.module] if stmt.module else [])])
        else:
            base = stmt.module or ""
        if not base:
            return
        yield self.site(stmt, base, ctx)
        if self.wheel.owns(base):
            for alias in stmt.names:
                sub = f"{base}.{alias.name}"
                if alias.name != "*" and self.wheel.exists(sub):
                    yield self.site(stmt, sub, ctx)

    def site(self, stmt: ast.stmt, target: str, ctx: _Ctx) -> Site:
        return Site(self.file, stmt.lineno, target, ctx.kind, "; ".join(ctx.conditions))


def _src(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 80 else text[:77] + "..."


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return _name(test) == "TYPE_CHECKING"


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def _catches_missing(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(_name(t) in CATCHES_MISSING for t in types)


def _suppresses_missing(expr: ast.expr) -> bool:
    return (
        isinstance(expr, ast.Call)
        and _name(expr.func) == "suppress"
        and any(_name(a) in CATCHES_MISSING for a in expr.args)
    )


# --- the walk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """How one entry reaches an import of a module outside the wheel (or a missing module inside it)."""

    entry: str
    kind: Kind  # the least sure hop on the way, the site included
    chain: tuple[Site, ...]  # the import statements from the entry module down to the site (the last)

    @property
    def site(self) -> Site:
        return self.chain[-1]

    @property
    def decisive(self) -> Site:
        """The hop that makes the reach as unsure as it is (the site itself for a plain import)."""
        if self.kind == "module":
            return self.chain[-1]
        return next((s for s in self.chain if s.kind == self.kind), self.chain[-1])

    def to_json(self) -> dict[str, object]:
        return {
            "entry": self.entry,
            "kind": self.kind,
            "chain": [s.to_json() for s in self.chain],
        }


@dataclass
class Walk:
    """Every entry's module-level import closure through one wheel's modules."""

    entries: tuple[str, ...]
    # top-level module outside the wheel -> entry -> the surest way that entry reaches it
    external: dict[str, dict[str, Reach]] = field(default_factory=dict)
    # imports of the wheel's own names that are no module in it (at import time), by dotted name
    unresolved: dict[str, dict[str, Reach]] = field(default_factory=dict)
    # imports outside the wheel that do not run on import: top-level module -> sites (in reached modules)
    deferred: dict[str, list[Site]] = field(default_factory=dict)
    missing_entries: list[str] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    modules: int = 0  # modules of the wheel reached from any entry


def walk(wheel: WheelModules, entries: tuple[str, ...]) -> Walk:
    result = Walk(entries)
    reached: set[str] = set()
    deferred_seen: set[Site] = set()
    for entry in entries:
        if not wheel.exists(entry):
            result.missing_entries.append(entry)
            continue
        # One pass per level of sureness: the surest reach of each module is found first, in execution order.
        for limit in RUNS_ON_IMPORT:
            _Pass(wheel, entry, limit, result, reached, deferred_seen).run()
    result.modules = len(reached)
    for name in sorted(reached):
        mod = wheel.module(name)
        if mod is not None and mod.error:
            result.parse_errors.append(mod.error)
    return result


class _Pass:
    """Breadth first from the entry: the chain kept for each module is a shortest one (ties go to the
    statement that runs first), so it reads as the most direct reason the module is loaded."""

    def __init__(
        self,
        wheel: WheelModules,
        entry: str,
        limit: Kind,
        result: Walk,
        reached: set[str],
        deferred_seen: set[Site],
    ) -> None:
        self.wheel = wheel
        self.entry = entry
        self.allowed = ORDER[: ORDER.index(limit) + 1]
        self.result = result
        self.reached = reached
        self.deferred_seen = deferred_seen
        self.done: set[str] = set()
        self.queue: deque[tuple[str, tuple[Site, ...], Kind]] = deque()

    def run(self) -> None:
        self.import_(self.entry, (), "module")
        while self.queue:
            self.visit(*self.queue.popleft())

    def import_(self, dotted: str, chain: tuple[Site, ...], kind: Kind) -> None:
        """Import a name of the wheel as CPython would: each parent package first, then the module."""
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in self.done:
                continue
            if not self.wheel.exists(name):
                if chain:
                    self.record(self.result.unresolved, dotted, chain, kind)
                return
            self.done.add(name)
            self.queue.append((name, chain, kind))

    def visit(self, name: str, chain: tuple[Site, ...], kind: Kind) -> None:
        self.reached.add(name)
        mod = self.wheel.module(name)
        if mod is None:
            return
        for site in mod.sites:
            if site.kind not in RUNS_ON_IMPORT:
                if not self.wheel.owns(site.target) and site not in self.deferred_seen:
                    self.deferred_seen.add(site)
                    self.result.deferred.setdefault(site.target.split(".")[0], []).append(site)
                continue
            if site.kind not in self.allowed:
                continue
            hop_kind = weaker(kind, site.kind)
            if self.wheel.owns(site.target):
                self.import_(site.target, (*chain, site), hop_kind)
            else:
                self.record(self.result.external, site.target.split(".")[0], (*chain, site), hop_kind)

    def record(
        self, table: dict[str, dict[str, Reach]], key: str, chain: tuple[Site, ...], kind: Kind
    ) -> None:
        per_entry = table.setdefault(key, {})
        old = per_entry.get(self.entry)
        if old is None or ORDER.index(kind) < ORDER.index(old.kind):
            per_entry[self.entry] = Reach(self.entry, kind, chain)

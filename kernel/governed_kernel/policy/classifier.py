"""Static classification of a cell: read the AST of what IPython will run, match the policy's rules.

The scan records *observations* (a dotted name used, a module imported, a magic run, dynamic code,
SQL read from a string, a remote path) with their location, then every rule is matched against them.
Names are resolved through the cell's imports and simple assignments, and through aliases the kernel
passes from earlier cells (``aliases_from_namespace``), so ``import subprocess as sp; sp.run`` and
``getattr(os, "system")`` are both ``subprocess.run``/``os.system``. What cannot be resolved
statically (computed names, decoded code) is left to the runtime guard.
"""

from __future__ import annotations

import ast
import functools
import gc
import re
import types
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from keyword import kwlist
from typing import TYPE_CHECKING, Any

from governed_kernel.policy.chunks import Words, split
from governed_kernel.policy.decision import Decision, Finding, Span, fit_spans, strictest
from governed_kernel.policy.matchers import (
    IO_WORD,
    RESOLVING_WORDS,
    WORD,
    Active,
    CompiledRule,
    Triggers,
    ipython_syntax_offsets,
    remote_hint_offsets,
)
from governed_kernel.policy.model import PLACEHOLDER, DataRules, Policy
from governed_kernel.policy.source import prepare

if TYPE_CHECKING:
    from governed_kernel.policy.sql import SqlFinding, SqlRules

_MAX_DEPTH = 4
_MAX_CANDIDATES = 8
_SNIPPET = 60

_NORMALIZE = (
    ("IPython.core.getipython.get_ipython()", "get_ipython()"),
    ("IPython.get_ipython()", "get_ipython()"),
    ("__builtins__.", "builtins."),
    ("posix.", "os."),
    ("nt.", "os."),
)
_BUILTIN_ALIASES = {
    "builtins.exec": "exec",
    "builtins.eval": "eval",
    "builtins.compile": "compile",
    "builtins.getattr": "getattr",
    "builtins.__import__": "__import__",
    "importlib.__import__": "__import__",
    "importlib.import_module": "import_module",
}
_CODE_RUNNERS = {
    "exec": "exec",
    "eval": "eval",
    "compile": "compile",
    "__import__": "import",
    "import_module": "import",
}
"""Builtins that run or import code given at run time, and their dynamic kind: used as a value
(``[exec][0](code)``, ``{"f": eval}["f"](text)``) rather than called, what they run is not visible."""
_NAMESPACE_METHODS = frozenset({"get", "pop", "setdefault", "__getitem__", "values", "items", "__iter__"})
_NAMESPACE_WHOLE = frozenset({"values", "items", "__iter__"})
"""Methods of a namespace mapping that reach members by a computed name (the first argument) or
all of them at once (``_NAMESPACE_WHOLE``)."""
_GETTERS = frozenset({"operator.attrgetter", "operator.methodcaller"})


def _is_namespace(name: str) -> bool:
    """Whether ``name`` is a mapping from names to a module's members (or to loaded modules)."""
    return (
        name == "sys.modules"
        or name.endswith(".__dict__")
        or name.startswith("vars(")
        or name in ("globals()", "builtins.globals()")
    )


def _computed_lookup(bases: Iterable[str]) -> tuple[str, str, str]:
    """The dynamic finding for a lookup by computed name in one of ``bases`` (namespaces)."""
    if "sys.modules" in bases:
        return "dynamic", "import", "reaches a loaded module by a computed name (sys.modules)"
    return "dynamic", "getattr", "looks up a computed name in a module's namespace"


_RUN_CODE = {
    "get_ipython().run_cell",
    "get_ipython().run_cell_async",
    "get_ipython().ex",
    "get_ipython().ev",
    "get_ipython().run_code",
}
_LINE_MAGIC = {"get_ipython().run_line_magic", "get_ipython().magic"}
_CELL_MAGIC = "get_ipython().run_cell_magic"
_CODE_MAGICS = {"time", "timeit", "prun", "capture", "debug"}
_SHELL_CALLS = {
    "get_ipython().system",
    "get_ipython().getoutput",
    "get_ipython().system_raw",
    "get_ipython().system_piped",
}
_SQL_PREFIXES = ("read_sql", "execute", "read_database")
_SQL_TEXT_KEYWORDS = ("sql", "query", "statement", "operation", "sql_query")
_REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_IO_CALL = re.compile(
    r"^(to_\w+|read_\w+|open|save\w*|savefig|upload\w*|put\w*|write\w*|copy\w*|"
    r"download\w*|get_object)$"
)
_KEYWORDS = frozenset(kwlist) | {"as"}
_STAR_IMPORT = re.compile(r"import(?<!\wimport)[\s\\(]*\*")
_MAGIC_OPTIONS = re.compile(r"^(\s*-\w+(\s+\d+)?)+\s*")


def _normalize(dotted: str) -> str:
    for prefix, replacement in _NORMALIZE:
        if dotted.startswith(prefix):
            dotted = replacement + dotted[len(prefix) :]
    return _BUILTIN_ALIASES.get(dotted, dotted)


_PLAIN_DATA = frozenset(
    {int, float, complex, bool, str, bytes, list, tuple, dict, set, frozenset, type(None)}
)
"""Exact types whose instances are never callable and have no ``__module__``: no alias, and no
attribute lookup that fails (most of a namespace; a subclass may define either, so only exact types)."""


def aliases_from_namespace(namespace: Mapping[str, Any]) -> Mapping[str, str]:
    """Names bound in earlier cells → dotted names, for modules, functions and classes.

    The kernel passes this with each cell, so ``import subprocess as sp`` in one cell still makes
    ``sp.run(...)`` in the next one a ``subprocess.run`` call. The aliases are worked out on lookup:
    a cell uses a few names while IPython's namespace grows by two or three entries per cell
    (``_i7``, ``_7``...), so reading all of it for every cell would cost more with every cell.
    """
    return _NamespaceAliases(namespace)


def fresh_kernel_aliases() -> dict[str, str]:
    """The aliases a new IPython kernel's namespace holds before its first cell (``get_ipython``,
    IPython's ``open``), as :func:`aliases_from_namespace` reads them in the kernel: for whoever
    classifies that kernel's cells from their text alone (the server's inbound guard)."""
    import io

    from IPython.core.interactiveshell import InteractiveShell

    seed = {"get_ipython": InteractiveShell.get_ipython, "open": io.open}
    aliases = aliases_from_namespace(seed)
    return {name: aliases[name] for name in aliases}


class _NamespaceAliases(Mapping[str, str]):
    """A live, read-only view of the aliases in a namespace (see :func:`aliases_from_namespace`)."""

    __slots__ = ("_namespace",)

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._namespace = namespace

    def __getitem__(self, name: str) -> str:
        alias = _alias_of(name, self._namespace[name])
        if alias is None:
            raise KeyError(name)
        return alias

    def __iter__(self) -> Iterator[str]:
        for name, value in list(self._namespace.items()):
            if _alias_of(name, value) is not None:
                yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return bool(self._namespace)  # cheap; an empty view only costs a set intersection


def _alias_of(name: str, value: Any) -> str | None:
    """The dotted name ``value`` stands for when bound to ``name``, if it is a module or callable."""
    if name.startswith("_") or type(value) in _PLAIN_DATA:
        return None
    if isinstance(value, types.ModuleType):
        return _normalize(value.__name__ + ".")[:-1]
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if (
        isinstance(module, str)
        and isinstance(qualname, str)
        and module not in ("__main__", "builtins")
        and callable(value)
    ):
        return _normalize(f"{module}.{qualname}")
    if callable(value) and getattr(value, "__module__", None) == "builtins":
        return _normalize(f"builtins.{getattr(value, '__name__', name)}")
    return None


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(kind: type) -> tuple[str, ...]:
    fields = _CHILD_FIELDS.get(kind)
    if fields is None:
        fields = _CHILD_FIELDS[kind] = tuple(f for f in getattr(kind, "_fields", ()) if f != "ctx")
    return fields


_COLLECTED = frozenset({ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.NamedExpr, ast.Call})
"""The node kinds :meth:`_Scan.collect` reads."""


def _levels(body: list[ast.stmt]) -> list[list[ast.AST]]:
    """The nodes under ``body`` level by level (each level in the order :func:`_nodes` gives)."""
    levels: list[list[ast.AST]] = []
    level: list[ast.AST] = list(body)
    while level:
        levels.append(level)
        below: list[ast.AST] = []
        for node in level:
            for name in _child_fields(type(node)):
                value = getattr(node, name, None)
                if type(value) is list:
                    below.extend([item for item in value if isinstance(item, ast.AST)])
                elif isinstance(value, ast.AST):
                    below.append(value)
        level = below
    return levels


def _used_names(levels: list[list[ast.AST]]) -> set[str]:
    """The names a scan of these nodes may look up: those loaded, and strings that could name a variable
    (``globals()[key]``/``vars()[key]`` resolve a literal key; escapes and adjacent literals mean the
    text need not show it)."""
    names: set[str] = set()
    for level in levels:
        for node in level:
            kind = type(node)
            if kind is ast.Name:
                if type(node.ctx) is ast.Load:  # type: ignore[attr-defined]
                    names.add(node.id)  # type: ignore[attr-defined]
            elif kind is ast.Constant:
                value = node.value  # type: ignore[attr-defined]
                if type(value) is bytes:
                    value = value.decode("utf-8", "replace")
                if type(value) is str and value.isidentifier():
                    names.add(value)
    return names


def _nodes(roots: Iterable[ast.AST]) -> list[ast.AST]:
    """Every node under ``roots``, breadth first like :func:`ast.walk` (without the ``ctx`` markers)."""
    out = list(roots)
    index = 0
    while index < len(out):
        node = out[index]
        index += 1
        for name in _child_fields(type(node)):
            value = getattr(node, name, None)
            if type(value) is list:
                out.extend([item for item in value if isinstance(item, ast.AST)])
            elif isinstance(value, ast.AST):
                out.append(value)
    return out


@dataclass(frozen=True)
class _Observation:
    criterion: str
    subject: str
    what: str
    span: Span


def _span(node: ast.AST, offset: int) -> Span:
    line = getattr(node, "lineno", 1) + offset
    end = getattr(node, "end_lineno", None)
    return Span(
        line,
        getattr(node, "col_offset", 0) + 1,
        (end or line - offset) + offset,
        (getattr(node, "end_col_offset", None) or 0) + 1,
    )


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"


class _Scan:
    """One pass over one piece of code; nested code (exec literals, magic bodies) gets its own scan."""

    def __init__(
        self,
        classifier: Classifier,
        aliases: Mapping[str, str],
        out: list[_Observation],
        depth: int = 0,
        host: Span | None = None,
        offset: int = 0,
    ) -> None:
        self.c = classifier
        self.external = aliases
        self.out = out
        self.depth = depth
        self.host = host
        self.offset = offset
        self.imported: dict[str, set[str]] = {}
        self.assigned: dict[str, list[ast.expr]] = {}
        self.inner: set[int] = set()
        self.memo: dict[int, frozenset[str]] = {}
        self.resolving: set[str] = set()
        self.call_funcs: set[int] = set()
        self.shell_what: dict[int, str] = {}
        self.star_modules: list[str] = []

    # -- helpers ----------------------------------------------------------------------------------------
    def span(self, node: ast.AST) -> Span:
        return self.host or _span(node, self.offset)

    def observe(self, criterion: str, subject: str, what: str, node: ast.AST) -> None:
        self.out.append(_Observation(criterion, subject, what, self.span(node)))

    def nested(self, code: str, node: ast.AST, *, ipython: bool) -> None:
        if self.depth >= _MAX_DEPTH:
            self.observe("dynamic", "exec", "code nested too deeply to read", node)
            return
        self.c.scan_code(
            code, self.external, self.out, depth=self.depth + 1, host=self.span(node), ipython=ipython
        )

    # -- name resolution ---------------------------------------------------------------------------------
    def resolve_name(self, name: str) -> frozenset[str]:
        if name in self.imported:
            return frozenset(self.imported[name])
        if name in self.assigned and name not in self.resolving:
            self.resolving.add(name)
            try:
                found: set[str] = set()
                for value in self.assigned[name]:
                    found |= self.dotted(value, mark=False)
                if found:
                    return frozenset(found)
            finally:
                self.resolving.discard(name)
        if name in self.external:
            return frozenset({self.external[name]})
        if self.star_modules:
            return frozenset({_normalize(name), *(_normalize(f"{m}.{name}") for m in self.star_modules)})
        return frozenset({_normalize(name)})

    def dotted(self, node: ast.AST, *, mark: bool = True) -> frozenset[str]:
        """The dotted names ``node`` may stand for (empty when it cannot be resolved)."""
        key = id(node)
        if key in self.memo:
            if mark:
                self._mark_chain(node)
            return self.memo[key]
        result = self._dotted(node, mark)
        if len(result) > _MAX_CANDIDATES:
            result = frozenset(sorted(result)[:_MAX_CANDIDATES])
        self.memo[key] = result
        return result

    def _mark_chain(self, node: ast.AST) -> None:
        while True:
            if isinstance(node, ast.Attribute):
                node = node.value
            elif isinstance(node, ast.Call):
                node = node.func
            elif isinstance(node, ast.Subscript):
                node = node.value
            else:
                break
            self.inner.add(id(node))

    def _dotted(self, node: ast.AST, mark: bool) -> frozenset[str]:
        if isinstance(node, ast.Name):
            return self.resolve_name(node.id)
        if isinstance(node, ast.Attribute):
            if mark:
                self.inner.add(id(node.value))
            bases = self.dotted(node.value, mark=mark)
            return frozenset(_normalize(f"{base}.{node.attr}") for base in bases)
        if isinstance(node, ast.Call):
            if mark:
                self.inner.add(id(node.func))
            funcs = self.dotted(node.func, mark=mark)
            first = node.args[0] if node.args else None
            if funcs & {"__import__", "import_module"} and _literal(first):
                name = _literal(first) or ""
                return frozenset({name if "import_module" in funcs else name.split(".")[0]})
            if "getattr" in funcs and len(node.args) >= 2 and _literal(node.args[1]) is not None:
                if mark:
                    self.inner.add(id(node.args[0]))
                bases = self.dotted(node.args[0], mark=mark)
                return frozenset(_normalize(f"{b}.{_literal(node.args[1])}") for b in bases)
            return frozenset(_normalize(f"{func}()") for func in funcs)
        if isinstance(node, ast.Subscript):
            key = _literal(node.slice)
            if mark:
                self.inner.add(id(node.value))
            value: ast.expr = node.value
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "vars"
                and value.args
            ):
                value = ast.Attribute(value=value.args[0], attr="__dict__")
            bases = self.dotted(value, mark=mark)
            if key is None:
                return frozenset()
            found: set[str] = set()
            for base in bases:
                if base == "sys.modules":
                    found.add(key)
                elif base.endswith(".__dict__"):
                    found.add(_normalize(f"{base[: -len('.__dict__')]}.{key}"))
                elif base.startswith("vars(") or base in ("globals()", "builtins.globals()"):
                    found |= self.resolve_name(key)
                elif base in ("builtins", "__builtins__"):  # __builtins__ is a dict outside __main__
                    found.add(_normalize(f"builtins.{key}"))
            return frozenset(found)
        return frozenset()

    def module_like(self, node: ast.AST) -> bool:
        """Whether ``node`` is (an attribute of) a module, where a computed getattr reaches anything."""
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name):
            return (
                root.id in self.imported
                or root.id in self.external
                or root.id in ("__builtins__", "builtins", "sys", "os")
            )
        if isinstance(root, ast.Call):
            funcs = self.dotted(root.func, mark=False)
            return bool(funcs & {"__import__", "import_module", "globals", "vars"})
        if isinstance(root, ast.Subscript):
            return "sys.modules" in self.dotted(root.value, mark=False)
        return False

    # -- the scan ----------------------------------------------------------------------------------------
    def run(self, tree: ast.AST) -> None:
        nodes = _nodes([tree])
        self.collect(nodes)
        self.visit(nodes)

    def collect(
        self,
        nodes: list[ast.AST],
        offsets: list[int] | None = None,
        outs: list[list[_Observation]] | None = None,
        owners: list[int] | None = None,
    ) -> None:
        """First pass: imports (observed), bindings and call sites. ``offsets``/``owners``/``outs``, when
        given, say per node which line offset applies and which list its observations go to."""
        for index, node in enumerate(nodes):
            kind = type(node)
            if kind is ast.Import or kind is ast.ImportFrom:
                if offsets is not None and owners is not None and outs is not None:
                    self.offset = offsets[index]
                    self.out = outs[owners[index]]
                self._import(node)  # type: ignore[arg-type]
            elif kind is ast.Assign or kind is ast.AnnAssign or kind is ast.NamedExpr:
                value = node.value  # type: ignore[attr-defined]
                if value is not None:
                    targets = node.targets if kind is ast.Assign else [node.target]  # type: ignore[attr-defined]
                    for bound in targets:
                        if type(bound) is ast.Name:
                            self.assigned.setdefault(bound.id, []).append(value)
            elif kind is ast.Call:
                self.call_funcs.add(id(node.func))  # type: ignore[attr-defined]

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.observe("import", alias.name, f"imports {alias.name}", node)
                if alias.asname:
                    self.imported.setdefault(alias.asname, set()).add(alias.name)
                else:
                    root = alias.name.split(".")[0]
                    self.imported.setdefault(root, set()).add(root)
        elif node.module and not node.level:
            self.observe("import", node.module, f"imports from {node.module}", node)
            for alias in node.names:
                if alias.name == "*":
                    self.star_modules.append(node.module)
                else:
                    target = _normalize(f"{node.module}.{alias.name}")
                    self.imported.setdefault(alias.asname or alias.name, set()).add(target)

    def visit(self, nodes: Iterable[ast.AST]) -> None:
        """Second pass: calls and the names they use, matched against the rules."""
        inner = self.inner
        for node in nodes:
            kind = type(node)
            if kind is ast.Call:
                self.call(node)  # type: ignore[arg-type]
                # A call is itself a name only when it resolves one: getattr(os, "system"), __import__("os").
                special = id(node) not in inner and any(
                    not name.endswith("()") for name in self.dotted(node, mark=False)
                )
                if special:
                    self.reference(node)
            elif kind is ast.Name:
                if id(node) in inner or type(node.ctx) is not ast.Load:  # type: ignore[attr-defined]
                    continue
                self.reference(node)
            elif kind is ast.Attribute or kind is ast.Subscript:
                if id(node) in inner:
                    continue
                self.reference(node)

    def reference(self, node: ast.AST) -> None:
        names = self.dotted(node)
        # What cannot be named is named after what it is taken from, with ``?`` for each unnamed
        # item: ``sys.modules[k].fork_exec`` is ``sys.modules.?.fork_exec`` and also uses
        # ``sys.modules``; ``ip.events.callbacks["pre_run_cell"].clear`` uses ``...events.callbacks``.
        part, suffix = node, ""
        while not names and isinstance(part, (ast.Attribute, ast.Subscript)):
            if isinstance(part, ast.Attribute):
                suffix = f".{part.attr}{suffix}"
                part = part.value
                names = self.dotted(part, mark=False)
                continue
            value = part.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "vars":
                base: frozenset[str] = frozenset({"vars()"})
            else:
                base = self.dotted(value, mark=False)
            if any(_is_namespace(b) for b in base):
                if _literal(part.slice) is None:
                    self.observe(*_computed_lookup(base), part)
                    return
                if part is node:
                    return
            suffix = f".?{suffix}"
            part = value
            names = base
        if suffix and names:
            names = names | frozenset(f"{name}{suffix}" for name in names)
        called = id(node) in self.call_funcs
        runners = names & _CODE_RUNNERS.keys()
        if runners and not called:
            name = min(runners)
            self.observe(
                "dynamic",
                _CODE_RUNNERS[name],
                f"passes {name} around as a value; what it runs is not visible",
                node,
            )
        verb = "calls" if called else "uses"
        for name in _with_callees(names):
            if self.c.triggers.could_match(name):
                what = f"{verb} {name}"
                if name in _SHELL_CALLS:
                    what = self.shell_what.get(id(node), what)
                self.observe("reference", name, what, node)

    def call(self, node: ast.Call) -> None:
        funcs = self.dotted(node.func, mark=False)
        if not funcs:
            return
        args = node.args
        first = args[0] if args else None
        if funcs & {"exec", "eval", "compile"}:
            kind = next(iter(sorted(funcs & {"exec", "eval", "compile"})))
            code = _literal(first)
            if code is not None:
                self.nested(code, node, ipython=False)
            elif first is not None:
                self.observe("dynamic", kind, f"{kind}() of code built at run time", node)
        if funcs & {"__import__", "import_module"}:
            name = _literal(first)
            if name is not None:
                self.observe("import", name, f"imports {name} dynamically", node)
            elif first is not None:
                self.observe("dynamic", "import", "imports a module whose name is computed at run time", node)
        if "getattr" in funcs and len(args) >= 2 and _literal(args[1]) is None and self.module_like(args[0]):
            self.observe("dynamic", "getattr", "getattr() with a computed name on a module", node)
        self.computed_access(node, funcs)
        if funcs & _RUN_CODE:
            code = _literal(first)
            if code is not None:
                self.nested(code, node, ipython=True)
            elif first is not None:
                self.observe("dynamic", "run_cell", "runs code built at run time as a new cell", node)
        if funcs & _SHELL_CALLS:
            command = _literal(first)
            self.shell_what[id(node.func)] = (
                f"runs shell command `{_snippet(command)}`"
                if command is not None
                else "runs a shell command built at run time"
            )
        if funcs & _LINE_MAGIC or _CELL_MAGIC in funcs:
            self.magic(node, cell=_CELL_MAGIC in funcs)
        last = self.last_name(node.func)
        if last is not None:
            if self.c.triggers.any_sql:
                self.sql_call(node, last)
            if self.c.triggers.any_remote and _IO_CALL.match(last):
                self.remote(node)

    def computed_access(self, node: ast.Call, funcs: frozenset[str]) -> None:
        """Reaching a module's members by computed names: ``sys.modules.get(name)``,
        ``vars(os).values()``, ``operator.attrgetter(name)``, ``type(m).__getattribute__(m, name)``."""
        args = node.args
        for func in funcs:
            owner, _, method = func.rpartition(".")
            if method in _NAMESPACE_METHODS and _is_namespace(owner):
                if method in _NAMESPACE_WHOLE or (args and _literal(args[0]) is None):
                    self.observe(*_computed_lookup({owner}), node)
                return
            if func in _GETTERS:  # every argument is a name
                computed = any(_literal(arg) is None for arg in args)
            elif method in ("__getattribute__", "__getattr__"):  # the name is the last argument
                computed = bool(args) and _literal(args[-1]) is None
            else:
                continue
            if computed:
                self.observe("dynamic", "getattr", f"{func}() with a computed name", node)
            return

    @staticmethod
    def last_name(func: ast.AST) -> str | None:
        if isinstance(func, ast.Attribute):
            return func.attr
        if isinstance(func, ast.Name):
            return func.id
        return None

    def magic(self, node: ast.Call, *, cell: bool) -> None:
        args = node.args
        name = _literal(args[0]) if args else None
        if name is None:
            if args:
                self.observe("dynamic", "magic", "runs a magic whose name is computed at run time", node)
            return
        line = _literal(args[1]) if len(args) > 1 else ""
        body = _literal(args[2]) if cell and len(args) > 2 else None
        if line is None or (cell and body is None):
            self.observe("dynamic", "magic", f"runs %{name} with arguments built at run time", node)
            line = line or ""
        label = f"%%{name}" if cell else f"%{name}"
        self.observe("magic", f"{name} {line}".strip(), f"runs the {label} magic", node)
        if name in _CODE_MAGICS:
            code = body if cell else _MAGIC_OPTIONS.sub("", line)
            if code:
                self.nested(code, node, ipython=True)
        if name == "sql":
            text = body if cell else re.sub(r"^\s*\w+\s*<<\s*", "", line)
            if text and not text.lstrip().startswith("-") and "://" not in text.split("\n", 1)[0]:
                text = re.sub(r"\{\{?\s*[^}]*\}?\}|[:$]\w+", f"{PLACEHOLDER}_0", text)
                self.sql_findings(self.c.sql.analyze(text), node)

    # -- SQL ---------------------------------------------------------------------------------------------
    def sql_call(self, node: ast.Call, last: str) -> None:
        if last in ("read_sql_table", "to_sql"):
            table_node = node.args[0] if node.args else _keyword(node, "table_name", "name")
            if table_node is None:
                return
            table = self.sql_text(table_node)
            kind, verb = (
                ("cardholder_read", "reads") if last == "read_sql_table" else ("cardholder_dml", "writes to")
            )
            if table is None:
                self.observe("sql", "unresolved", f"{last}() on a table named outside this cell", node)
            else:
                self.sql_findings(self.c.sql.table_access(table, kind, verb), node)
            return
        if not (last.startswith(_SQL_PREFIXES) or last in ("sql", "exec_driver_sql")):
            return
        text_node = node.args[0] if node.args else _keyword(node, *_SQL_TEXT_KEYWORDS)
        if text_node is None:
            return
        text = self.sql_text(text_node)
        if text is None:
            shown = ast.unparse(text_node) if isinstance(text_node, (ast.Name, ast.Attribute)) else "a value"
            self.observe(
                "sql",
                "unresolved",
                f"{last}() runs SQL held in {_snippet(shown)}, built outside this cell",
                node,
            )
            return
        self.sql_findings(self.c.sql.analyze(text), node)

    def sql_findings(self, findings: Iterable[SqlFinding], node: ast.AST) -> None:
        for finding in findings:
            self.observe("sql", finding.kind, finding.detail, node)

    def sql_text(self, node: ast.AST, depth: int = 0) -> str | None:
        """The SQL text of an expression, with run-time parts replaced by placeholders; None if unknown."""
        if depth > 8:
            return None
        literal = _literal(node)
        if literal is not None:
            return literal
        if isinstance(node, ast.JoinedStr):
            parts: list[str] = []
            for index, value in enumerate(node.values):
                text = _literal(value)
                parts.append(text if text is not None else f"{PLACEHOLDER}_{index}")
            return "".join(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left = self.sql_text(node.left, depth + 1)
            right = self.sql_text(node.right, depth + 1)
            if left is None and right is None:
                return None
            return (left if left is not None else f"{PLACEHOLDER}_l") + (
                right if right is not None else f"{PLACEHOLDER}_r"
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return self.sql_text(node.left, depth + 1)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "format":
                template = self.sql_text(node.func.value, depth + 1)
                return None if template is None else re.sub(r"\{[^{}]*\}", f"{PLACEHOLDER}_f", template)
            if self.last_name(node.func) == "text" and node.args:
                return self.sql_text(node.args[0], depth + 1)
            return None
        if isinstance(node, ast.Name):
            values = self.assigned.get(node.id, [])
            return self.sql_text(values[-1], depth + 1) if values else None
        return None

    def remote(self, node: ast.Call) -> None:
        for arg in [*node.args[:2], *(kw.value for kw in node.keywords)]:
            text = _literal(arg)
            if text is None and isinstance(arg, ast.JoinedStr) and arg.values:
                text = _literal(arg.values[0])
            found = _REMOTE.match(text) if text else None
            if found:
                self.observe(
                    "remote",
                    found.group(1).lower(),
                    f"reads or writes remote path {_snippet(text or '')}",
                    node,
                )


def _with_callees(names: Iterable[str]) -> list[str]:
    """``os.popen().read`` → itself and ``os.popen``: a method call on a result still calls the callee."""
    found: dict[str, None] = {}
    for name in names:
        found[name] = None
        parts = name.split(".")
        for index in range(len(parts) - 1, 0, -1):
            if parts[index - 1].endswith("()"):
                found[".".join(parts[:index])[:-2]] = None
    return list(found)


def _position(finding: Finding) -> tuple[int, int]:
    return (finding.span.line, finding.span.column)


def _shifted(obs: _Observation, lines: int) -> _Observation:
    span = obs.span
    return _Observation(
        obs.criterion,
        obs.subject,
        obs.what,
        Span(span.line + lines, span.column, span.end_line + lines, span.end_column),
    )


def _relevant(cell: str, aliases: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The aliases that can change the decision for ``cell``: those of the names it uses, or all of them
    when the cell can reach names through strings (escapes, ``globals()[...]``, ``exec``)."""
    if not aliases:
        return ()
    words = _cell_words(cell)
    if "\\" in cell or not words.isdisjoint(RESOLVING_WORDS):
        return tuple(sorted(aliases.items()))
    return tuple(sorted((name, aliases[name]) for name in words & aliases.keys()))


@functools.lru_cache(maxsize=256)
def _cell_words(cell: str) -> frozenset[str]:
    text = cell if cell.isascii() else unicodedata.normalize("NFKC", cell)
    return frozenset(WORD.findall(text))


def _keyword(node: ast.Call, *names: str) -> ast.expr | None:
    for keyword in node.keywords:
        if keyword.arg in names:
            return keyword.value
    return None


class Classifier:
    """A policy's rules, compiled once; :meth:`classify` is pure and safe to call from any thread.

    Cells are read statement by statement (``incremental``, the default): the cell is cut into
    top-level statements from its text (:mod:`.chunks`), and only the statements that can match a rule,
    with every statement that may bind a name they use, are parsed and scanned. Anything unusual (a
    cell magic, pasted prompts, a piece that does not parse on its own) falls back to reading the whole
    cell, so the decision is the one the whole-cell scan gives. Parsed statements are cached by text,
    decisions by (cell, aliases of the names the cell uses).
    """

    def __init__(self, policy: Policy, *, incremental: bool = True, cache_size: int = 256) -> None:
        self.policy = policy
        self.rules = tuple(CompiledRule.of(rule) for rule in policy.rules)
        self.triggers = Triggers(policy.rules)
        self.sql = _LazySqlRules(policy.data)
        self.incremental = incremental
        self._cached = functools.lru_cache(maxsize=cache_size)(self._classify_items)
        self._parsed = functools.lru_cache(maxsize=4 * cache_size)(prepare)
        self.stats = {"whole": 0, "incremental": 0, "fallback": 0, "skipped": 0}

    def cache_clear(self) -> None:
        """Forget every cached decision, parsed statement and SQL analysis (cold start)."""
        self._cached.cache_clear()
        self._parsed.cache_clear()
        self.sql.analyze.cache_clear()

    def classify(self, cell: str, aliases: Mapping[str, str] | None = None) -> Decision:
        """Decide for one cell. ``aliases``: names from earlier cells (see :func:`aliases_from_namespace`)."""
        return self._cached(cell, _relevant(cell, aliases or {}))

    def classify_uncached(self, cell: str, aliases: Mapping[str, str] | None = None) -> Decision:
        return self._classify_items(cell, _relevant(cell, aliases or {}))

    def classify_whole(self, cell: str, aliases: Mapping[str, str] | None = None) -> Decision:
        """The reference: parse and scan the whole cell (what the incremental path must agree with)."""
        return self._classify_items(cell, _relevant(cell, aliases or {}), incremental=False)

    def bindings_after(self, cell: str, aliases: Mapping[str, str]) -> dict[str, str]:
        """The aliases in force after ``cell`` runs, as far as its text shows: ``aliases`` updated with
        the names the cell imports or binds to a dotted name (``import subprocess as sp``,
        ``run = sp.run``) and without those it rebinds to anything else.

        For whoever classifies cells without the kernel's namespace (the server's inbound guard): it
        sees only the code it forwarded, so ``sp.run(...)`` in a later cell is still a
        ``subprocess.run`` call. A cell that does not parse binds nothing.
        """
        prepared = prepare(cell)
        if prepared.tree is None:
            return dict(aliases)
        scan = _Scan(self, aliases, [])
        scan.collect(_nodes([prepared.tree]))
        after = dict(aliases)
        for name in {*scan.imported, *scan.assigned}:
            if name in scan.assigned:  # the value it was last given (an import counts as one too)
                targets: set[str] = set(scan.imported.get(name, ()))
                for value in scan.assigned[name]:
                    targets |= scan.dotted(value, mark=False)
            else:
                targets = set(scan.imported[name])
            found = sorted(n for n in targets if not n.endswith("()"))
            if found and found[0] != name:
                after[name] = found[0]
            else:
                after.pop(name, None)
        return after

    def _classify_items(
        self, cell: str, alias_items: tuple[tuple[str, str], ...], *, incremental: bool | None = None
    ) -> Decision:
        aliases = dict(alias_items)
        observations: list[_Observation] = []
        notes: list[str] = []
        gc_was_enabled = gc.isenabled()
        if gc_was_enabled:
            gc.disable()  # ASTs are acyclic and freed by reference counting: collections only add pauses
        try:
            if self.incremental if incremental is None else incremental:
                done = self._scan_incremental(cell, aliases, observations)
            else:
                done = False
            if not done:
                observations.clear()
                if self.triggers.worth_scanning(cell, aliases):
                    self.stats["whole"] += 1
                    note = self.scan_code(cell, aliases, observations, depth=0, host=None, ipython=True)
                    if note:
                        notes.append(note)
                else:
                    self.stats["skipped"] += 1
            findings = tuple(sorted(self._findings(observations), key=_position))
            if findings:
                findings = fit_spans(findings, cell)
        finally:
            if gc_was_enabled:
                gc.enable()
        return Decision(strictest(findings), findings, self.policy.version, self.policy.mode, tuple(notes))

    # -- statement by statement ----------------------------------------------------------------------------
    def _scan_incremental(self, cell: str, aliases: Mapping[str, str], out: list[_Observation]) -> bool:
        """Scan only the statements that matter; False when the whole cell must be read instead."""
        chunks = split(cell)
        if chunks is None:
            return False
        text = chunks.text
        triggers = self.triggers
        if triggers.always or _STAR_IMPORT.search(text):  # starts with ``import``: fast in C
            return False  # ``from m import *`` makes every name of the cell a possible m.name
        index_of = chunks.index_of
        local = {index_of(offset) for offset in ipython_syntax_offsets(text)}
        if triggers.any_remote:
            ends = [*chunks.starts[1:], len(text)]
            for offset in remote_hint_offsets(text):
                index = index_of(offset)
                if index not in local and IO_WORD.search(text, chunks.starts[index], ends[index]):
                    local.add(index)
        text_words = Words(chunks)
        words = text_words.of
        active = triggers.active(text_words.all(), aliases)
        if active is None and not local:
            self.stats["skipped"] += 1
            return True
        if active is not None and active.always:
            return False

        hot = set(local)
        if active is not None:
            candidates = text_words.where(active.search)
            keys = text_words.keys
            own: dict[str, set[str]] = {}  # active words of a statement text (each text worked out once)
            expand = active.expand
            for i in candidates:
                key = keys[i]
                if key not in own:
                    held = words(i)
                    mine = held & active.words
                    if expand:
                        for name in held & expand.keys():
                            mine |= expand[name]
                    own[key] = mine
            met_by_words: dict[frozenset[str], bool] = {}  # most statements reach the same few words

            def met(found: set[str]) -> bool:
                frozen = frozenset(found)
                known = met_by_words.get(frozen)
                if known is None:
                    known = met_by_words[frozen] = bool(found) and triggers.met(frozen)
                return known

            if self._bindings_pass_nothing(candidates, keys, own, active.names, text_words, met):
                meets = {key: met(mine) for key, mine in own.items()}
                hot.update([i for i in candidates if meets[keys[i]]])
            else:
                self._hot_through_bindings(candidates, keys, own, active, text_words, met, hot)
        if not hot:
            self.stats["skipped"] += 1
            return True
        # Every statement that may bind a name a scanned statement uses is scanned too: the names its tree
        # loads, and its strings that may name a variable (``globals()["a" "b"]``, ``vars()["\\x61"]``).
        selected = set(hot)
        queue = list(hot)
        seen_names: set[str] = set()
        sources = chunks.sources
        levels_of: dict[str, list[list[ast.AST]]] = {}  # by statement text (the same text, the same tree)
        while queue:
            source = sources[queue.pop()]
            if source in levels_of:
                continue
            prepared = self._parsed(source)
            if prepared.tree is None:
                self.stats["fallback"] += 1
                return False
            levels = levels_of[source] = _levels(prepared.tree.body)
            for name in _used_names(levels) - seen_names:
                seen_names.add(name)
                for binder in text_words.binders(name):
                    if binder not in selected:
                        selected.add(binder)
                        queue.append(binder)
        roots: list[tuple[list[list[ast.AST]], int, int]] = []  # levels, line offset, first of the same text
        first: dict[str, int] = {}
        for i in sorted(selected):
            source = sources[i]
            roots.append(
                (
                    levels_of[source],
                    chunks.line(i) + self._parsed(source).line_offset,
                    first.setdefault(source, len(roots)),
                )
            )
        self.stats["incremental"] += 1
        self._scan_roots(roots, aliases, out)
        return True

    @staticmethod
    def _bindings_pass_nothing(
        candidates: set[int],
        keys: list[str],
        own: dict[str, set[str]],
        names: frozenset[str],
        text_words: Words,
        met: Callable[[set[str]], bool],
    ) -> bool:
        """Whether no binding can make a statement meet a rule that its own words do not already meet.

        What a binding passes on (``x = os`` makes ``x`` stand for ``os``) is at most the union ``passed``
        of the active names of the candidate statements that bind something: only candidates hold active
        words (a statement that only uses a name bound in one holds none of its own), and a name passes
        on what its binders hold or receive. ``met`` is monotone, so when neither ``passed`` alone (what
        a statement that only uses bound names may reach) nor any candidate's own words with ``passed``
        meet a rule beyond what the own words meet, the closure over bindings cannot add a statement."""
        passed: set[str] = set()
        seen: set[str] = set()
        for i in candidates:
            key = keys[i]
            if key in seen:
                continue
            seen.add(key)
            extra = own[key] & names
            if extra and not extra <= passed and text_words.bound(i):
                passed |= extra
        if not passed:
            return True
        if met(passed):
            return False
        return all(met(mine) or not met(mine | passed) for mine in own.values())

    def _hot_through_bindings(
        self,
        candidates: set[int],
        keys: list[str],
        own: dict[str, set[str]],
        active: Active,
        text_words: Words,
        met: Callable[[set[str]], bool],
        hot: set[int],
    ) -> None:
        """Add to ``hot`` the candidates that meet a rule with what the names they use are bound to:
        the statements that use names bound in candidates join them, then what each name passes on is
        worked out to a fixed point."""
        words = text_words.of
        tainted: set[str] = set()
        frontier = set(candidates)
        while frontier:
            names = set().union(*(text_words.bound(i) for i in frontier)) - tainted
            tainted |= names
            frontier = text_words.where(names) - candidates if names else set()
            candidates |= frontier
        for i in candidates:
            key = keys[i]
            if key not in own:
                mine = words(i) & active.words
                for name in words(i) & active.expand.keys():
                    mine |= active.expand[name]
                own[key] = mine
        passed = {keys[i]: i for i in candidates}
        bound = text_words.bound
        binders = {
            name: {keys[i] for i in text_words.where((name,)) & candidates if name in bound(i)}
            for name in tainted
        }  # binders among the candidates (the others pass nothing on)
        reach: dict[str, set[str]] = {name: set() for name in tainted}
        changed = True
        while changed:
            changed = False
            for name in tainted:
                acc = reach[name]
                size = len(acc)
                for key in binders[name]:
                    acc |= own[key] & active.names
                    for other in words(passed[key]) & tainted:
                        if other != name:
                            acc |= reach[other]
                changed |= len(acc) != size
        meets: dict[str, bool] = {}
        for i in candidates:
            key = keys[i]
            found = meets.get(key)
            if found is None:
                mine = set(own[key])
                for name in words(i) & tainted:
                    mine |= reach[name]
                found = meets[key] = met(mine)
            if found:
                hot.add(i)

    def _scan_roots(
        self,
        roots: list[tuple[list[list[ast.AST]], int, int]],
        aliases: Mapping[str, str],
        out: list[_Observation],
    ) -> None:
        """Scan parsed statements as the whole-cell walk would: breadth first over all of them together
        (depth, then statement, then position), so bindings and marks come in the same order. A
        statement whose text repeats an earlier one has the same tree (parses are cached by text): its
        bindings are collected again at its place, and the observations of the first copy are shifted."""
        outs: list[list[_Observation]] = [[] for _ in roots]
        scan = _Scan(self, aliases, outs[0])
        levels_of: dict[int, list[list[ast.AST]]] = {}
        # Per first copy of a text, its levels that hold nodes :meth:`_Scan.collect` reads; a later copy
        # needs only its bindings (its calls are the same nodes, already recorded).
        binding_of: dict[int, list[tuple[int, list[ast.AST]]]] = {}
        copy_binding_of: dict[int, list[tuple[int, list[ast.AST]]]] = {}
        for owner, (levels, _, original) in enumerate(roots):
            if original == owner:
                levels_of[owner] = levels
                found: list[tuple[int, list[ast.AST]]] = []
                for index, at_level in enumerate(levels):
                    picked = [node for node in at_level if type(node) in _COLLECTED]
                    if picked:
                        found.append((index, picked))
                binding_of[owner] = found
                copy_binding_of[owner] = [
                    (index, kept)
                    for index, picked in found
                    if (kept := [node for node in picked if type(node) is not ast.Call])
                ]
        depth = max(len(levels) for levels in levels_of.values())
        by_level: dict[int, list[tuple[int, int, list[ast.AST]]]] = {}
        for owner, (_, offset, original) in enumerate(roots):
            for index, picked in (binding_of if original == owner else copy_binding_of)[original]:
                by_level.setdefault(index, []).append((owner, offset, picked))
        nodes: list[ast.AST] = []
        offsets: list[int] = []
        owners: list[int] = []
        for index in sorted(by_level):  # breadth first: level, then statement, then position
            for owner, offset, picked in by_level[index]:
                nodes.extend(picked)
                offsets.extend([offset] * len(picked))
                owners.extend([owner] * len(picked))
        scan.collect(nodes, offsets, outs, owners)
        imported_only = [len(found) for found in outs]
        for level in range(depth):
            for owner, levels in levels_of.items():
                if level < len(levels):
                    scan.offset = roots[owner][1]
                    scan.out = outs[owner]
                    scan.visit(levels[level])
        for owner, (_, offset, original) in enumerate(roots):
            if original != owner and len(outs[original]) > imported_only[original]:
                shift = offset - roots[original][1]
                outs[owner].extend(
                    [_shifted(obs, shift) for obs in outs[original][imported_only[original] :]]
                )
        for observed in outs:
            out.extend(observed)

    def scan_code(
        self,
        code: str,
        aliases: Mapping[str, str],
        out: list[_Observation],
        *,
        depth: int,
        host: Span | None,
        ipython: bool,
    ) -> str | None:
        """Scan ``code`` into ``out``; returns a note when the code will not run at all."""
        if ipython:
            prepared = prepare(code)
        else:
            try:
                prepared_tree: ast.Module | None = ast.parse(code)
            except (SyntaxError, ValueError):
                try:
                    prepared_tree = ast.Module(
                        body=[ast.Expr(ast.parse(code, mode="eval").body)], type_ignores=[]
                    )
                except (SyntaxError, ValueError):
                    return "code passed to exec/eval does not parse; it will raise SyntaxError"
            _Scan(self, aliases, out, depth=depth, host=host).run(prepared_tree)  # type: ignore[arg-type]
            return None
        if prepared.tree is None:
            return prepared.note
        _Scan(self, aliases, out, depth=depth, host=host, offset=prepared.line_offset).run(prepared.tree)
        return None

    def _findings(self, observations: list[_Observation]) -> Iterator[Finding]:
        seen: set[tuple[str, str, str, Span]] = set()
        for obs in observations:
            for compiled in self.rules:
                if not compiled.matches(obs.criterion, obs.subject):
                    continue
                rule = compiled.rule
                # One finding per rule and place for names: ``requests.Session().get`` is one use.
                subject = "" if obs.criterion == "reference" else obs.subject
                key = (rule.id, obs.criterion, subject, obs.span)
                if key in seen:
                    continue
                seen.add(key)
                description = rule.description
                if description[1:2].islower():
                    description = description[:1].lower() + description[1:]
                yield Finding(
                    rule.id,
                    rule.action,
                    obs.criterion,
                    obs.subject,
                    f"{obs.what} — {description}",
                    obs.span,
                    rule.pci,
                )


def classify(cell: str, policy: Policy, aliases: Mapping[str, str] | None = None) -> Decision:
    """Convenience: classify one cell with a policy (the compiled classifier is cached per policy)."""
    return _classifier_for(policy).classify(cell, aliases)


@functools.lru_cache(maxsize=8)
def _classifier_for(policy: Policy) -> Classifier:
    return Classifier(policy)


class _LazySqlRules:
    """The policy's :class:`~governed_kernel.policy.sql.SqlRules`, built on first use.

    Importing sqlglot is ~65 ms of every kernel start, and most cells hold no SQL: the first cell that
    needs an SQL analysis pays it instead.
    """

    def __init__(self, data: DataRules) -> None:
        self._data = data
        self._rules: SqlRules | None = None

    @property
    def rules(self) -> SqlRules:
        if self._rules is None:
            from governed_kernel.policy.sql import SqlRules

            self._rules = SqlRules(self._data)
        return self._rules

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rules, name)

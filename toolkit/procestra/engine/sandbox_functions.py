"""Functions, ``return``, ``del`` and item assignment in sandboxed scripts.

A ``def`` (or ``lambda``) in a script makes a :class:`ScriptFunction`: its body is compiled by
the same whitelisting compiler as the rest of the script, and runs over a :class:`Frame` of
its own local names on top of the scope it was defined in, as Python resolves names (a
name the function assigns is local; any other is read from the enclosing function or
the script's variables at call time). A function object has no attribute a script may read,
counts one step per call, nests at most :data:`CALL_DEPTH` calls deep, and is never stored
in the case data (SpiffWorkflow drops callables from task data after a script, so does this).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from procestra.engine import sandbox_lib as _sl
from procestra.engine.sandbox_compiler import _Compiler, _dunder
from procestra.engine.sandbox_lib import FUNCTIONS, _Fail
from procestra.engine.sandbox_modules import NAMES

_Step = Callable[[Any], None]
_Fn = Callable[[Any], Any]

#: How deep script functions may call each other (recursion included).
CALL_DEPTH = 50


class _Return(Exception):
    """``return`` inside a script function, carrying its value."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


class Frame(MutableMapping[str, Any]):
    """One call's local variables over the scope the function was defined in (Python's name rules)."""

    __slots__ = ("local", "names", "parent")

    def __init__(self, names: frozenset[str], parent: Mapping[str, Any]) -> None:
        self.local: dict[str, Any] = {}
        self.names = names
        self.parent = parent

    def __getitem__(self, key: str) -> Any:
        if key in self.names:
            return self.local[key]  # a local not yet assigned is missing, not the outer one (UnboundLocalError)
        return self.parent[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.local[key] = value

    def __delitem__(self, key: str) -> None:
        del self.local[key]

    def __iter__(self) -> Iterator[str]:
        yield from self.local
        yield from (k for k in self.parent if k not in self.names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ScriptFunction(_sl.ScriptCallable):
    """A function a script defined: called only by the script, never stored in the case."""

    __slots__ = ("_body", "_defaults", "_keyword_only", "_names", "_positional", "_positional_only", "_scope", "name")

    def __init__(
        self, name: str, spec: _Signature, defaults: dict[str, Any], body: _Fn, scope: Mapping[str, Any]
    ) -> None:
        self.name = name
        self._positional_only, self._positional, self._keyword_only, self._names = spec
        self._defaults = defaults
        self._body = body
        self._scope = scope

    def __repr__(self) -> str:
        return f"<function {self.name}>"

    def call(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        budget = _sl.budget()
        budget.tick()
        if budget.calls >= CALL_DEPTH:
            raise _Fail(f"{self.name}() called more than {CALL_DEPTH} calls deep (the recursion limit)")
        frame = Frame(self._names, self._scope)
        frame.local.update(self._bind(args, kwargs))
        budget.calls += 1
        try:
            return self._body(frame)
        except _Return as done:
            return done.value
        finally:
            budget.calls -= 1

    def _bind(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        positional = self._positional_only + self._positional
        if len(args) > len(positional):
            raise _Fail(f"{self.name}() takes {len(positional)} positional arguments but {len(args)} were given")
        bound = dict(zip(positional, args))
        for key, value in kwargs.items():
            if key in self._positional_only or (key not in self._positional and key not in self._keyword_only):
                raise _Fail(f"{self.name}() got an unexpected keyword argument {key!r}")
            if key in bound:
                raise _Fail(f"{self.name}() got multiple values for argument {key!r}")
            bound[key] = value
        for key in (*positional, *self._keyword_only):
            if key not in bound:
                if key not in self._defaults:
                    raise _Fail(f"{self.name}() missing required argument {key!r}")
                bound[key] = self._defaults[key]
        return bound


#: Positional-only, positional and keyword-only parameter names, and all local names of a function.
_Signature = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], frozenset[str]]


def defined_functions(tree: ast.AST) -> frozenset[str]:
    """Names a script binds to a function: ``def name`` and ``name = lambda ...`` anywhere in it."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return frozenset(out)


def _local_names(args: ast.arguments, body: list[ast.stmt] | ast.expr) -> frozenset[str]:
    """The names local to a function: its parameters and what its own body binds (not nested scopes)."""
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    stack: list[ast.AST] = list(body) if isinstance(body, list) else [body]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
            stack.extend([*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)])
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue  # scopes of their own
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(names)


class _Functions(_Compiler):
    """The compiler's part for ``def``, ``lambda``, ``return``, ``del`` and ``d[k] = v``."""

    #: Names the script binds to functions (calling any other unknown name is refused at compile time).
    function_names: frozenset[str] = frozenset()
    #: Whether this is a script (functions may be defined), not an expression.
    scripting = False
    #: Whether the script changes items of values in place (then every stored value is checked).
    mutates = False
    loops = 0

    def target(self, node: ast.AST, local: set[str] | None = None) -> Callable[[Any, Any], None]:
        if isinstance(node, ast.Subscript):
            return self.item_target(node, 0)
        return super().target(node, local)

    def block(self, body: list[ast.stmt], depth: int) -> _Step:
        raise NotImplementedError  # the script compiler's

    def function(
        self, node: ast.FunctionDef | ast.Lambda, d: int
    ) -> tuple[_Signature, Callable[[Any], dict[str, Any]]]:
        """The signature and a function giving the defaults (evaluated where the function is defined)."""
        args = node.args
        if args.vararg is not None or args.kwarg is not None:
            raise self.unsafe(node, "'*args' and '**kwargs' parameters are not allowed")
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        for a in params:
            if _dunder(a.arg) or a.arg in FUNCTIONS or a.arg in NAMES:
                raise self.unsafe(node, f"the parameter name {a.arg!r} is not allowed")
            if a.annotation is not None:
                self.annotation(a.annotation, d)
        positional = [a.arg for a in (*args.posonlyargs, *args.args)]
        defaults = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
        defaults += [(a.arg, v) for a, v in zip(args.kwonlyargs, args.kw_defaults) if v is not None]
        compiled = [(name, self.expr(v, d)) for name, v in defaults]
        body = node.body
        names = _local_names(args, body if isinstance(body, list) else body)
        spec: _Signature = (tuple(a.arg for a in args.posonlyargs), tuple(a.arg for a in args.args),
                            tuple(a.arg for a in args.kwonlyargs), names)  # fmt: skip

        def evaluate_defaults(scope: Any) -> dict[str, Any]:
            return {name: fn(scope) for name, fn in compiled}

        return spec, evaluate_defaults

    def annotation(self, node: ast.expr, d: int) -> None:
        """Checked like any expression (nothing hides in an annotation), but never evaluated."""
        before = set(self.variables)
        self.expr(node, d)
        self.variables = before

    def in_function(self, names: frozenset[str], compile_body: Callable[[], _Fn]) -> _Fn:
        """Compile a function's body with its local names bound and no enclosing loop."""
        loops, self.loops = self.loops, 0
        self.scopes.append(set(names))
        try:
            return compile_body()
        finally:
            self.scopes.pop()
            self.loops = loops

    def _stmt_FunctionDef(self, node: ast.FunctionDef, d: int) -> _Step:
        if not self.scripting:
            raise self.unsafe(node, "defining functions is not allowed here")
        if node.decorator_list:
            raise self.unsafe(node, "decorators are not allowed")
        if node.returns is not None:
            self.annotation(node.returns, d)
        name = node.name
        if _dunder(name) or name in FUNCTIONS or name in NAMES:
            raise self.unsafe(node, f"cannot define a function named {name!r}")
        spec, defaults = self.function(node, d)
        store = self.bind_function(node, name)
        block = self.in_function(spec[3], lambda: self.block(node.body, d))

        def body(frame: Any) -> Any:
            block(frame)
            return None

        def define(scope: Any) -> None:
            store(scope, ScriptFunction(name, spec, defaults(scope), body, scope))

        return define

    def bind_function(self, node: ast.AST, name: str) -> Callable[[Any, Any], None]:
        """Where ``def name`` stores its function: a local of the enclosing function, else a script working name."""
        if not self.scopes:
            self.temporaries.add(name)  # never case data

        def store(scope: Any, value: Any) -> None:
            scope[name] = value

        return store

    def _Lambda(self, node: ast.Lambda, d: int) -> _Fn:
        if not self.scripting:
            raise self.unsafe(node, "lambda functions are not allowed here (only in scripts)")
        spec, defaults = self.function(node, d)
        value = self.in_function(spec[3], lambda: self.expr(node.body, d))
        return lambda scope: ScriptFunction("<lambda>", spec, defaults(scope), value, scope)

    def _stmt_Return(self, node: ast.Return, d: int) -> _Step:
        if not self.scopes:
            raise self.unsafe(node, "'return' outside a function")
        value = self.expr(node.value, d) if node.value is not None else None

        def return_(scope: Any) -> None:
            raise _Return(value(scope) if value is not None else None)

        return return_

    def _stmt_Delete(self, node: ast.Delete, d: int) -> _Step:
        steps = [self.delete(t, d) for t in node.targets]

        def delete(scope: Any) -> None:
            for step in steps:
                step(scope)

        return delete

    def delete(self, node: ast.expr, d: int) -> _Step:
        """``del name``, ``del d[key]`` or ``del items[i]``."""
        if isinstance(node, (ast.Tuple, ast.List)):
            parts = [self.delete(e, d) for e in node.elts]

            def delete_all(scope: Any) -> None:
                for part in parts:
                    part(scope)

            return delete_all
        if isinstance(node, ast.Name):
            name = node.id
            if _dunder(name) or name in FUNCTIONS or name in NAMES:
                raise self.unsafe(node, f"cannot delete {name!r}")
            # not a read of case data: a called model deletes what its caller passed (it fails if it is not there)

            def delete_name(scope: Any) -> None:
                if name not in scope:
                    raise _Fail(f"cannot delete {name!r}: no such variable", node)
                del scope[name]

            return delete_name
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
            container, key = self.item(node, d)

            def delete_item(scope: Any) -> None:
                obj, k = container(scope), key(scope)
                _check_item(obj, k, node, delete=True)
                del obj[k]

            return delete_item
        raise self.unsafe(node, "del takes variable names and items (del x, del d['k'], del items[0]), not "
                                "fields or slices")  # fmt: skip

    def item(self, node: ast.Subscript, d: int) -> tuple[_Fn, _Fn]:
        """The container and key of ``name[...][key]``, whose root must be a variable (not ``locals()[k]``)."""
        root: ast.expr = node.value
        while isinstance(root, ast.Subscript):
            root = root.value
        if not isinstance(root, ast.Name):
            raise self.unsafe(node, "assign to or delete items of a variable only (d['k'] = v), not to items or "
                                    "fields of other values")  # fmt: skip
        container, key = self.expr(node.value, d), self.expr(node.slice, d)
        name = root.id
        if not any(name in n for n in (*self.locals, *self.scopes)) and not name.startswith("_") and \
                name not in NAMES:  # fmt: skip
            self.assigned.add(name)  # changed in place: stored (and checked) like an assignment
        self.mutates = True
        return container, key

    def item_target(self, node: ast.Subscript, d: int) -> Callable[[Any, Any], None]:
        """``d[key] = value`` and ``items[i] = value``."""
        if isinstance(node.slice, ast.Slice):
            raise self.unsafe(node, "assigning to a slice is not allowed: build a new list")
        container, key = self.item(node, d)

        def store(scope: Any, value: Any) -> None:
            obj, k = container(scope), key(scope)
            _check_item(obj, k, node, delete=False)
            obj[k] = value

        return store


def _check_item(obj: Any, key: Any, node: ast.AST, *, delete: bool) -> None:
    """Fail unless ``obj[key]`` may be set (or deleted): a dict's key, or an index within a list."""
    if isinstance(obj, dict):
        _sl.guard(key)
        if delete and key not in obj:
            raise _Fail(f"no key {key!r} to delete", node)
        if not delete and key not in obj:
            _sl.charge(64)
        return
    if isinstance(obj, list):
        if isinstance(key, bool) or not isinstance(key, int):
            raise _Fail(f"a list index must be an integer, not {type(key).__name__}", node)
        if not -len(obj) <= key < len(obj):
            raise _Fail(f"index {key} is out of range (length {len(obj)})", node)
        return
    raise _Fail(f"items can be {'deleted' if delete else 'set'} in a dict or a list, not a {type(obj).__name__}", node)

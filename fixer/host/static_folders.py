"""Which folder each input of a custom node lists, read from the pack's sources without importing them.

For the CLI with a ComfyUI folder but no running ComfyUI (docs/comfyui-facts.md): a node's INPUT_TYPES()
(or a V3 node's define_schema()) usually returns literals built from `folder_paths.get_filename_list("x")`,
directly or through a local variable, a helper function, a method, a list comprehension adding a prefix
(`"bbox/" + x`) or a class constant naming the folder. This module follows those within the pack's own
modules (parsed with `ast`, never executed) and builds the node definitions the scan needs: the input
order (for UI workflows' widget lists) and a FolderMap with source "static". It also runs the pack's
import-time statements symbolically for the folders it registers (helpers called with literal arguments,
loops over literal lists and dicts, edits of folder_names_and_paths) and for node classes generated in
such loops (`type(...)`, factory functions). What it cannot follow is left out (registrations it could not
read are named); the scan then falls back to the keyword rules. Only regular files inside the pack, under
a size cap, are read (read_source).

Inside ComfyUI the same reading completes what asking the node (folder_probe.py) cannot see, and gives
their folders to the node types of packs that failed to import (PackSources).
"""

from __future__ import annotations

import ast
import logging
import os
import stat
import threading
import time
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeVar

from ..actionlog import action
from ..constants import COMFY_PT_EXTENSIONS, map_legacy
from ..record import Record
from ..state import read_json, write_json_atomic
from .folder_probe import FolderMap, Listing, folder_map_of, with_folder_map

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_FOLDER_CALLS = frozenset({"get_filename_list", "get_filename_list_", "get_folder_paths"})
_LISTING_CALLS = frozenset({"listdir", "scandir"})  # a folder the pack lists itself (os.listdir(path))
_V3_KINDS = {"Combo": "COMBO", "Int": "INT", "Float": "FLOAT", "String": "STRING", "Boolean": "BOOLEAN"}
_SKIP_DIRS = frozenset({".git", "__pycache__", "node_modules", "web", "js", "venv", ".venv", "site-packages",
                        "tests", "test", "docs", "example_workflows", "examples", "workflows"})
_MENTIONS = ("INPUT_TYPES", "define_schema", "folder_paths", "NODE_CLASS_MAPPINGS")
_MAX_FILE_BYTES = 2_000_000
_CACHE_VERSION = "static_folders 5"  # bump when what a reading holds changes
_DEPTH = 6
_MODELS = "\x00models"  # stands for folder_paths.models_dir while a path expression is evaluated


_PARSE_LOCK = threading.Lock()


def parse(text: str, filename: str) -> ast.Module:
    """ast.parse, one at a time in this process, tried again on a SystemError: CPython 3.11 builds AST
    objects with an interpreter-wide recursion counter, and two threads parsing at once (a scan reading
    packs while ComfyUI answers /object_info and a node calls ast.literal_eval) fail with "AST constructor
    recursion depth mismatch". A file that fails three times is skipped like a syntax error."""
    with _PARSE_LOCK:
        for _ in range(2):
            try:
                return ast.parse(text, filename=filename)
            except SystemError:
                time.sleep(0.01)
        return ast.parse(text, filename=filename)


@dataclass(eq=False, repr=False)
class _Pack(Record):
    """One pack's parsed modules, indexed by name (first definition wins)."""

    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    constants: dict[str, ast.expr] = field(default_factory=dict)
    mappings: dict[str, str] = field(default_factory=dict)  # node type -> class name
    extensions: dict[str, frozenset[str]] = field(default_factory=dict)  # folder key -> registered extensions
    module_constants: dict[str, dict[str, ast.expr]] = field(default_factory=dict)  # class -> its module's names
    pending: list[tuple[ast.expr, str]] = field(default_factory=list)  # NODE_CLASS_MAPPINGS (key, class) to resolve
    merged: list[str] = field(default_factory=list)  # names of mapping dicts merged into NODE_CLASS_MAPPINGS
    bodies: list[tuple[list[ast.stmt], dict[str, ast.expr], str]] = field(default_factory=list)  # modules run
    unread_registrations: list[str] = field(default_factory=list)  # "file:line: source" it could not follow
    class_env: dict[str, dict[str, str]] = field(default_factory=dict)  # generated class -> names bound in it
    unresolved: set[str] = field(default_factory=set)  # classes mapped under a key this reader cannot evaluate
    unread: dict[Path, str] = field(default_factory=dict)  # modules without nodes, parsed when a name is looked up
    looked_up: set[tuple[str, ...]] = field(default_factory=set)

    def add(self, tree: ast.Module, walk: bool = True, where: str = "") -> None:
        own: dict[str, ast.expr] = {}
        for stmt in _module_level(tree.body):  # through if/try: `if ...: current_paths = [MODELS_DIR]`
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                own.setdefault(stmt.targets[0].id, stmt.value)
                self.constants.setdefault(stmt.targets[0].id, stmt.value)
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(stmt.name, stmt)
            elif isinstance(stmt, ast.ClassDef) and stmt.name not in self.classes:
                self.classes[stmt.name] = stmt
                self.module_constants[stmt.name] = own
        if walk:
            self.bodies.append((tree.body, own, where))
            for stmt in _module_level(tree.body):
                for n in ast.walk(stmt):
                    self._mapping(n)

    def _read_for(self, *patterns: str) -> None:
        if patterns in self.looked_up:
            return
        self.looked_up.add(patterns)
        for path, text in list(self.unread.items()):
            if any(p in text for p in patterns):
                del self.unread[path]
                try:
                    self.add(parse(text, str(path)), walk=False)
                except (SyntaxError, ValueError, RecursionError, SystemError):
                    pass

    def function(self, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        if name not in self.functions:
            self._read_for(f"def {name}(")
        return self.functions.get(name)

    def class_named(self, name: str) -> ast.ClassDef | None:
        if name not in self.classes:
            self._read_for(f"class {name}(", f"class {name}:")
        return self.classes.get(name)

    def constant(self, name: str) -> ast.expr | None:
        if name not in self.constants:
            self._read_for(f"\n{name} =", f"\n{name}=")
        return self.constants.get(name)

    def _mapping(self, n: ast.AST) -> None:
        """NODE_CLASS_MAPPINGS = {...}, .update({...}) and ["Type"] = Class; a dict merged in by name
        (`.update(IMAGE_CLASS_MAPPINGS)`, `{**A, **B}`) is looked up once every module is read."""
        if isinstance(n, ast.Assign) and any(_name_of(t) == "NODE_CLASS_MAPPINGS" for t in n.targets):
            self._mapping_dict(n.value)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "update" \
                and _name_of(n.func.value) == "NODE_CLASS_MAPPINGS" and n.args:
            self._mapping_dict(n.args[0])
        elif isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Subscript) \
                and _name_of(n.targets[0].value) == "NODE_CLASS_MAPPINGS":
            if isinstance(n.value, ast.Name):
                self.pending.append((n.targets[0].slice, n.value.id))

    def _mapping_dict(self, d: ast.expr) -> None:
        if isinstance(d, ast.Name) and d.id != "NODE_CLASS_MAPPINGS":
            self.merged.append(d.id)
        if not isinstance(d, ast.Dict):
            return
        for k, v in zip(d.keys, d.values):
            if k is None and isinstance(v, ast.Name):
                self.merged.append(v.id)
            elif isinstance(v, ast.Name) and k is not None:
                self.pending.append((k, v.id))

    def resolve_mappings(self) -> None:
        """Keys like `LoraLoaderLM.NAME` name classes of modules parsed later: resolved once all are read.
        Classes generated at import (`type(name, (Base,), {...})` or a factory function returning a class,
        in a loop over a literal list or dict) are made here too."""
        for body, names, where in list(self.bodies):
            self._generated(body, names, {}, {})
        self._decorated()
        for name in dict.fromkeys(self.merged):
            merged = self.constant(name)
            if isinstance(merged, ast.Dict):  # one level: a merged dict's own `**` parts are not followed
                self.pending += [(k, v.id) for k, v in zip(merged.keys, merged.values)
                                 if k is not None and isinstance(v, ast.Name)]
        for k, cls in self.pending:
            key = self.string(k, self.module_constants.get(cls, {}), {})
            if key:
                self.mappings.setdefault(key, cls)
            else:
                self.unresolved.add(cls)

    def _decorated(self) -> None:
        """Classes a pack decorator registers under the name it is given (Lightricks' LTXVideo:
        `@comfy_node(name="LTXVLatentUpsamplerModelLoader")`, whose helper ends in NODE_CLASS_MAPPINGS[name] =
        node_class). Only a name written out: without one the decorator derives it in its own way."""
        for cls_name, cls in list(self.classes.items()):
            for deco in cls.decorator_list:
                if not isinstance(deco, ast.Call) or not isinstance(deco.func, ast.Name):
                    continue
                given = [k.value for k in deco.keywords if k.arg == "name"] or deco.args[:1]
                key = _str(given[0]) if given else None
                fn = self.function(deco.func.id) if key else None
                if key and fn is not None and self._registers(fn):
                    self.mappings.setdefault(key, cls_name)

    def _registers(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, depth: int = 0) -> bool:
        """The function (or a pack function it calls, two deep) assigns into NODE_CLASS_MAPPINGS."""
        for n in ast.walk(fn):
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Subscript) and _name_of(t.value) ==
                                                 "NODE_CLASS_MAPPINGS" for t in n.targets):
                return True
            if depth < 2 and isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id != fn.name:
                called = self.function(n.func.id)
                if called is not None and self._registers(called, depth + 1):
                    return True
        return False

    def _generated(self, body: list[ast.stmt], names: dict[str, ast.expr], env: dict[str, str],
                   local: dict[str, ast.expr]) -> None:
        registrar = _Registrar(self, names, "")
        local = dict(local)
        for stmt in body:
            if isinstance(stmt, ast.For):
                for row in registrar.loop_rows(stmt, env) or []:
                    self._generated(stmt.body, names, {**env, **row}, local)
                continue
            if isinstance(stmt, (ast.If, ast.Try, ast.With)):
                for part in (stmt.body, getattr(stmt, "orelse", []), getattr(stmt, "finalbody", [])):
                    self._generated(part, names, env, local)
                continue
            if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
                continue
            target, value = stmt.targets[0], stmt.value
            if isinstance(target, ast.Name) and isinstance(value, ast.Call):
                local[target.id] = value  # cls = type(...); NODE_CLASS_MAPPINGS[name] = cls
            pairs: list[tuple[ast.expr, ast.expr]] = []
            if isinstance(target, ast.Subscript) and _name_of(target.value) == "NODE_CLASS_MAPPINGS":
                pairs = [(target.slice, value)]
            elif _name_of(target) == "NODE_CLASS_MAPPINGS" and isinstance(value, ast.Dict):
                pairs = [(k, v) for k, v in zip(value.keys, value.values) if k is not None]
            for key_expr, made in pairs:
                if isinstance(made, ast.Name) and isinstance(local.get(made.id), ast.Call):
                    made = local[made.id]
                if isinstance(made, ast.Call):
                    self._generate(key_expr, made, names, env)

    def _generate(self, key_expr: ast.expr, call: ast.Call, names: dict[str, ast.expr], env: dict[str, str]) -> None:
        key = self.string(key_expr, names, env)
        if not key or key in self.mappings:
            return
        gen = f"<generated {key}>"
        if _name_of(call.func) == "type" and len(call.args) == 3 and isinstance(call.args[1], ast.Tuple) \
                and isinstance(call.args[2], ast.Dict) and call.args[1].elts:
            # type("Name", (Base,), {"FOLDER": folder}): the base's INPUT_TYPES, these class attributes
            attrs = {_str(k): self.string(v, names, env) for k, v in zip(call.args[2].keys, call.args[2].values)}
            base = call.args[1].elts[0]
            bound = {"." + k: v for k, v in attrs.items() if k and v is not None}
        elif isinstance(call.func, ast.Name):
            # make_loader("loras"): the class its body defines, with its parameters bound
            fn = self.function(call.func.id)
            inner = next((c for c in fn.body if isinstance(c, ast.ClassDef)), None) if fn else None
            if fn is None or inner is None:
                return
            params = [a.arg for a in fn.args.args]
            given = {**dict(zip(params[len(params) - len(fn.args.defaults):], fn.args.defaults)),
                     **dict(zip(params, call.args)), **{k.arg: k.value for k in call.keywords if k.arg}}
            bound = {p: v for p, v in ((p, self.string(e, names, env)) for p, e in given.items()) if v is not None}
            inner_name = f"{gen} {inner.name}"
            self.classes[inner_name] = inner
            self.module_constants[inner_name] = names
            base = ast.Name(id=inner_name, ctx=ast.Load())
        else:
            return
        self.classes[gen] = ast.ClassDef(name=gen, bases=[base], keywords=[], body=[], decorator_list=[])
        self.module_constants[gen] = names
        self.class_env[gen] = bound
        self.mappings[key] = gen

    # --- folders the pack registers -----------------------------------------------------------------
    def folder_dirs(self) -> dict[str, list[str]]:
        """Folder key -> the directories a pack registers for it under models/ ("xlabs/controlnets"), when
        the source builds them from folder_paths.models_dir with os.path.join and literals: at module
        level, in loops over literal lists and dicts, in pack helpers called with literal arguments
        (inpaint's `_add_folder_path("inpaint", [".pt", ...])`). Registrations it cannot read are kept in
        `unread_registrations`. Run once every module is parsed (names may live in any of them)."""
        out: dict[str, list[str]] = {}
        for body, names, where in self.bodies:
            for key, dirs in _Registrar(self, names, where).run(body, {}, {}, 0):
                for rel in dirs:
                    if rel not in out.setdefault(key, []):
                        out[key].append(rel)
        return {k: v for k, v in out.items() if v}

    def member(self, cls: ast.ClassDef, name: str, method: bool, depth: int = 0) -> ast.AST | None:
        """A method (or a class attribute's value) of `cls` or of its bases among the pack's classes."""
        for st in cls.body:
            if method and isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)) and st.name == name:
                return st
            if not method and isinstance(st, ast.Assign) and any(_name_of(t) == name for t in st.targets):
                return st.value
        for base in cls.bases if depth < 4 else ():
            parent = self.class_named(_attr_name(base) or "")
            found = self.member(parent, name, method, depth + 1) if parent is not None and parent is not cls else None
            if found is not None:
                return found
        return None

    def class_constant(self, cls_name: str, attr: str) -> str | None:
        """A string class attribute, followed through its module's names and small pack helpers
        (rgthree: `NAME = NODE_NAME`, `NODE_NAME = get_name('Power Prompt')`)."""
        cls = self.classes.get(cls_name)
        for stmt in cls.body if cls else ():
            if isinstance(stmt, ast.Assign) and any(_name_of(t) == attr for t in stmt.targets):
                return self.string(stmt.value, self.module_constants.get(cls_name, {}), {})
        return None

    def string(self, e: ast.expr, names: dict[str, ast.expr], env: dict[str, str], depth: int = 0) -> str | None:
        """The value of a string expression made of literals, names, `.format`, f-strings and `+`."""
        if depth > _DEPTH:
            return None
        if _str(e) is not None:
            return _str(e)
        if isinstance(e, ast.Name):
            if e.id in env:
                return env[e.id]
            v = names.get(e.id) or self.constant(e.id)
            return self.string(v, names, {}, depth + 1) if v is not None else None
        if isinstance(e, ast.Attribute) and e.attr == "models_dir":
            return _MODELS  # folder_paths.models_dir: where ComfyUI's models/ is
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id in self.classes:
            return self.class_constant(e.value.id, e.attr)
        if isinstance(e, ast.BinOp) and isinstance(e.op, (ast.Add, ast.Div)):
            a, b = self.string(e.left, names, env, depth + 1), self.string(e.right, names, env, depth + 1)
            if a is None or b is None:
                return None
            return a + b if isinstance(e.op, ast.Add) else a.rstrip("/") + "/" + b.strip("/")  # Path(x) / "y"
        if isinstance(e, ast.JoinedStr):
            parts = [self.string(v.value if isinstance(v, ast.FormattedValue) else v, names, env, depth + 1)
                     for v in e.values]
            joined = _complete(parts)
            return "".join(joined) if joined is not None else None
        if not isinstance(e, ast.Call):
            return None
        read = _complete([self.string(a, names, env, depth + 1) for a in e.args])
        if read is None:
            return None
        args = read
        if _attr_name(e.func) in ("str", "Path", "PurePath", "abspath", "normpath", "realpath") and len(args) == 1:
            return args[0]  # str(Path(folder_paths.models_dir) / "x"), os.path.abspath(...)
        if _attr_name(e.func) == "join" and not isinstance(e.func, ast.Attribute) or \
                isinstance(e.func, ast.Attribute) and e.func.attr == "join" and _attr_name(e.func.value) == "path":
            return "/".join(a.strip("/") if i else a.rstrip("/") for i, a in enumerate(args))
        if isinstance(e.func, ast.Attribute) and e.func.attr == "format":
            fmt = self.string(e.func.value, names, env, depth + 1)
            try:
                return fmt.format(*args) if fmt is not None else None
            except (IndexError, KeyError, ValueError):
                return None
        fn = self.function(_name_of(e.func) or "")
        if fn is None:
            return None
        rets = [n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]
        if len(rets) != 1:
            return None
        params = [a.arg for a in fn.args.args]
        return self.string(rets[0], names, dict(zip(params, args)), depth + 1)


_REGISTRY = "folder_names_and_paths"


class _Registrar:
    """Runs a module's import-time statements symbolically to find the folders it registers. `env` binds
    names to strings (loop variables, a helper's arguments, local paths), `exts` to extension sets."""

    def __init__(self, pack: _Pack, names: dict[str, ast.expr], where: str):
        self.pack, self.names, self.where = pack, names, where

    def run(self, body: list[ast.stmt], env: dict[str, str], exts: dict[str, frozenset[str]],
            depth: int) -> Iterator[tuple[str, list[str]]]:
        env, exts = dict(env), dict(exts)
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(stmt, ast.For):
                rows = self.loop_rows(stmt, env)
                for row in rows if rows is not None else [{}]:
                    yield from self.run(stmt.body, {**env, **row}, exts, depth)
                continue
            if isinstance(stmt, (ast.If, ast.While, ast.With, ast.Try)):
                for part in (stmt.body, getattr(stmt, "orelse", []), *[h.body for h in getattr(stmt, "handlers", [])],
                             getattr(stmt, "finalbody", [])):
                    yield from self.run(part, env, exts, depth)
                continue
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                value = self.pack.string(stmt.value, self.names, env)
                if value is not None:
                    env[stmt.targets[0].id] = value
                found = self.extensions(stmt.value, exts)
                if found:
                    exts[stmt.targets[0].id] = found
            for n in ast.walk(stmt):
                yield from self.node(n, env, exts, depth)

    def loop_rows(self, loop: ast.For, env: dict[str, str]) -> list[dict[str, str]] | None:
        """The loop variables' values for each turn of `for x in [literals]` / `for k, v in {...}.items()`."""
        it = loop.iter
        method = None
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) \
                and it.func.attr in ("items", "keys", "values"):
            method, it = it.func.attr, it.func.value
        if isinstance(it, ast.Name):
            it = self.names.get(it.id) or self.pack.constant(it.id) or it
        if isinstance(it, ast.Dict):
            keys, values = list(it.keys), list(it.values)
            items: list[ast.expr] = [ast.Tuple(elts=[k, v], ctx=ast.Load()) for k, v in zip(keys, values) if k] \
                if method == "items" else [v for v in values] if method == "values" else [k for k in keys if k]
        elif isinstance(it, (ast.List, ast.Tuple, ast.Set)) and method is None:
            items = list(it.elts)
        else:
            return None
        rows = []
        for item in items:
            row: dict[str, str] = {}
            self.bind(loop.target, item, env, row)
            rows.append(row)
        return rows

    def bind(self, target: ast.expr, value: ast.expr, env: dict[str, str], row: dict[str, str]) -> None:
        if isinstance(target, ast.Name):
            s = self.pack.string(value, self.names, env)
            if s is not None:
                row[target.id] = s
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts):
                self.bind(t, v, env, row)

    def extensions(self, e: ast.expr | None, exts: dict[str, frozenset[str]]) -> frozenset[str]:
        if isinstance(e, ast.Name) and e.id in exts:
            return exts[e.id]
        if isinstance(e, ast.Attribute) and e.attr == "supported_pt_extensions":
            return COMFY_PT_EXTENSIONS
        return _extensions(e) if e is not None else frozenset()

    def dirs(self, e: ast.expr, env: dict[str, str], depth: int = 0) -> list[str] | None:
        """Paths under models/ an expression lists (a path, a list of them, a name for either); None when
        any part cannot be read."""
        if depth > _DEPTH:
            return None
        if isinstance(e, ast.Name) and e.id not in env:
            bound = self.names.get(e.id) or self.pack.constant(e.id)
            if isinstance(bound, (ast.List, ast.Tuple)):
                e = bound
        if isinstance(e, (ast.List, ast.Tuple)):
            parts = [self.dirs(x, env, depth + 1) for x in e.elts]
            known = _complete(parts)
            return None if known is None else [d for p in known for d in p]
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
            a, b = self.dirs(e.left, env, depth + 1), self.dirs(e.right, env, depth + 1)
            return a + b if a is not None and b is not None else None
        rel = _under_models(self.pack.string(e, self.names, env))
        return [rel] if rel else None

    def node(self, n: ast.AST, env: dict[str, str], exts: dict[str, frozenset[str]],
             depth: int) -> Iterator[tuple[str, list[str]]]:
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Subscript) \
                and _attr_name(n.targets[0].value) == _REGISTRY:
            # folder_names_and_paths["k"] = ([paths], {exts}) -- in a helper, its key and paths are arguments
            key = self.pack.string(n.targets[0].slice, self.names, env)
            value = n.value if isinstance(n.value, ast.Tuple) and len(n.value.elts) == 2 else None
            found = self.extensions(value.elts[1], exts) if value else frozenset()
            if key and not found and depth:
                found = next(iter(exts.values()), frozenset())  # the helper's extension argument
            if key and found:
                self.pack.extensions.setdefault(key, found)
            dirs = self.dirs(value.elts[0], env) if key and value else None
            if key and dirs is None and depth:  # `(folders, extensions)` built from a local path
                dirs = [d[len(_MODELS) + 1:] for d in env.values() if d.startswith(_MODELS + "/")] or None
            yield from self.found(key, dirs, n)
            return
        if not isinstance(n, ast.Call):
            return
        name = _attr_name(n.func)
        if name == "add_model_folder_path" and len(n.args) >= 2:
            key = self.pack.string(n.args[0], self.names, env)
            yield from self.found(key, self.dirs(n.args[1], env) if key else None, n)
        elif name == "append" and isinstance(n.func, ast.Attribute) and n.args \
                and isinstance(n.func.value, ast.Subscript) and isinstance(n.func.value.value, ast.Subscript) \
                and _attr_name(n.func.value.value.value) == _REGISTRY:
            # folder_names_and_paths["k"][0].append(path)
            key = self.pack.string(n.func.value.value.slice, self.names, env)
            yield from self.found(key, self.dirs(n.args[0], env) if key else None, n)
        elif name == "update" and isinstance(n.func, ast.Attribute) and _attr_name(n.func.value) == _REGISTRY \
                and n.args and isinstance(n.args[0], ast.Dict):
            for k, v in zip(n.args[0].keys, n.args[0].values):
                key = self.pack.string(k, self.names, env) if k is not None else None
                value = v if isinstance(v, ast.Tuple) and len(v.elts) == 2 else None
                if key and value and self.extensions(value.elts[1], exts):
                    self.pack.extensions.setdefault(key, self.extensions(value.elts[1], exts))
                yield from self.found(key, self.dirs(value.elts[0], env) if key and value else None, n)
        results: list[tuple[str, list[str]]] = []
        missed = False
        if isinstance(n.func, ast.Name) and depth < 3 and name != "add_model_folder_path":
            results, missed = self.helper(n, exts, env, depth)
        if len(n.args) >= 2 and name != "add_model_folder_path" and self.pack.string(n.args[0], self.names, env):
            # Impact's add_folder_path_and_extensions("ultralytics_bbox", [path], {".pt"}), a helper's call
            found = next((e for e in (self.extensions(a, exts) for a in n.args[1:]) if e), frozenset())
            key = self.pack.string(n.args[0], self.names, env)  # read above: a name
            if found and key:
                self.pack.extensions.setdefault(key, found)
                dirs = self.dirs(n.args[1], env)
                results += [(key, dirs)] if dirs else []
        if missed and not results:
            yield from self.found(None, None, n)
        yield from results

    def helper(self, call: ast.Call, exts: dict[str, frozenset[str]], env: dict[str, str],
               depth: int) -> tuple[list[tuple[str, list[str]]], bool]:
        """A pack function called at import: its body run with its parameters bound to the call's
        arguments (strings, paths, literal extension lists), defaults included. Returns what it registers,
        and whether it holds a registration that could not be read (said at the call, by the caller)."""
        fn = self.pack.function(call.func.id) if isinstance(call.func, ast.Name) else None  # the caller checked
        if fn is None:
            return [], False
        params = [a.arg for a in fn.args.args]
        defaults = dict(zip(params[len(params) - len(fn.args.defaults):], fn.args.defaults))
        given: dict[str, ast.expr] = {**defaults, **dict(zip(params, call.args)),
                                      **{k.arg: k.value for k in call.keywords if k.arg}}
        inner_env: dict[str, str] = {}
        inner_exts: dict[str, frozenset[str]] = {}
        for p, e in given.items():
            value = self.pack.string(e, self.names, env)
            if value is not None:
                inner_env[p] = value
            found = self.extensions(e, exts)
            if found:
                inner_exts[p] = found
        if not inner_env and not inner_exts:
            return [], False
        before = len(self.pack.unread_registrations)
        results = list(self.run(fn.body, inner_env, inner_exts, depth + 1))
        missed = len(self.pack.unread_registrations) > before
        del self.pack.unread_registrations[before:]  # said once, at the call that made them
        return results, missed

    def found(self, key: str | None, dirs: list[str] | None, n: ast.AST | None) -> Iterator[tuple[str, list[str]]]:
        if key and dirs:
            yield key, dirs
        elif n is not None:
            line = getattr(n, "lineno", 0)
            self.pack.unread_registrations.append(f"{self.where}:{line}: {ast.unparse(n)[:160]}")


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run at import, through if/try/for/with blocks but not into functions and classes
    (where NODE_CLASS_MAPPINGS and folder registrations are)."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(stmt, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
            inner = list(getattr(stmt, "body", [])) + list(getattr(stmt, "orelse", [])) \
                + [s for h in getattr(stmt, "handlers", []) for s in h.body] + list(getattr(stmt, "finalbody", []))
            yield from _module_level(inner)
        else:
            yield stmt


def _name_of(e: ast.AST) -> str | None:
    return e.id if isinstance(e, ast.Name) else None


def _attr_name(e: ast.AST) -> str | None:
    return e.attr if isinstance(e, ast.Attribute) else e.id if isinstance(e, ast.Name) else None


def _value_key(e: ast.AST) -> str | None:
    """The name _Scope.values() knows an expression by: `x` for a name, `.x` for a class member read
    through `s.x` / `cls.x` / `self.x`, else the attribute's own name (`IO.ANY` -> `ANY`)."""
    if isinstance(e, ast.Attribute) and _name_of(e.value) in ("s", "cls", "self"):
        return "." + e.attr
    return _attr_name(e)


_MAX_LOOP = 256  # inputs loops in one INPUT_TYPES add, all together: packs add up to 50 of a kind (x3 or x4)


def _int(e: ast.expr, scope: _Scope, depth: int = 0) -> int | None:
    if isinstance(e, ast.Constant) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return e.value
    if isinstance(e, ast.Name) and depth < 3:
        values = scope.values(e.id)
        return _int(values[0], scope, depth + 1) if len(values) == 1 else None
    if isinstance(e, ast.BinOp) and isinstance(e.op, (ast.Add, ast.Sub)) and depth < 3:
        a, b = _int(e.left, scope, depth + 1), _int(e.right, scope, depth + 1)
        if a is not None and b is not None:
            return a + b if isinstance(e.op, ast.Add) else a - b
    return None


def _range_of(e: ast.expr, scope: _Scope) -> range:
    """`range(a, b)` with bounds the source writes out (literals, constants, `X + 1`); else empty."""
    if not (isinstance(e, ast.Call) and _name_of(e.func) == "range" and 1 <= len(e.args) <= 2 and not e.keywords):
        return range(0)
    bounds = [b for b in (_int(a, scope) for a in e.args) if b is not None]
    if len(bounds) != len(e.args):
        return range(0)
    start, stop = (0, bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
    return range(start, min(stop, start + _MAX_LOOP))


def _formatted(e: ast.expr, env: dict[str, str]) -> str | None:
    """A string literal or an f-string over loop variables (`f"lora_name_{i}"`)."""
    if not isinstance(e, ast.JoinedStr):
        return _str(e)
    parts: list[str] = []
    for v in e.values:
        if isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id in env \
                and v.format_spec is None and v.conversion == -1:
            parts.append(env[v.value.id])
        elif (text := _str(v)) is not None:
            parts.append(text)
        else:
            return None
    return "".join(parts)


def _str(e: ast.AST | None) -> str | None:
    return e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None


def _complete(parts: list[_T | None]) -> list[_T] | None:
    """The parts when every one was read, else None."""
    known = [p for p in parts if p is not None]
    return known if len(known) == len(parts) else None


def _extensions(e: ast.AST) -> frozenset[str]:
    if isinstance(e, ast.Call) and _attr_name(e.func) == "set" and e.args:
        e = e.args[0]
    if isinstance(e, (ast.Set, ast.List, ast.Tuple)):
        exts = _complete([_str(x) for x in e.elts])
        if exts and all(x and x.startswith(".") for x in exts):
            return frozenset(x.lower() for x in exts)
    return frozenset()


class _Scope:
    """Names assigned inside one function (and its class), to follow `bboxs = [...]` back to a listing."""

    def __init__(self, pack: _Pack, fn: ast.AST | None, cls: ast.ClassDef | None, owner: ast.ClassDef | None = None):
        self.pack, self.cls, self.owner = pack, cls, owner
        # A generated class (static_folders._Pack._generate): names its factory bound, attributes type() set.
        self.env = pack.class_env.get(owner.name, {}) if owner is not None else {}
        self.assigned: dict[str, list[ast.expr]] = {}
        for n in ast.walk(fn) if fn is not None else ():
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        self.assigned.setdefault(t.id, []).append(n.value)
                    elif isinstance(t, ast.Attribute) and _name_of(t.value) in ("s", "cls", "self"):
                        self.assigned.setdefault("." + t.attr, []).append(n.value)  # s.model_paths = ...
            elif isinstance(n, (ast.AugAssign, ast.AnnAssign)) and isinstance(n.target, ast.Name) and n.value:
                self.assigned.setdefault(n.target.id, []).append(n.value)
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("append", "extend") \
                    and isinstance(n.func.value, ast.Name) and n.args:
                self.assigned.setdefault(n.func.value.id, []).append(n.args[0])

    def values(self, name: str) -> list[ast.expr]:
        if name in self.env:
            return [ast.Constant(self.env[name])]
        if name in self.assigned:
            return self.assigned[name]
        if name.startswith(".") and self.cls is not None:  # s.FOLDER: a class attribute, maybe a base's
            v = self.pack.member(self.owner or self.cls, name[1:], method=False)
            return [v] if isinstance(v, ast.expr) else []
        own = self.pack.module_constants.get(self.cls.name, {}) if self.cls is not None else {}
        v = own.get(name) or self.pack.constant(name)
        return [v] if v is not None else []

    def folder_name(self, e: ast.expr, depth: int = 0) -> str | None:
        s = _str(e)
        if s is not None or depth > _DEPTH:
            return s
        if isinstance(e, ast.Name):
            return next((f for f in (self.folder_name(v, depth + 1) for v in self.values(e.id)) if f), None)
        if isinstance(e, ast.Attribute) and _name_of(e.value) in ("s", "cls", "self"):  # s.FOLDER
            return next((f for f in (self.folder_name(v, depth + 1) for v in self.values("." + e.attr)) if f), None)
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name):  # Folders.ANIMATEDIFF_MODELS
            return self.pack.class_constant(e.value.id, e.attr)
        return None

    def method(self, e: ast.expr) -> ast.AST | None:
        """`s.get_filename_list()` / `cls.x()` -> that method, from the class or a base class (GGUF's
        DualCLIPLoaderGGUF inherits it); `helper()` -> the pack's function."""
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id in ("s", "cls", "self") \
                and self.cls is not None:
            return self.pack.member(self.owner or self.cls, e.attr, method=True)
        name = _attr_name(e)
        return self.pack.function(name) if name else None


def _listings(e: ast.expr, scope: _Scope, depth: int = 0, prefix: str = "") -> list[tuple[str, str]]:
    """(prefix, folder) of every folder listing an options expression is built from, in order."""
    if depth > _DEPTH or e is None:
        return []
    if isinstance(e, ast.Call):
        name = _attr_name(e.func)
        if name in _FOLDER_CALLS and e.args:
            folder = scope.folder_name(e.args[0])
            return [(prefix, folder)] if folder else []
        if name in _LISTING_CALLS and e.args:  # os.listdir(os.path.join(folder_paths.models_dir, "luts"))
            folder = _own_models_folder(e.args[0], scope)
            return [(prefix, folder)] if folder else []
        out: list[tuple[str, str]] = []
        for a in list(e.args) + [k.value for k in e.keywords]:
            out += _listings(a, scope, depth + 1, prefix)
        target = scope.method(e.func) if not out else None
        if target is not None:
            inner = _Scope(scope.pack, target, scope.cls)
            given = _bound_folders(target, e, scope)
            inner.env = {**inner.env, **given}
            for ret in (n.value for n in ast.walk(target) if isinstance(n, ast.Return) and n.value is not None):
                out += _listings(ret, inner, depth + 1, prefix)
            if not out and given:
                # A helper that lists the folder it is given and returns something built from the files
                # (BrushNet's get_files_with_extension("inpaint") -> {file: dir}).
                for n in ast.walk(target):
                    arg = _name_of(n.args[0]) if isinstance(n, ast.Call) and n.args \
                        and _attr_name(n.func) in _FOLDER_CALLS else None
                    if arg is not None and arg in given:
                        out.append((prefix, given[arg]))
        return out
    if isinstance(e, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
        elt = e.elt
        if isinstance(elt, ast.BinOp) and isinstance(elt.op, ast.Add) and (head := _str(elt.left)):
            prefix += head
        elif isinstance(elt, ast.JoinedStr) and elt.values and (head := _str(elt.values[0])):
            prefix += head
        return [x for g in e.generators for x in _listings(g.iter, scope, depth + 1, prefix)]
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
        return _listings(e.left, scope, depth + 1, prefix) + _listings(e.right, scope, depth + 1, prefix)
    if isinstance(e, (ast.List, ast.Tuple, ast.Set)):
        return [x for el in e.elts for x in _listings(el.value if isinstance(el, ast.Starred) else el,
                                                         scope, depth + 1, prefix)]
    if isinstance(e, ast.Starred):
        return _listings(e.value, scope, depth + 1, prefix)
    if isinstance(e, ast.Name):
        return [x for v in scope.values(e.id) for x in _listings(v, scope, depth + 1, prefix)]
    if isinstance(e, ast.Attribute) and _name_of(e.value) in ("s", "cls", "self"):
        return [x for v in scope.values("." + e.attr) for x in _listings(v, scope, depth + 1, prefix)]
    if isinstance(e, ast.IfExp):
        return _listings(e.body, scope, depth + 1, prefix) + _listings(e.orelse, scope, depth + 1, prefix)
    return []


def _own_models_folder(e: ast.expr, scope: _Scope) -> str | None:
    """The folder a pack lists itself under ComfyUI's models/ (`os.listdir(os.path.join(folder_paths.models_dir,
    "luts"))`): its key when the path is exactly models/<key>. A deeper subfolder (`models/tensorrt/rife`) lists
    names the node joins to that subfolder, which no folder key says; a legacy directory (`models/clip`) is only
    the second place of its key (`text_encoders`), where a download would not go: both left unknown."""
    names = {k: v[0] for k, v in scope.assigned.items() if len(v) == 1}
    rel = _under_models(scope.pack.string(e, names, scope.env))
    return rel if rel and "/" not in rel and rel != "." and map_legacy(rel) == rel else None


def _under_models(path: str | None) -> str | None:
    """The part of an evaluated path under ComfyUI's models/ (`_MODELS/xlabs/controlnets` -> `xlabs/controlnets`),
    or None: not under it, or climbing out of it."""
    if path is None or not path.startswith(_MODELS + "/"):
        return None
    rel = path[len(_MODELS) + 1:].replace("\\", "/").strip("/")
    return rel if rel and ".." not in rel.split("/") else None


def _bound_folders(fn: ast.AST, call: ast.Call, scope: _Scope) -> dict[str, str]:
    """Parameters of a pack helper the call gives a folder name (`helper("inpaint")`), by name."""
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return {}
    params = [a.arg for a in fn.args.args]
    if params and params[0] in ("self", "cls", "s") and isinstance(call.func, ast.Attribute):
        params = params[1:]
    given = {**dict(zip(params, call.args)), **{k.arg: k.value for k in call.keywords if k.arg}}
    return {p: f for p, v in given.items() if (f := scope.folder_name(v))}


def _literal_options(e: ast.expr | None, scope: _Scope, depth: int = 0) -> list[str] | None:
    """Options written out in the source (a list, a dict's keys, sorted(...) of them), else None."""
    if e is None or depth > _DEPTH:
        return None
    if isinstance(e, (ast.List, ast.Tuple, ast.Set)):
        return _complete([_str(x) for x in e.elts])
    if isinstance(e, ast.Dict):
        return _complete([_str(k) for k in e.keys])
    if isinstance(e, ast.Name) or (isinstance(e, ast.Attribute) and _name_of(e.value) in ("s", "cls", "self")):
        values = scope.values(_value_key(e) or "")  # a local, module constant or class member (cls.modes)
        return _literal_options(values[0], scope, depth + 1) if len(values) == 1 else None
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
        a, b = _literal_options(e.left, scope, depth + 1), _literal_options(e.right, scope, depth + 1)
        return a + b if a is not None and b is not None else None
    if isinstance(e, ast.Call) and e.args:
        if _name_of(e.func) in ("sorted", "list", "tuple", "set"):
            return _literal_options(e.args[0], scope, depth + 1)
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr == "keys" and not e.args:
        return _literal_options(e.func.value, scope, depth + 1)
    return None


def _built_entry(call: ast.Call, scope: _Scope) -> ast.Tuple | None:
    """The tuple an entry-building helper returns with the call's arguments put in (controlnet_aux's
    `INPUT.COMBO([...], default=...)` -> `([...], dict(...))`, `INPUT.RESOLUTION()` -> `("INT", ...)`)."""
    func = call.func
    if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
        return None
    owner = scope.pack.class_named(func.value.id)
    fn = next((m for m in owner.body if isinstance(m, ast.FunctionDef) and m.name == func.attr),
              None) if owner else None
    if fn is None:
        return None
    rets = [n.value for n in ast.walk(fn) if isinstance(n, ast.Return)]
    if len(rets) != 1 or not isinstance(rets[0], ast.Tuple) or not rets[0].elts:
        return None
    first = rets[0].elts[0]
    params = [a.arg for a in fn.args.args]
    if isinstance(first, ast.Name) and first.id in params:
        i = params.index(first.id)
        bound = call.args[i] if i < len(call.args) else next(
            (k.value for k in call.keywords if k.arg == first.id), None)
        if bound is None:
            return None
        first = bound
    return ast.Tuple(elts=[first, *rets[0].elts[1:]], ctx=ast.Load())


def _entry(e: ast.expr, scope: _Scope) -> tuple[list[Any], list[tuple[str, str]], bool] | None:
    """An input's (definition entry, listings, options all literal): `[kind or options, {config}]` as
    /object_info has it."""
    if isinstance(e, ast.Name):
        e = next((v for v in scope.values(e.id) if isinstance(v, (ast.Tuple, ast.List))), e)
    if isinstance(e, ast.Call):
        e = _built_entry(e, scope) or e
    if not isinstance(e, (ast.Tuple, ast.List)) or not e.elts:
        return None
    first = e.elts[0]
    config: dict[str, Any] = {}
    if len(e.elts) > 1 and isinstance(e.elts[1], ast.Dict):
        for k, v in zip(e.elts[1].keys, e.elts[1].values):
            key = _str(k)
            if key in ("forceInput", "control_after_generate") and isinstance(v, ast.Constant):
                config[key] = v.value
    kind = _str(first)
    key = _value_key(first) if isinstance(first, (ast.Name, ast.Attribute)) else None
    if kind is None and key is not None:
        kind = next((s for s in map(_str, scope.values(key)) if s), None)
    if kind is not None:
        return [kind, config], [], False
    if key is not None and not scope.values(key):
        return ["*", config], [], False  # a custom type constant (any_type, IO.ANY): a link, not a widget
    literal = _literal_options(first, scope)
    if literal is not None:
        return [literal, config], [], True
    return [[], config], _listings(first, scope), False


def _section_dicts(e: ast.expr | None, scope: _Scope, depth: int = 0) -> Iterator[ast.Dict]:
    if depth > 3 or e is None:
        return
    if isinstance(e, ast.Dict):
        yield e
    elif isinstance(e, ast.Name):
        for v in scope.values(e.id):
            yield from _section_dicts(v, scope, depth + 1)


class _NodeReader:
    def __init__(self, pack: _Pack):
        self.pack = pack

    def v1(self, cls: ast.ClassDef, depth: int = 0, owner: ast.ClassDef | None = None) -> dict[str, Any] | None:
        fn = next((m for m in cls.body if isinstance(m, ast.FunctionDef) and m.name == "INPUT_TYPES"), None)
        if fn is None:
            for base in cls.bases:
                parent = self.pack.class_named(_attr_name(base) or "") if isinstance(base, ast.Name) \
                    else self.pack.classes.get(_attr_name(base) or "")
                if parent is not None and parent is not cls and depth < 4:
                    return self.v1(parent, depth + 1, owner or cls)
            return None
        scope = _Scope(self.pack, fn, cls, owner or cls)
        inputs: dict[str, dict[str, list[Any]]] = {}
        listings: dict[str, list[tuple[str, str]]] = {}
        fixed: set[str] = set()
        for ret in (n.value for n in ast.walk(fn) if isinstance(n, ast.Return)):
            for top in _section_dicts(ret, scope):
                for k, v in zip(top.keys, top.values):
                    section = _str(k)
                    if section not in ("required", "optional") or section in inputs:
                        continue
                    inputs[section] = {}
                    for d in _section_dicts(v, scope):
                        for name_node, entry_node in zip(d.keys, d.values):
                            name = _str(name_node) or (scope.env.get(name_node.id)
                                                       if isinstance(name_node, ast.Name) else None)
                            entry = _entry(entry_node, scope) if name else None
                            if entry is None or not name:
                                continue
                            inputs[section][name] = entry[0]
                            if entry[1]:
                                listings[name] = entry[1]
                            if entry[2]:
                                fixed.add(name)
            if not inputs and isinstance(ret, ast.Call) and ret.keywords \
                    and all(k.arg and isinstance(k.value, ast.Call) for k in ret.keywords):
                # Inputs passed as keywords to a pack helper that builds the dict (controlnet_aux's
                # define_preprocessor_inputs(ckpt_name=INPUT.COMBO([...]), ...)): widgets in that order.
                inputs["optional"] = {}
                for kw in ret.keywords:
                    entry = _entry(kw.value, scope)
                    if entry is not None and kw.arg:  # every keyword has a name (checked above)
                        inputs["optional"][kw.arg] = entry[0]
                        if entry[1]:
                            listings[kw.arg] = entry[1]
                        if entry[2]:
                            fixed.add(kw.arg)
            if inputs and isinstance(ret, ast.Name):
                self._assigned_later(fn, ret.id, scope, inputs, listings, fixed)
            if inputs:
                break
        return self._definition(inputs, listings, fixed, self._outputs(owner or cls)) if inputs else None

    def _assigned_later(self, fn: ast.FunctionDef, var: str, scope: _Scope, inputs: dict[str, dict[str, list[Any]]],
                        listings: dict[str, list[tuple[str, str]]], fixed: set[str]) -> None:
        """Inputs added to the returned dict after it was written (`inputs["required"][f"lora_name_{i}"] =
        (loras,)` in a `for i in range(1, 51)`, `inputs["optional"] = {...}`), in the order they run."""
        added = [0]  # statements run, all loops together: bounded whatever ranges the source writes

        def add(section: str | None, name: str | None, node: ast.expr) -> None:
            added[0] += 1
            entry = _entry(node, scope) if section in ("required", "optional") and name else None
            if entry is None or section is None or name is None:
                return
            inputs.setdefault(section, {})[name] = entry[0]
            if entry[1]:
                listings[name] = entry[1]
            if entry[2]:
                fixed.add(name)

        def run(body: list[ast.stmt], env: dict[str, str], depth: int) -> None:
            for st in body:
                if added[0] >= _MAX_LOOP:
                    return
                if isinstance(st, ast.For) and isinstance(st.target, ast.Name) and depth < 2:
                    for i in _range_of(st.iter, scope):
                        if added[0] >= _MAX_LOOP:
                            break
                        run(st.body, {**env, st.target.id: str(i)}, depth + 1)
                if not isinstance(st, ast.Assign) or len(st.targets) != 1 \
                        or not isinstance(target := st.targets[0], ast.Subscript):
                    continue
                if isinstance(target.value, ast.Subscript) and _name_of(target.value.value) == var:
                    add(_str(target.value.slice), _formatted(target.slice, env), st.value)
                elif _name_of(target.value) == var and isinstance(st.value, ast.Dict):
                    for k, v in zip(st.value.keys, st.value.values):
                        add(_str(target.slice), _str(k), v)

        run(fn.body, {}, 0)

    def _outputs(self, cls: ast.ClassDef) -> list[str] | None:
        """RETURN_TYPES written out as strings (the scan asks whether a node makes CONDITIONING)."""
        value = self.pack.member(cls, "RETURN_TYPES", method=False)
        if not isinstance(value, (ast.Tuple, ast.List)):
            return None
        return _complete([_str(x) for x in value.elts])

    def v3(self, cls: ast.ClassDef) -> tuple[str, dict[str, Any]] | None:
        fn = next((m for m in cls.body if isinstance(m, ast.FunctionDef) and m.name == "define_schema"), None)
        schema = next((n for n in ast.walk(fn) if isinstance(n, ast.Call) and _attr_name(n.func) == "Schema"),
                      None) if fn else None
        if schema is None:
            return None
        kw = {k.arg: k.value for k in schema.keywords if k.arg}
        node_id = _str(kw.get("node_id"))
        declared = kw.get("inputs")
        if not node_id or not isinstance(declared, ast.List):
            return None
        scope = _Scope(self.pack, fn, cls)
        inputs: dict[str, dict[str, list[Any]]] = {"required": {}, "optional": {}}
        listings: dict[str, list[tuple[str, str]]] = {}
        for call in declared.elts:
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.args
                    and isinstance(call.func.value, ast.Attribute)):
                continue
            name, kind = _str(call.args[0]), _V3_KINDS.get(call.func.value.attr, "*")
            if not name:
                continue
            optional = any(k.arg == "optional" and isinstance(k.value, ast.Constant) and k.value.value
                           for k in call.keywords)
            found = [x for a in call.args[1:] + [k.value for k in call.keywords if k.arg == "options"]
                     for x in _listings(a, scope)]
            inputs["optional" if optional else "required"][name] = [[] if kind == "COMBO" else kind, {}]
            if found:
                listings[name] = found
        return node_id, self._definition(inputs, listings)

    def _definition(self, inputs: dict[str, dict[str, list[Any]]], listings: dict[str, list[tuple[str, str]]],
                    fixed: AbstractSet[str] = frozenset(), outputs: list[str] | None = None) -> dict[str, Any]:
        ext = self.pack.extensions
        folder_map = FolderMap("static", {
            name: tuple(dict.fromkeys(Listing(map_legacy(f), p, ext.get(f, frozenset())) for p, f in found))
            for name, found in listings.items()}, fixed=frozenset(fixed))
        node_def: dict[str, Any] = {"input": inputs, "input_order": {s: list(v) for s, v in inputs.items()}}
        if outputs is not None:
            node_def["output"] = outputs
        return with_folder_map(node_def, folder_map)


def _py_files(pack_dir: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(pack_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for f in sorted(filenames):
            if f.endswith(".py"):
                yield Path(dirpath) / f


@dataclass(eq=False, repr=False)
class Reading(Record):
    """What the packs' sources say: node definitions, and the folders they register under models/."""

    defs: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, list[str]] = field(default_factory=dict)  # key -> dirs relative to models/
    unread: list[str] = field(default_factory=list)  # folder registrations it could not follow, "pack/file:line: …"

    def add(self, other: "Reading", pack: str = "") -> None:
        for k, v in other.defs.items():
            self.defs.setdefault(k, v)
        for k, dirs in other.folders.items():
            self.folders.setdefault(k, dirs)
        self.unread += [f"{pack}/{u}" if pack else u for u in other.unread]


def read_pack(pack_dir: Path) -> dict[str, dict[str, Any]]:
    """Node type -> definition (input order and FolderMap) for one pack folder."""
    return _read_pack(pack_dir).defs


def read_source(path: Path, root: str, limit: int = _MAX_FILE_BYTES) -> str | None:
    """A pack's source file as text, or None: only a regular file, at most `limit` bytes, whose real path
    stays inside the pack's real folder `root` (git stores symlinks: one to /dev/zero, a FIFO or a file
    elsewhere is never read). Opened without following a last link and without blocking on a FIFO."""
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = f.read(limit + 1)
    return data.decode("utf-8", errors="replace") if len(data) <= limit else None


def _read_pack(pack_dir: Path) -> Reading:
    pack = _Pack()
    root = os.path.realpath(pack_dir)
    for path in _py_files(pack_dir):
        try:
            text = read_source(path, root)
            if text is None:
                log.debug("skipped %s: not a regular file of the pack under %d bytes", path, _MAX_FILE_BYTES)
                continue
            if not any(m in text for m in _MENTIONS):
                pack.unread[path] = text  # no node here: parsed only if a helper or constant is looked up in it
                continue
            pack.add(parse(text, str(path)), where=str(path.relative_to(pack_dir)))
        except (OSError, SyntaxError, ValueError, RecursionError, SystemError) as e:
            log.debug("skipped %s: %s", path, e)
    pack.resolve_mappings()
    folders = pack.folder_dirs()  # first: it learns the extensions the node definitions' listings carry
    reader = _NodeReader(pack)
    defs: dict[str, dict[str, Any]] = {}
    for name, cls in list(pack.classes.items()):
        v3 = reader.v3(cls)
        if v3:
            defs.setdefault(v3[0], v3[1])
            continue
        # Mapped classes under their keys; a pack with no mapping this reader can follow: by class name.
        types = [t for t, c in pack.mappings.items() if c == name] \
            or ([name] if not pack.mappings or name in pack.unresolved else [])
        definition = reader.v1(cls) if types else None
        if definition:
            for t in types:
                defs.setdefault(t, definition)
    return Reading(defs, folders, list(dict.fromkeys(pack.unread_registrations)))


def _signature(pack_dir: Path) -> str:
    """Changes when any of the pack's Python files does (path, size, modification time)."""
    import hashlib  # ~2.5 ms (OpenSSL) paid only when a ComfyUI has packs, not by every command's start

    h = hashlib.sha1(_CACHE_VERSION.encode())
    for path in _py_files(pack_dir):
        try:
            st = path.stat()
        except OSError:
            continue
        h.update(f"{path.relative_to(pack_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def read_custom_nodes(base: Path, cache_file: Path | None = None) -> Reading:
    """Every pack in a custom_nodes folder read statically (disabled packs and this one left out). With
    `cache_file` (in the state dir), a pack whose files did not change is not parsed again: a CLI run per
    workflow would otherwise read every pack each time."""
    out = Reading()
    if not base.is_dir():
        return out
    cached = read_json(cache_file, {}) if cache_file else {}
    cached = cached if isinstance(cached, dict) else {}
    fresh: dict[str, Any] = {}
    here = Path(__file__).resolve().parents[2]
    for d in sorted(base.iterdir()):
        try:
            if not d.is_dir() or d.name.endswith(".disabled") or d.name.startswith(".") or d.resolve() == here:
                continue
        except OSError:
            continue
        sig = _signature(d) if cache_file else ""
        entry = cached.get(str(d))
        if isinstance(entry, dict) and entry.get("sig") == sig and isinstance(entry.get("defs"), dict) \
                and isinstance(entry.get("folders"), dict) and isinstance(entry.get("unread"), list):
            pack = Reading(entry["defs"], entry["folders"], [u for u in entry["unread"] if isinstance(u, str)])
        else:
            pack = _read_pack(d)
        fresh[str(d)] = {"sig": sig, "defs": pack.defs, "folders": pack.folders, "unread": pack.unread}
        out.add(pack, d.name)
    if cache_file and fresh != cached:
        try:
            write_json_atomic(cache_file, fresh)
        except OSError as e:
            log.info("could not keep the packs' reading in %s: %s", cache_file, e)
    return out


_READ: dict[Path, Reading] = {}  # one reading per custom_nodes folder and process (the CLI)


def reading(custom_nodes: Path, cache_file: Path | None = None) -> Reading:
    if custom_nodes not in _READ:
        _READ[custom_nodes] = read_custom_nodes(custom_nodes, cache_file)
    return _READ[custom_nodes]


def add_pack_folders(host: Any, comfyui_root: Path, cache_file: Path | None = None) -> None:
    """Register on a ComfyUI folder read from disk the model folders its packs register (x-flux's
    xlabs_controlnets -> models/xlabs/controlnets), so references found in them have a place to go
    before ComfyUI ever ran the pack; keys already known keep their paths."""
    known = host.folders()
    packs = reading(comfyui_root / "custom_nodes", cache_file)
    if packs.unread:
        # Said, not guessed: a reference to such a folder falls back to the keyword rules.
        log.info("Folder registrations of node packs not followed (their folders come from keywords): %s",
                 "; ".join(packs.unread[:20]) + (f" … +{len(packs.unread) - 20}" if len(packs.unread) > 20 else ""))
        action("pack_folders_unread", registrations=packs.unread[:100])
    for key, dirs in packs.folders.items():
        if key not in known:
            for d in dirs:
                host.add_path(key, str(comfyui_root / "models" / d))


class WithPackDefs(Mapping[str, Any]):
    """/object_info definitions (maybe none) completed by what the packs' sources say, read on first use:
    a definition without a folder map gets the one read statically, one whose map is not complete (a running
    ComfyUI's, --server) gets the inputs it lacks; a node type /object_info lacks gets
    its read definition (input order included). Only `get`/`[]` are cheap: iterating reads every pack."""

    def __init__(self, object_info: dict[str, Any] | None, custom_nodes: Path):
        self._info = object_info or {}
        self._custom_nodes = custom_nodes

    def _read(self) -> dict[str, dict[str, Any]]:
        return reading(self._custom_nodes).defs

    def __getitem__(self, node_type: str) -> Any:
        d = self._info.get(node_type)
        given = folder_map_of(d) if isinstance(d, dict) else None
        if given is not None and given.complete:
            return d
        read = self._read().get(node_type)
        if d is None:
            if read is None:
                raise KeyError(node_type)
            return read
        if given is not None:
            # A server's map that did not list every folder asked (a pack that lists a folder ComfyUI does
            # not register itself): the sources complete it, as inside ComfyUI.
            return with_folder_map(d, given.with_static(folder_map_of(read))) if read else d
        return with_folder_map(d, folder_map_of(read)) if read else d

    def __iter__(self) -> Iterator[str]:
        return iter(set(self._info) | set(self._read()))

    def __len__(self) -> int:
        return len(set(self._info) | set(self._read()))

    def __bool__(self) -> bool:
        return True


class PackSources:
    """Inside ComfyUI, what the packs' sources say, read on demand and kept for the process: the pack of a
    live node class (for inputs the probe cannot see), and the packs that did not load (a pack whose import
    failed still says which folder each of its node types reads). Keyed by the pack's real folder, and
    read again when one of its Python files changes."""

    def __init__(self, custom_nodes: list[str]):
        self.custom_nodes = [Path(p) for p in custom_nodes]
        self._packs: dict[str, tuple[str, Reading]] = {}
        self._lock = threading.Lock()

    def pack(self, root: str) -> Reading:
        sig = _signature(Path(root))
        with self._lock:
            hit = self._packs.get(root)
        if hit is not None and hit[0] == sig:
            return hit[1]
        found = _read_pack(Path(root))
        with self._lock:
            self._packs[root] = (sig, found)
        return found

    def pack_dirs(self) -> list[str]:
        """Every pack folder (real path) in the custom_nodes folders, this pack and disabled ones left out."""
        here = os.path.realpath(Path(__file__).resolve().parents[2])
        out: list[str] = []
        for base in self.custom_nodes:
            try:
                entries = sorted(base.iterdir())
            except OSError:
                continue
            for d in entries:
                try:
                    if d.is_dir() and not d.name.endswith(".disabled") and not d.name.startswith(".") \
                            and os.path.realpath(d) != here and d.name != "__pycache__":
                        out.append(os.path.realpath(d))
                except OSError:
                    continue
        return out

    def not_loaded(self, loaded_roots: set[str]) -> dict[str, Reading]:
        """Pack folder -> its reading, for the packs none of whose node classes ComfyUI has."""
        return {root: self.pack(root) for root in self.pack_dirs() if root not in loaded_roots}

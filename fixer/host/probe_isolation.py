"""Whatever a node's INPUT_TYPES() changes while it is probed is put back (folder_probe.py).

The probe hands a node marker names instead of file names. Packs keep what they were handed: in a module
global, a `functools.lru_cache`, an attribute of the class or of a base class, a dict in a helper module,
at the first call only. A marker kept there would reach /object_info and prompt validation. So around the
probed call the pack's state is saved and, after it, restored:

- every module of the pack (all modules whose file lies in the pack's folder: packs import their helpers
  under their own package or, after `sys.path.append`, as top-level modules) and every class along the
  node's MRO: names added are removed, names rebound get their old object back;
- the lists, dicts and sets those names held, nested ones and the attributes of the pack's own objects
  included (bounded): their old contents are put back in place;
- `lru_cache`d functions among them that gained an entry are cleared (they fill again with real listings);
- then a bounded sweep through what is left reachable from there (nested containers, instances of the
  pack's classes) removes any marker still held in a mutable container.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..record import Record

_SWEEP_LIMIT = 50_000  # objects visited by the sweep: bounded, whatever a pack keeps in its globals
_COPY_LIMIT = 5_000  # objects whose contents are copied before the call (deeper ones are swept instead)


def pack_root(cls: type) -> str | None:
    """The folder of the pack `cls` comes from: the folder right under a `custom_nodes` folder; None for a
    class from anywhere else (ComfyUI's own nodes)."""
    here = _module_dir(cls)
    probe = here
    while probe is not None:
        parent = os.path.dirname(probe)
        if os.path.basename(parent) == "custom_nodes":
            return probe
        if parent == probe:
            return None
        probe = parent
    return None


def _module_dir(cls: type) -> str | None:
    module = sys.modules.get(getattr(cls, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.abspath(path)) if isinstance(path, str) else None


def pack_modules(cls: type) -> list[ModuleType]:
    """The node's module and every loaded module whose file is inside its pack's folder (only its own
    module for a class outside any custom_nodes folder: ComfyUI's own nodes list no pack's folder)."""
    root = pack_root(cls)
    own = sys.modules.get(getattr(cls, "__module__", "") or "")
    found: list[ModuleType] = [own] if isinstance(own, ModuleType) else []
    if root is None:
        return found
    prefix = root.rstrip(os.sep) + os.sep
    found += [m for path, m in _module_files() if path.startswith(prefix) and m not in found]
    return found


_FILES: list[tuple[Any, list[tuple[str, ModuleType]]]] = []  # (state of sys.modules, (file, module)) last seen


def _module_files() -> list[tuple[str, ModuleType]]:
    """(absolute file, module) of every loaded module, recomputed only when sys.modules changed: its size,
    or its last entry (modules removed and imported again keep the size, not the last module object)."""
    last = next(reversed(sys.modules.items()), None)
    state = (len(sys.modules), last[0] if last else None, id(last[1]) if last else None)
    if _FILES and _FILES[0][0] == state:
        return _FILES[0][1]
    files = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) if isinstance(module, ModuleType) else None
        if isinstance(path, str):
            files.append((os.path.abspath(path), module))
    _FILES[:] = [(state, files)]
    return files


def _unwrap(value: Any) -> Any:
    return value.__func__ if isinstance(value, (staticmethod, classmethod)) else value


def _is_lru(value: Any) -> bool:
    return callable(getattr(value, "cache_info", None)) and callable(getattr(value, "cache_clear", None))


@dataclass(eq=False, repr=False)
class Snapshot(Record):
    """The pack's state before the probed call."""

    modules: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (live dict, copy)
    classes: list[tuple[type, dict[str, Any]]] = field(default_factory=list)
    contents: list[tuple[Any, Any]] = field(default_factory=list)  # (container, copy of its items)
    caches: list[tuple[Any, Any]] = field(default_factory=list)  # (lru_cache wrapper, its cache_info())
    roots: list[Any] = field(default_factory=list)  # where the sweep starts
    own: frozenset[str] = frozenset()  # the pack's module names: instances of their classes are swept

    @classmethod
    def take(cls, node_class: type) -> Snapshot:
        snap = cls()
        seen: set[int] = set()
        modules = pack_modules(node_class)
        own = {m.__name__ for m in modules}
        snap.own = frozenset(own)
        for module in modules:
            d = vars(module)
            snap.modules.append((d, dict(d)))
            snap._values(d.values(), seen)
        classes = [c for c in getattr(node_class, "__mro__", (node_class,)) if c is not object]
        classes += [v for m in modules for v in list(vars(m).values())
                    if isinstance(v, type) and v.__module__ in own and v not in classes]
        for c in classes:
            try:
                attrs = dict(vars(c))
            except TypeError:
                continue
            snap.classes.append((c, attrs))
            snap._values(attrs.values(), seen)
        snap.roots = [d for d, _ in snap.modules] + [attrs for _, attrs in snap.classes]
        return snap

    def _values(self, values: Any, seen: set[int]) -> None:
        """Copy every mutable container reachable from `values` (nested ones, the `__dict__` of the pack's
        own objects), bounded; note the lru_caches."""
        stack = [_unwrap(v) for v in list(values)]
        while stack and len(seen) < _COPY_LIMIT:
            v = stack.pop()
            if id(v) in seen:
                continue
            seen.add(id(v))
            if isinstance(v, list):
                items: Any = list(v)
                self.contents.append((v, items))
                stack.extend(x for x in items if _walkable(x, self.own))
            elif isinstance(v, dict):
                items = dict(v)
                self.contents.append((v, items))
                stack.extend(x for x in items.values() if _walkable(x, self.own))
            elif isinstance(v, set):
                self.contents.append((v, set(v)))
            elif isinstance(v, (tuple, frozenset)):
                stack.extend(x for x in v if _walkable(x, self.own))
            elif _is_lru(v):
                try:
                    self.caches.append((v, v.cache_info()))
                except Exception:  # noqa: BLE001 - a foreign object with a cache_info attribute
                    pass
            elif _walkable(v, self.own):
                stack.append(v.__dict__)

    def restore(self, is_marker: Callable[[Any], bool], sweep_markers: bool = True) -> int:
        """Put the state back; returns how many places still held a marker and were cleaned by the sweep
        (run when markers were handed out)."""
        for live, saved in self.modules:
            for key in [k for k in list(live) if k not in saved]:
                live.pop(key, None)
            for key, value in saved.items():
                if live.get(key, _MISSING) is not value:
                    live[key] = value
        for c, attrs in self.classes:
            for key in [k for k in list(vars(c)) if k not in attrs]:
                _quietly(delattr, c, key)
            for key, value in attrs.items():
                if vars(c).get(key, _MISSING) is not value:
                    _quietly(setattr, c, key, value)
        for container, items in self.contents:
            _put_back(container, items)
        for fn, info in self.caches:
            try:
                if fn.cache_info() != info:
                    fn.cache_clear()  # it fills again with real listings on its next call
            except Exception:  # noqa: BLE001 - a foreign object with a cache_info attribute
                pass
        return sweep(self.roots, is_marker, self.own) if sweep_markers else 0


_MISSING = object()


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except (AttributeError, TypeError):  # a read-only attribute (a C type): nothing the probe could change
        pass


def _put_back(container: Any, items: Any) -> None:
    if isinstance(container, list):
        if len(container) != len(items) or any(a is not b for a, b in zip(container, items)):
            container[:] = items
    elif isinstance(container, dict):
        if container.keys() != items.keys() or any(container[k] is not v for k, v in items.items()):
            container.clear()
            container.update(items)
    elif container != items:
        container.clear()
        container.update(items)


def sweep(roots: list[Any], is_marker: Callable[[Any], bool], own: frozenset[str] = frozenset(),
          limit: int = _SWEEP_LIMIT) -> int:
    """Remove marker strings from mutable containers reachable from `roots` (nested containers, tuples
    replaced in their mutable parent, instances of classes whose module is among the roots' modules).
    Returns how many containers were cleaned."""
    cleaned = 0
    seen: set[int] = set()
    stack: list[Any] = list(roots)
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, list):
            if any(is_marker(x) for x in obj):
                obj[:] = [x for x in obj if not is_marker(x)]
                cleaned += 1
            for i, x in enumerate(obj):
                if isinstance(x, (tuple, frozenset)) and _holds_marker(x, is_marker):
                    obj[i] = _without(x, is_marker)
                    cleaned += 1
            stack.extend(x for x in obj if _walkable(x, own))
        elif isinstance(obj, dict):
            for k in [k for k, v in list(obj.items()) if is_marker(k) or is_marker(v)]:
                obj.pop(k, None)
                cleaned += 1
            for k, v in list(obj.items()):
                if isinstance(v, (tuple, frozenset)) and _holds_marker(v, is_marker):
                    obj[k] = _without(v, is_marker)
                    cleaned += 1
            stack.extend(v for v in list(obj.values()) if _walkable(v, own))
        elif isinstance(obj, set):
            marked = {x for x in obj if is_marker(x)}
            if marked:
                obj -= marked
                cleaned += 1
        elif isinstance(obj, (tuple, frozenset)):
            stack.extend(x for x in obj if _walkable(x, own))
        elif _walkable(obj, own):
            stack.append(obj.__dict__)
    return cleaned


def _walkable(x: Any, own: frozenset[str]) -> bool:
    if isinstance(x, (list, dict, set, tuple, frozenset)):
        return True
    # Instances of the pack's own classes (a registry object it keeps); never modules, classes, functions,
    # nor other libraries' objects (a torch model is no place a listing is kept, and it is large).
    return type(x).__module__ in own and isinstance(getattr(x, "__dict__", None), dict) \
        and not isinstance(x, (type, ModuleType))


def _holds_marker(x: Any, is_marker: Callable[[Any], bool], depth: int = 0) -> bool:
    if depth > 8:
        return False
    return any(is_marker(v) or (isinstance(v, (tuple, frozenset)) and _holds_marker(v, is_marker, depth + 1))
               for v in x)


def _without(x: Any, is_marker: Callable[[Any], bool]) -> Any:
    kept = [_without(v, is_marker) if isinstance(v, (tuple, frozenset)) else v for v in x if not is_marker(v)]
    return frozenset(kept) if isinstance(x, frozenset) else tuple(kept)

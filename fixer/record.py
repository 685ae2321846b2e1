"""`Record`: a base for plain dataclasses that gives them the `==` and `repr` the dataclass decorator would
generate, written once instead of generated per class.

Why: `@dataclass` writes each class's `__eq__` and `__repr__` as source and compiles them when the class is
created, every time a process starts; a `--scan` imports ~70 dataclasses, most of which are never compared
or printed, and those two compilations were ~3% of its instructions. A class opts in with
`@dataclass(eq=False, repr=False)` over `Record`: same results as the generated methods (fields in order,
`compare=`/`repr=` flags honoured, another class never equal, unhashable as an `eq=True` dataclass is).
Frozen dataclasses keep the decorator's own methods: their generated `__hash__` needs its `__eq__`.
"""

from __future__ import annotations

import threading
from dataclasses import fields
from typing import Any

_repr_running: set[tuple[int, int]] = set()  # (id, thread) of the records being printed: a cycle prints "..."


def _compared(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in fields(obj) if f.compare)


def _shown(obj: Any) -> str:
    return ", ".join(f"{f.name}={getattr(obj, f.name)!r}" for f in fields(obj) if f.repr)


class Record:
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return _compared(self) == _compared(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as an eq=True dataclass

    def __repr__(self) -> str:
        key = (id(self), threading.get_ident())
        if key in _repr_running:
            return "..."
        _repr_running.add(key)
        try:
            shown = _shown(self)
        finally:
            _repr_running.discard(key)
        return f"{self.__class__.__qualname__}({shown})"

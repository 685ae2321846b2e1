"""fixer.record.Record gives dataclasses the `==`, `repr` and hashing the decorator would generate."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from fixer.record import Record


@dataclass(eq=False, repr=False)
class Ours(Record):
    name: str
    size: int | None = None
    secret: str = field(default="", repr=False)
    seen: int = field(default=0, compare=False)
    items: list[Any] = field(default_factory=list)


@dataclass
class Generated:  # the same fields, with the decorator's own methods
    name: str
    size: int | None = None
    secret: str = field(default="", repr=False)
    seen: int = field(default=0, compare=False)
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class Sub(Ours):
    extra: float = 0.5


@dataclass
class GeneratedSub(Generated):
    extra: float = 0.5


ARGS = [("a",), ("a", 3), ("a", 3, "tok"), ("a", None, "", 7), ("a", 3, "", 0, [1, "x"])]


@pytest.mark.parametrize("args", ARGS)
def test_repr_is_what_the_decorator_writes(args):
    assert repr(Ours(*args)).replace("Ours", "X") == repr(Generated(*args)).replace("Generated", "X")
    assert repr(Sub(*args)).replace("Sub", "X") == repr(GeneratedSub(*args)).replace("GeneratedSub", "X")
    assert "test_record" not in repr(Ours(*args)) and repr(Ours(*args)).startswith("Ours(name=")


@pytest.mark.parametrize("left", ARGS)
@pytest.mark.parametrize("right", ARGS)
def test_equality_is_what_the_decorator_writes(left, right):
    assert (Ours(*left) == Ours(*right)) is (Generated(*left) == Generated(*right))
    assert (Sub(*left) == Sub(*right)) is (GeneratedSub(*left) == GeneratedSub(*right))


def test_other_classes_are_never_equal_and_compare_false_fields_are_ignored():
    assert Ours("a") != Sub("a") and Ours("a") != Generated("a") and Ours("a") != ("a",)
    assert Ours("a", seen=1) == Ours("a", seen=2)
    nan = float("nan")
    assert (Ours("a", items=[nan]) == Ours("a", items=[nan])) is (Generated("a", items=[nan]) ==
                                                                   Generated("a", items=[nan]))


def test_unhashable_as_a_mutable_dataclass_and_a_cycle_prints_dots():
    with pytest.raises(TypeError):
        hash(Ours("a"))
    with pytest.raises(TypeError):
        hash(Generated("a"))
    o, g = Ours("a"), Generated("a")
    o.items.append(o)
    g.items.append(g)
    expected = "X(name='a', size=None, seen=0, items=[...])"
    assert repr(o).replace("Ours", "X") == repr(g).replace("Generated", "X") == expected


def test_the_shared_documents_use_it_instead_of_generated_methods():
    """The point of Record: the dataclasses every command imports do not compile their own eq/repr."""
    from fixer import config, events, models, shapes
    from fixer.host import host, probe_isolation, static_folders
    from fixer.read import chains, extract, inventory

    for module in (shapes, events, models, config, host, probe_isolation, static_folders, chains, extract, inventory):
        for cls in vars(module).values():
            if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__ \
                    and not cls.__dataclass_params__.frozen and "__slots__" not in cls.__dict__:
                assert issubclass(cls, Record) and "__eq__" not in cls.__dict__ and "__repr__" not in cls.__dict__, cls

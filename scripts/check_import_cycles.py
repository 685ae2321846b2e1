#!/usr/bin/env python3
"""Fail (exit 1) when the project's modules import each other in a cycle, naming each cycle.

Every import counts, also those inside functions: a lazy import still ties two modules together,
and a cycle hidden in a function is one a newcomer cannot see from the top of the file. Tests,
benchmarks, scripts and docs are not the project's modules. Usage: check_import_cycles.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

NOT_MODULES = {"tests", "benchmarks", "scripts", "docs", "node_modules", "build", "dist"}
PACK = "<pack>"  # the root __init__.py: ComfyUI imports the checkout folder itself as a package


def module_files(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(root.rglob("*.py")):
        parts = p.relative_to(root).parts
        if any(x in NOT_MODULES or x.startswith(".") or x.endswith(".egg-info") for x in parts[:-1]):
            continue
        names = list(p.relative_to(root).with_suffix("").parts)
        if names[-1] == "__init__":
            names.pop()
        out[".".join(names) or PACK] = p
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if name == PACK:
        package: list[str] = []  # the root's own modules are top-level names (nodes, server_routes)
    else:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base_parts = package[: len(package) - (node.level - 1)] if node.level else []
            base = ".".join([*base_parts, node.module] if node.module else base_parts)
            candidates = [base] + [f"{base}.{a.name}" if base else a.name for a in node.names]
        else:
            continue
        for c in candidates:
            # `import fixer.sources.civitai` also runs fixer.sources and fixer: the deepest known module counts.
            while c and c not in modules:
                c = c.rpartition(".")[0]
            if c and c != name:
                found.add(c)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return [_path_within(g, graph) for g in sorted(groups)]


def _path_within(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest import path from the group's first module back to itself, inside the group."""
    members, start = set(group), group[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first, so the path named is a shortest one
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"{group} is not strongly connected")


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent)
    modules = module_files(root)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    found = cycles(graph)
    for cycle in found:
        print("import cycle: " + " -> ".join(cycle))
    if found:
        print(f"{len(found)} import cycle(s) among the project's modules: move what both sides need into a "
              "module that imports neither (shared types, pure helpers)", file=sys.stderr)
        return 1
    print(f"no import cycles among {len(modules)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

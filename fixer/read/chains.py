"""Which chain of a workflow each model reference sits in: the checkpoint or diffusion model ("anchor") that
feeds it, found by following the graph's links.

A workflow may hold several chains (an SDXL base with an SD 1.5 detailer, a refiner, a Pony pass), and a LoRA,
ControlNet, IP-Adapter, embedding or VAE must suit the model of its own chain, not the workflow's majority.
The links are followed upstream through MODEL and CLIP inputs (LoRA stacks, reroutes, set/get nodes,
subgraph boundaries) to the anchor's loader; a loader with no such input (ControlNet, VAE, upscaler, CLIP
vision) takes the chain of the nodes that consume it. Pure: the document in, anchors per node out.

Bounded for hostile documents: at most MAX_NODES nodes once subgraphs are expanded, iterative walks (a
chain of thousands of reroutes costs no recursion), cycles give "no anchor".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..models import ModelRef
from ..record import Record

NodeKey = tuple[tuple[str, ...], str]  # (subgraph path as the scan labels it, node id)
AnchorKey = tuple[str, str]  # ModelRef.key of the checkpoint / diffusion model
ANCHOR_FOLDERS = ("checkpoints", "diffusion_models")
MAX_NODES = 20_000  # nodes after subgraph expansion; past it the chains are left unknown
MAX_NESTING = 32
MAX_DOWNSTREAM = 6  # hops from a loader with no MODEL/CLIP input to a node that knows its chain
_CHAIN_TYPES = frozenset({"MODEL", "CLIP"})
_CHAIN_INPUTS = frozenset({"model", "clip"})  # API prompts carry no link types: core nodes' input names
_PASS_THROUGH = frozenset({"Reroute", "SetNode", "GetNode", "PrimitiveNode"})
_SUBGRAPH_IN, _SUBGRAPH_OUT = "-10", "-20"


@dataclass(eq=False, repr=False)
class _Graph(Record):
    """The flattened graph: every real node with its producers, and who consumes whom. Only what the chain
    walk reads is kept (an input that no link feeds decides nothing), so each link costs one append."""

    types: dict[NodeKey, str] = field(default_factory=dict)
    producers: dict[NodeKey, list[NodeKey]] = field(default_factory=dict)  # in input order
    typed: dict[NodeKey, list[NodeKey]] = field(default_factory=dict)  # those feeding a MODEL/CLIP input
    consumers: dict[NodeKey, set[NodeKey]] = field(default_factory=dict)

    def add_input(self, key: NodeKey, producer: NodeKey, typed: bool) -> None:
        self.producers.setdefault(key, []).append(producer)
        if typed:
            self.typed.setdefault(key, []).append(producer)
        self.consumers.setdefault(producer, set()).add(key)


@dataclass(eq=False, repr=False)
class _Level(Record):
    """One graph level: the root graph or one instance of a subgraph."""

    path: tuple[str, ...]
    nodes: dict[str, dict[str, Any]]
    links: dict[str, tuple[str, int, str, int, str]]  # id -> (origin, origin slot, target, target slot, type)
    parent: tuple[_Level, dict[str, Any]] | None = None  # (enclosing level, the instance node)
    children: dict[str, _Level] = field(default_factory=dict)  # instance node id -> its level
    outputs: dict[int, tuple[str, int]] = field(default_factory=dict)  # subgraph output slot -> (origin, slot)


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _link(raw: Any) -> tuple[str, tuple[str, int, str, int, str]] | None:
    """A link as [id, origin, origin_slot, target, target_slot, type] or as an object."""
    try:
        if isinstance(raw, list) and len(raw) >= 5:
            lid, o, os_, t, ts = raw[:5]
            typ = raw[5] if len(raw) > 5 else ""
        elif isinstance(raw, dict):
            get = raw.get  # a subgraph's links (most of a document's): five lookups, no generator per link
            lid, o, os_, t, ts, typ = get("id"), get("origin_id"), get("origin_slot"), get("target_id"), \
                get("target_slot"), get("type", "")
        else:
            return None
        return str(lid), (str(o), int(os_), str(t), int(ts), typ if isinstance(typ, str) else "")
    except (TypeError, ValueError):
        return None


def _level(path: tuple[str, ...], nodes: Any, links: Any) -> _Level:
    table = dict(filter(None, map(_link, links if isinstance(links, list) else [])))
    by_id = {str(n.get("id")): n for n in nodes if isinstance(n, dict)} if isinstance(nodes, list) else {}
    lv = _Level(path, by_id, table)
    lv.outputs = {ts: (o, os_) for o, os_, t, ts, _ in table.values() if t == _SUBGRAPH_OUT}
    return lv


def _expand(doc: dict[str, Any]) -> list[_Level] | None:
    """Root level and every subgraph instance below it (cycle-safe), labelled as the scan labels them."""
    defs = _dict(doc.get("definitions"))
    subgraphs = {sg["id"]: sg for sg in _list(defs.get("subgraphs"))
                 if isinstance(sg, dict) and isinstance(sg.get("id"), str)}
    root = _level((), doc.get("nodes"), doc.get("links"))
    if not subgraphs:
        return [root]  # most workflows: no instance to look for
    levels, stack = [root], [(root, frozenset[str]())]
    count = len(root.nodes)
    while stack:
        lv, ancestors = stack.pop()
        if len(lv.path) >= MAX_NESTING:
            continue
        for nid, node in lv.nodes.items():
            ntype = node.get("type")
            if not isinstance(ntype, str) or ntype not in subgraphs or ntype in ancestors:
                continue
            sg = subgraphs[ntype]
            child = _level(lv.path + (f"{sg.get('name') or ntype}#{nid}",), sg.get("nodes"), sg.get("links"))
            count += len(child.nodes)
            if count > MAX_NODES:
                return None
            child.parent = (lv, node)
            lv.children[nid] = child
            levels.append(child)
            stack.append((child, ancestors | {ntype}))
    return levels


def _producer(lv: _Level, origin: str, slot: int) -> NodeKey | None:
    """The real node behind a link's origin: across subgraph inputs (up) and instance outputs (down)."""
    for _ in range(2 * MAX_NESTING + 2):
        if origin == _SUBGRAPH_IN:
            if lv.parent is None:
                return None
            outer, inst = lv.parent
            inputs = _list(inst.get("inputs"))
            inp = _dict(inputs[slot]) if 0 <= slot < len(inputs) else None
            link = outer.links.get(str(inp.get("link"))) if inp else None
            if link is None:
                return None
            lv, origin, slot = outer, link[0], link[1]
            continue
        if origin in lv.children:
            inner = lv.children[origin]
            if slot not in inner.outputs:
                return None
            lv, (origin, slot) = inner, inner.outputs[slot]
            continue
        return (lv.path, origin) if origin in lv.nodes else None
    return None


def _ui_graph(doc: dict[str, Any]) -> _Graph | None:
    levels = _expand(doc)
    if levels is None:
        return None
    g = _Graph()
    types, producers, typed_producers, consumers = g.types, g.producers, g.typed, g.consumers
    setters: dict[str, NodeKey] = {}
    getters: list[tuple[NodeKey, str]] = []
    for lv in levels:
        path, nodes, children = lv.path, lv.nodes, lv.children
        into: dict[str, list[tuple[str, int, str, int, str]]] = {}
        for link in lv.links.values():
            into.setdefault(link[2], []).append(link)
        for nid, node in nodes.items():
            if nid in children:
                continue  # an instance: its inside stands for it
            key: NodeKey = (path, nid)
            ntype = node.get("type")
            types[key] = ntype if isinstance(ntype, str) else ""
            if ntype == "SetNode" or ntype == "GetNode":
                values = node.get("widgets_values")
                name_value = values[0] if isinstance(values, list) and values and isinstance(values[0], str) else None
                if ntype == "SetNode" and name_value:
                    setters.setdefault(name_value, key)
                elif name_value:
                    getters.append((key, name_value))
            incoming = into.get(nid)
            if not incoming:
                continue  # most nodes of a level: nothing feeds them, nothing to follow (one lookup, no parsing)
            declared = _list(node.get("inputs"))
            found: list[NodeKey] = []
            typed: list[NodeKey] = []
            for origin, slot, _, tslot, typ in incoming:
                if origin in nodes and origin not in children and origin != _SUBGRAPH_IN:
                    producer: NodeKey = (path, origin)  # a plain wire inside the level: most links
                else:
                    resolved = _producer(lv, origin, slot)
                    if resolved is None:
                        continue
                    producer = resolved
                spec = _dict(declared[tslot]) if 0 <= tslot < len(declared) else {}
                name, itype = spec.get("name"), spec.get("type")
                found.append(producer)
                if (itype if isinstance(itype, str) else typ) in _CHAIN_TYPES or \
                        (isinstance(name, str) and name in _CHAIN_INPUTS):
                    typed.append(producer)
                consumers.setdefault(producer, set()).add(key)
            if found:  # extended, not set: a hostile document can give two levels one path
                producers.setdefault(key, []).extend(found)
                if typed:
                    typed_producers.setdefault(key, []).extend(typed)
    for key, name in getters:  # KJNodes' Set/Get: a named wire without a link (untyped)
        if name in setters:
            g.add_input(key, setters[name], False)
    for lv in levels:  # parent and children point at each other: freed now, not at the next cyclic collection
        lv.parent = None
    return g


def _api_graph(doc: dict[str, Any]) -> _Graph:
    g = _Graph()
    for nid, node in list(doc.items())[:MAX_NODES]:
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            continue
        key: NodeKey = (tuple(str(nid).split(":")[:-1]), str(nid))
        g.types[key] = node["class_type"]
        for name, v in _dict(node.get("inputs")).items():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], (str, int)):
                origin = str(v[0])
                g.add_input(key, (tuple(origin.split(":")[:-1]), origin), str(name) in _CHAIN_INPUTS)
    return g


def _follow(g: _Graph, key: NodeKey) -> list[NodeKey]:
    """The producers that decide a node's chain: its MODEL/CLIP inputs when it has any, else all of them."""
    if g.types.get(key) not in _PASS_THROUGH:
        typed = g.typed.get(key)
        if typed:
            return typed
    return g.producers.get(key, [])


def _upstream(g: _Graph, anchors: dict[NodeKey, frozenset[AnchorKey]], memo: dict[NodeKey, frozenset[AnchorKey]],
              start: NodeKey) -> frozenset[AnchorKey]:
    """The anchors a node's chain comes from (iterative post-order DFS; a cycle contributes nothing)."""
    visiting: set[NodeKey] = set()
    stack: list[tuple[NodeKey, bool]] = [(start, False)]
    while stack:
        key, done = stack.pop()
        if key in memo:
            continue
        if key in anchors:
            memo[key] = anchors[key]
            continue
        deps = _follow(g, key)
        if done:
            visiting.discard(key)
            memo[key] = frozenset().union(*(memo.get(d, frozenset()) for d in deps))
            continue
        if key in visiting:
            continue
        visiting.add(key)
        stack.append((key, True))
        stack.extend((d, False) for d in deps if d not in memo and d not in visiting)
    return memo.get(start, frozenset())


def _chain_of(g: _Graph, anchors: dict[NodeKey, frozenset[AnchorKey]], memo: dict[NodeKey, frozenset[AnchorKey]],
              start: NodeKey) -> frozenset[AnchorKey]:
    """Upstream first; a loader that nothing feeds takes the chain of the nearest consumers that have one."""
    found = _upstream(g, anchors, memo, start)
    frontier, seen = {start}, {start}
    for _ in range(MAX_DOWNSTREAM):
        if found:
            break
        frontier = {c for k in frontier for c in g.consumers.get(k, ()) if c not in seen}
        seen |= frontier
        found = frozenset().union(*(_upstream(g, anchors, memo, c) for c in frontier))
    return found


def attach_chains(kind: str, doc: dict[str, Any], refs: Iterable[ModelRef]) -> None:
    """Set `Usage.anchors` on every usage of a non-anchor model in `doc` (kind "workflow" or "prompt") to the
    anchors of its chain. Anchors themselves and usages whose chain cannot be traced keep ()."""
    refs = list(refs)
    anchors: dict[NodeKey, frozenset[AnchorKey]] = {}
    for ref in refs:
        if ref.folder in ANCHOR_FOLDERS:
            for u in ref.usages:
                key = (u.subgraph_path, u.node_id)
                anchors[key] = anchors.get(key, frozenset()) | {ref.key}
    dependants = [u for r in refs if r.folder not in ANCHOR_FOLDERS for u in r.usages]
    if not anchors or not dependants:
        return
    g = _ui_graph(doc) if kind == "workflow" else _api_graph(doc)
    if g is None:
        return
    memo: dict[NodeKey, frozenset[AnchorKey]] = {}
    for u in dependants:
        key = (u.subgraph_path, u.node_id)
        if key in g.types:
            u.anchors = tuple(sorted(_chain_of(g, anchors, memo, key)))

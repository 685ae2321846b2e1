"""Walk one workflow document (UI or API JSON) and list the model files and node types it uses.

Pure: no file system, no network. Folder knowledge comes from loaders.py and an optional
`combo_folder(node_type, input_name)` callback (the live node definitions, via the scan).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..constants import FRONTEND_ONLY_NODE_TYPES, map_legacy
from ..errors import WorkflowError
from ..host.folder_probe import folder_map_of
from ..host.loaders import CoreInputs, combo_options, core_inputs, guess_folder, input_spec, widget_names_from_def
from ..models import FolderSource, ModelHint, ModelRef, NodeRef, Usage
from ..record import Record
from .budget import Budget
from .clues import MAX_CLUES, air_hints
from .names import is_model_value, normalise, unsafe_reason
from .prompt_refs import LORA_EXTENSIONS, has_prompt_syntax, prompt_refs

ComboFolder = Callable[[str, str], "str | None"]
_URL = re.compile(r"https?://[^\s<>\"')\]]+")
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})


@dataclass(eq=False, repr=False)
class Extracted(Record):
    """What one workflow references: its models, node types, notes' links and Civitai AIRs."""

    models: list[ModelRef] = field(default_factory=list)
    nodes: list[NodeRef] = field(default_factory=list)
    note_urls: list[str] = field(default_factory=list)
    airs: list[ModelHint] = field(default_factory=list)  # Civitai AIR URNs: clues for the whole workflow


# One node in any format, flattened, as the walkers below yield it: (node id, node type, widget values,
# properties, subgraph path, optional, instances: its placements, a subgraph definition's node is placed once
# per instance). A tuple, not an object: a scan flattens every node (10,000 in the official templates).
_Node = tuple[str, str, list[Any] | dict[str, Any], dict[str, Any], tuple[str, ...], bool, int]


def _hint_from(entry: Any) -> tuple[str, ModelHint] | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return None

    def get(k: str) -> str | None:
        v = entry.get(k)
        return v if isinstance(v, str) and v else None

    directory = get("directory")
    return normalise(entry["name"]), ModelHint(
        url=get("url"), hash=get("hash"), hash_type=get("hash_type"),
        directory=map_legacy(directory) if directory else None)


@dataclass(slots=True)
class _Placement:
    """Where a subgraph definition is placed in the graph, worked out once for all its nodes."""

    path: tuple[str, ...]  # one live chain of instances to it (the shortest), as the panel walks it
    required: bool  # some chain of instances reaches it with none muted or bypassed
    instances: int  # how many chains of instances reach it (at most MAX_INSTANCES)


MAX_INSTANCES = 10**9  # a count, not a list: hostile nesting multiplies it beyond any meaning
MAX_PATH_DEPTH = 64  # deeper definitions are named alone: no frontend nests subgraphs that far


def _graph_nodes(nodes: Any) -> Iterator[dict[str, Any]]:
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and isinstance(node.get("type"), str):
            yield node


def _properties(node: dict[str, Any]) -> dict[str, Any]:
    props = node.get("properties")
    return props if isinstance(props, dict) else {}


_MUTED = (2, 4)  # a node's `mode`: muted, bypassed


def _muted(node: dict[str, Any]) -> bool:
    return node.get("mode") in _MUTED


def _placements(doc: dict[str, Any], defs: dict[str, dict[str, Any]]) -> dict[str, _Placement]:
    """Each definition reachable from the root graph, with its placement. Linear in the document: a
    definition placed 10 times in one placed 10 times in ... is visited once, never once per chain."""
    if not defs:
        return {}  # no subgraphs (most workflows): nothing to place, no pass over the nodes
    # (definition placed, instance node) for the root graph (None) and each definition's own graph
    edges: dict[str | None, list[tuple[str, dict[str, Any]]]] = {}
    for graph, nodes in [(None, doc.get("nodes"))] + [(k, d.get("nodes")) for k, d in defs.items()]:
        edges[graph] = [(n["type"], n) for n in _graph_nodes(nodes) if n["type"] in defs]
    # Breadth first: the shortest chain to each definition, and the order to count chains in.

    def label(sg_id: str, inst: dict[str, Any]) -> str:
        return f"{defs[sg_id].get('name') or sg_id}#{inst.get('id', '?')}"

    paths: dict[str | None, tuple[str, ...]] = {None: ()}
    order: list[str | None] = [None]
    for graph in order:
        for sg_id, inst in edges[graph]:
            if sg_id not in paths:
                parent = paths[graph]
                deep = len(parent) >= MAX_PATH_DEPTH or bool(parent and "#" not in parent[-1])
                paths[sg_id] = (str(defs[sg_id].get("name") or sg_id),) if deep else parent + (label(sg_id, inst),)
                order.append(sg_id)
    required: set[str | None] = {None}
    stack: list[str | None] = [None]
    while stack:
        graph = stack.pop()
        for sg_id, inst in edges[graph]:
            if sg_id not in required and not _muted(inst):
                required.add(sg_id)
                stack.append(sg_id)
    return {sg_id: _Placement(paths[sg_id], sg_id in required, count)
            for sg_id, count in _chain_counts(edges, order).items() if sg_id is not None}


def _chain_counts(edges: dict[str | None, list[tuple[str, dict[str, Any]]]],
                  reached: list[str | None]) -> dict[str | None, int]:
    """How many chains of instances lead from the root to each reached definition. A definition that
    contains itself (directly or through others) is not entered again: those edges close a loop."""
    on_path: set[str | None] = set()
    done: set[str | None] = set()
    finished: list[str | None] = []  # post-order: every definition after all it places
    loops: set[tuple[str | None, int]] = set()
    stack: list[tuple[str | None, int]] = [(None, 0)]
    on_path.add(None)
    while stack:
        graph, i = stack.pop()
        out = edges[graph]
        if i < len(out):
            stack.append((graph, i + 1))
            child = out[i][0]
            if child in on_path:
                loops.add((graph, i))
            elif child not in done:
                on_path.add(child)
                stack.append((child, 0))
        else:
            on_path.discard(graph)
            done.add(graph)
            finished.append(graph)
    counts: dict[str | None, int] = {g: 0 for g in reached}
    counts[None] = 1
    for graph in reversed(finished):  # placers before the definitions they place
        for i, (child, _) in enumerate(edges[graph]):
            if (graph, i) not in loops:
                counts[child] = min(MAX_INSTANCES, counts[child] + counts[graph])
    return counts


def _ui_nodes(doc: dict[str, Any]) -> Iterator[_Node]:
    """Root nodes, each subgraph definition's nodes once (with their placement), legacy group nodes' nodes."""
    defs: dict[str, dict[str, Any]] = {}
    sgs = (doc.get("definitions") or {}).get("subgraphs") if isinstance(doc.get("definitions"), dict) else None
    for sg in sgs if isinstance(sgs, list) else []:
        if isinstance(sg, dict) and isinstance(sg.get("id"), str):
            defs[sg["id"]] = sg
    groups = _group_nodes(doc)
    placed_groups: set[str] = set()
    placed = _placements(doc, defs)
    for sg_id, nodes in [(None, doc.get("nodes"))] + [(k, d.get("nodes")) for k, d in defs.items()]:
        if sg_id is None:
            where = _Placement((), True, 1)
        elif sg_id in placed:
            where = placed[sg_id]
        else:  # defined but never placed: still a workflow's content, needed as its nodes' own modes say
            where = _Placement((str(defs[sg_id].get("name") or sg_id),), True, 0)
        path, required, instances = where.path, where.required, where.instances
        for node in nodes if isinstance(nodes, list) else ():
            node_type = node.get("type") if isinstance(node, dict) else None
            if not isinstance(node_type, str) or node_type in defs:
                continue  # not a node, or an instance: its definition's nodes are walked once, with its placement
            values = node.get("widgets_values")
            props = node.get("properties")
            optional = not required or node.get("mode") in _MUTED
            gname = node_type[len(_GROUP_PREFIX):] if node_type[:len(_GROUP_PREFIX)] in _GROUP_PREFIXES else None
            inner = _group_instance_nodes(str(node.get("id", "?")), groups[gname], values) \
                if gname in groups and isinstance(values, list) else None
            if inner is not None and gname is not None:
                placed_groups.add(gname)
                for inner_id, inner_type, inner_values, inner_props in inner:
                    yield inner_id, inner_type, inner_values, inner_props, path, optional, instances
                continue
            yield (str(node.get("id", "?")), node_type, values if isinstance(values, (list, dict)) else [],
                   props if isinstance(props, dict) else {}, path, optional, instances)
    for gname, gnodes in groups.items():
        if gname in placed_groups:
            continue  # its instances' own values were read: the definition's are the ones it was made with
        for i, node in enumerate(gnodes):
            values = node.get("widgets_values")
            yield (str(node.get("index", i)), node["type"], values if isinstance(values, (list, dict)) else [],
                   _properties(node), (f"group node {gname}",), False, 1)


# A legacy group node's instance type: "workflow>" + its name (frontends before 1.3: "workflow/").
_GROUP_PREFIX = "workflow>"
_GROUP_PREFIXES = frozenset({"workflow>", "workflow/"})


def _group_nodes(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Legacy group nodes (`extra.groupNodes`): name -> the nodes it holds."""
    extra = doc.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    out: dict[str, list[dict[str, Any]]] = {}
    for gname, gdef in groups.items() if isinstance(groups, dict) else ():
        nodes = gdef.get("nodes") if isinstance(gdef, dict) else None
        out[str(gname)] = [n for n in nodes if isinstance(n, dict) and isinstance(n.get("type"), str)] \
            if isinstance(nodes, list) else []
    return out


def _group_instance_nodes(instance_id: str, nodes: list[dict[str, Any]], values: list[Any]) \
        -> list[tuple[str, str, list[Any], dict[str, Any]]] | None:
    """The nodes of one placed group node with the values the instance holds: the instance's widgets are
    its nodes' widgets in order (the definition keeps the values the group was made with, the instance the
    ones the user set since). None when the counts disagree: then which value is whose is unknown.
    Ids as the API form names them: `<instance>:<index>`."""
    counts = [len(n["widgets_values"]) if isinstance(n.get("widgets_values"), list) else 0 for n in nodes]
    if sum(counts) != len(values):
        return None
    out, at = [], 0
    for i, (node, count) in enumerate(zip(nodes, counts)):
        out.append((f"{instance_id}:{node.get('index', i)}", node["type"], values[at:at + count], _properties(node)))
        at += count
    return out


def _api_nodes(doc: dict[str, Any]) -> Iterator[_Node]:
    for node_id, node in doc.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            continue
        inputs: dict[str, Any] = node["inputs"] if isinstance(node.get("inputs"), dict) else {}
        meta: dict[str, Any] = node["_meta"] if isinstance(node.get("_meta"), dict) else {}
        values = {k: v for k, v in inputs.items() if not isinstance(v, list)}  # lists are links
        path = tuple(str(node_id).split(":")[:-1])
        yield (str(node_id), node["class_type"], values, meta, path, False, 1)


def _is_structural(node_type: str, subgraph_ids: set[str]) -> bool:
    return (node_type in FRONTEND_ONLY_NODE_TYPES or node_type in subgraph_ids
            or node_type.startswith("workflow>") or node_type.startswith("workflow/"))


def _widget_names(node_type: str, core: CoreInputs | None, node_defs: Mapping[str, Any] | None) -> list[str]:
    """Input names in widgets_values order: the core table, else the live definition, else none."""
    if core and core[0]:
        return list(core[0])
    if node_defs and isinstance(node_defs.get(node_type), dict):
        return widget_names_from_def(node_defs[node_type])
    return []


def extract(kind: str, doc: dict[str, Any], label: str, node_defs: Mapping[str, Any] | None = None,
            combo_folder: ComboFolder | None = None, budget: Budget | None = None) -> Extracted:
    """Model refs and node types of one document; `kind` is "workflow" (UI) or "prompt" (API).

    Linear in the document; WorkflowError if it runs past `budget` (default: one for this document)."""
    out = Extracted()
    budget = budget or Budget(label)
    subgraph_ids: set[str] = set()
    if kind == "workflow":
        nodes = _ui_nodes(doc)
        if isinstance(doc.get("definitions"), dict):  # ids that are not text never equal a node's type
            subgraph_ids = {sg["id"] for sg in (doc["definitions"].get("subgraphs") or [])
                            if isinstance(sg, dict) and isinstance(sg.get("id"), str)}
        declared = [h for h in (_hint_from(e) for e in (doc.get("models") or [] if isinstance(doc.get("models"),
                                                                                              list) else [])) if h]
        # Beside the graph (Civitai's generator writes `extra.airs`); the nodes' own values are read below.
        out.airs = air_hints({k: v for k, v in doc.items() if k not in _GRAPH_KEYS}, budget)
    else:
        nodes, declared = _api_nodes(doc), []
    declared_by_name = {name.lower(): hint for name, hint in declared}
    refs: dict[tuple[str, str], ModelRef] = {}
    node_refs: dict[str, NodeRef] = {}

    for count, (node_id, node_type, node_values, properties, path, optional, instances) in enumerate(nodes):
        if count % 64 == 0:  # a clock read per node would cost more than most nodes
            budget.check()
            _check_breadth(refs, node_refs, label)
        if node_type in NOTE_TYPES:
            for value in (node_values.values() if isinstance(node_values, dict) else node_values):
                if isinstance(value, str):
                    out.note_urls.extend(u.rstrip(".,;") for u in _URL.findall(value))
                    if _AIR_MARK in value:
                        out.airs.extend(air_hints(value))
            continue
        if not _is_structural(node_type, subgraph_ids):
            nref = node_refs.get(node_type)
            if nref is None:
                nref = node_refs[node_type] = NodeRef(node_type, cnr_id=_text(properties, "cnr_id"),
                                                      aux_id=_text(properties, "aux_id"), ver=_text(properties, "ver"))
            nref.usages.append(Usage(label, node_id, node_type, None, path, optional, instances=instances))
        local_hints_lower: dict[str, ModelHint] | None = None
        names: list[str] | None = None
        core: CoreInputs | None = None
        node_def: Any = _UNSET
        pairs: Iterable[tuple[str | int, Any]] = \
            node_values.items() if isinstance(node_values, dict) else enumerate(node_values)
        for key, value in pairs:
            if not isinstance(value, str) or ("." not in value and ":" not in value):
                continue  # no file name, prompt syntax or AIR is without both: most values ("euler", "enable")
            model_like = is_model_value(value)
            maybe_file = model_like or bool(_MAYBE_FILE.match(value))
            bare = not maybe_file and _bare_name(value, node_type)
            if not maybe_file and not bare and not has_prompt_syntax(value):
                if _AIR_MARK in value:  # a loader that takes a Civitai AIR, or a prompt that names one
                    out.airs.extend(air_hints(value))
                continue  # most widget values: the work below is done only for model files and prompts
            if local_hints_lower is None:
                core = core_inputs(node_type)
                prop_models = properties.get("models")
                local_hints_lower = {n.lower(): h for n, h in (x for x in map(_hint_from, prop_models) if x)} \
                    if isinstance(prop_models, list) else {}
            input_name: str | None
            if isinstance(key, str):  # an API node's inputs (or a UI node's widgets by name)
                input_name = key
            else:
                if names is None:
                    names = _widget_names(node_type, core, node_defs)
                input_name = names[key] if key < len(names) else None
            usage = Usage(label, node_id, node_type, input_name, path, optional,
                          instances=instances)
            core_input = core is not None and input_name in core[1]
            if node_def is _UNSET and not core_input:  # a core loader's model input needs no definition
                node_def = _node_def(node_defs, node_type)
            if has_prompt_syntax(value):
                for pref in prompt_refs(node_type, input_name, node_def, value):
                    _add_ref(refs, ModelRef(name=pref.name, folder=pref.folder, folder_source="prompt",
                                            unsafe_reason=unsafe_reason(pref.written),
                                            alternatives=pref.alternatives),
                             usage, None)
                continue  # prompt text is never itself a file name
            folder_map = None if core_input else folder_map_of(node_def)
            # A core loader's file written without its extension ("ltx-video-ICLoRA-detailer-13B-0.9.8" in
            # Lightricks' workflows): ComfyUI lists only files with a model extension, so the node needs this
            # name with one; the first is the likely one, the others are accepted too.
            bare = core_input and bare
            if not model_like and not bare and not (folder_map and folder_map.accepts_extension(input_name, value)):
                continue
            if not core_input and _is_text(value, node_def, input_name):
                continue
            name = normalise(value)
            alternatives: tuple[str, ...] = ()
            if bare:
                name, alternatives = name + LORA_EXTENSIONS[0], tuple(name + e for e in LORA_EXTENSIONS[1:])
            hint = local_hints_lower.get(name.lower()) or declared_by_name.get(name.lower())
            listed = folder_map.locate(input_name, name) if folder_map else None
            if listed and folder_map:
                folder, in_folder = listed
                ref = ModelRef(name=in_folder, folder=folder, folder_source=folder_map.source_of(input_name),
                               unsafe_reason=unsafe_reason(in_folder))
            elif folder_map and folder_map.reads_no_folder(input_name) and _options(node_def, input_name):
                ref = ModelRef(name=name, folder=None, folder_source=folder_map.source, by_node=True)
            else:
                found, source = _folder_for(node_type, input_name, name, core, hint, combo_folder)
                ref = ModelRef(name=name, folder=found, folder_source=source, unsafe_reason=unsafe_reason(value),
                               alternatives=alternatives)
            _add_ref(refs, ref, usage, hint)
    used = {name for _, name in refs}
    for name, hint in declared:
        if name.lower() not in used:
            ref_key = (hint.directory or "", name.lower())
            if ref_key not in refs:
                refs[ref_key] = ModelRef(name=name, folder=hint.directory, folder_source="hint",
                                         unsafe_reason=unsafe_reason(name), declared_only=True)
            if hint not in refs[ref_key].hints:
                refs[ref_key].hints.append(hint)
    _check_breadth(refs, node_refs, label)
    out.models = list(refs.values())
    out.nodes = list(node_refs.values())
    out.airs = list(dict.fromkeys(out.airs))[:MAX_CLUES]
    return out


_UNSET = object()
# Different model files and node types one document may name. The largest real workflows name a few hundred
# of each; every one costs the rest of the run a report row, a log line, a lookup upstream.
MAX_MODELS = 2000
MAX_NODE_TYPES = 2000


def _check_breadth(refs: dict[tuple[str, str], ModelRef], node_refs: dict[str, NodeRef], label: str) -> None:
    if len(refs) > MAX_MODELS:
        raise WorkflowError(label, f"it names more than {MAX_MODELS} different model files, more than any "
                            "workflow; it was not scanned (is it machine-made?)")
    if len(node_refs) > MAX_NODE_TYPES:
        raise WorkflowError(label, f"it uses more than {MAX_NODE_TYPES} different node types, more than any "
                            "workflow; it was not scanned (is it machine-made?)")
_GRAPH_KEYS = frozenset({"nodes", "links", "definitions", "groups"})  # the graph: walked node by node instead
_AIR_MARK = "urn:air:"  # lower case, as Civitai writes AIRs: a cheap test before the pattern
# A single word with a short extension that is not in MODEL_EXTENSIONS (`.patch`): a file name when the
# input lists a folder that takes it. Media and text files (LoadImage's `photo.png`) are never looked up.
_MAYBE_FILE = re.compile(r"^[^\s]+\.(?!(?:png|jpe?g|webp|gif|bmp|tiff?|mp4|webm|mov|mkv|avi|wav|mp3|flac|ogg|txt|csv)$)"
                         r"[A-Za-z][A-Za-z0-9]{0,7}$", re.IGNORECASE)
_SPACE = re.compile(r"\s")
_PROSE = re.compile(r",\s")  # file names have spaces and brackets ("model (1).safetensors"), not ", "


def _bare_name(value: str, node_type: str) -> bool:
    """A core loader's value (not a file name with an extension) that may be one without it: one word, no AIR."""
    return core_inputs(node_type) is not None and ":" not in value and not _SPACE.search(value)


def _text(props: dict[str, Any], key: str) -> str | None:
    value = props.get(key)
    return value if isinstance(value, str) else None


def _node_def(node_defs: Any, node_type: str) -> Any:
    try:
        return node_defs.get(node_type) if node_defs is not None else None
    except Exception:  # live definitions: a node whose INPUT_TYPES() fails has none
        return None


def _options(node_def: Any, input_name: str | None) -> list[str]:
    """A COMBO input's fixed options. A value of such an input that reads no folder is the node's own
    choice (weights it downloads itself), even when it is no longer among them (an older pack version's
    `rife46.pth`): no file put in a model folder would make the node accept it."""
    return (combo_options(node_def, input_name) or []) if isinstance(node_def, dict) and input_name else []


def _is_text(value: str, node_def: Any, input_name: str | None) -> bool:
    """Free text, not a file: several words in a STRING input, or a comma-separated list of words when the
    input's type is unknown (a prompt that happens to end in `.pt`)."""
    if not _SPACE.search(value):
        return False
    spec = input_spec(node_def, input_name) if isinstance(node_def, dict) and input_name else None
    if spec is not None:
        kind: object = spec[0]  # untrusted JSON: a type name, a list of options, anything
        return kind == "STRING"
    return bool(_PROSE.search(value))


def _add_ref(refs: dict[tuple[str, str], ModelRef], ref: ModelRef, usage: Usage, hint: ModelHint | None) -> None:
    cur = refs.setdefault(ref.key, ref)
    cur.usages.append(usage)
    if hint and hint not in cur.hints:
        cur.hints.append(hint)


def _folder_for(node_type: str, input_name: str | None, name: str, core: CoreInputs | None, hint: ModelHint | None,
                combo_folder: ComboFolder | None) -> tuple[str | None, FolderSource]:
    if core and input_name in core[1]:
        return core[1][input_name], "node_table"
    if core and not core[0]:  # a core node matched by input name only (e.g. TrainLoraNode)
        return next(iter(core[1].values())), "node_table"
    if hint and hint.directory:
        return hint.directory, "hint"
    if combo_folder and input_name:
        folder = combo_folder(node_type, input_name)
        if folder:
            return folder, "node_def"
    folder = guess_folder(node_type, input_name, name)
    return (folder, "keyword") if folder else (None, "unknown")

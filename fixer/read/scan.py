"""The scan stage: workflows in, a ScanReport out (what is present, present elsewhere, missing)."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from ..actionlog import action
from ..errors import WorkflowError
from ..host.host import Host, write_location_reason
from ..host.loaders import combo_options
from ..models import ModelHint, ModelRef, ModelStatus, NodeRef, ParseProblem, ScanReport
from .budget import Budget
from .chains import attach_chains
from .clues import attach as attach_clues
from .clues import parameters_hints
from .extract import Extracted, extract
from .inventory import Inventory, build_inventory
from .readers import Doc, file_label, iter_workflow_files, read_documents, split_documents

log = logging.getLogger(__name__)


def combo_folder_finder(node_defs: Mapping[str, Any] | None, inventory: Inventory) -> Callable[[str, str], str | None]:
    """A custom loader's folder is the one whose file list its COMBO options are (the live definitions)."""
    cache: dict[tuple[str, str], str | None] = {}
    listing = {f: inventory.relpaths(f) for f in inventory.folder_names()}

    def find(node_type: str, input_name: str) -> str | None:
        key = (node_type, input_name)
        if key in cache:
            return cache[key]
        node_def = (node_defs or {}).get(node_type)
        options = combo_options(node_def, input_name) if isinstance(node_def, dict) else None
        best = None
        if options:
            opts = {o.replace("\\", "/") for o in options}
            scored = [(len(opts & files), folder) for folder, files in listing.items() if files]
            scored = [s for s in scored if s[0] * 2 >= len(opts)]
            best = max(scored)[1] if scored else None
        cache[key] = best
        return best

    return find


def _absorb(cur: ModelRef, ref: ModelRef) -> None:
    """`ref` names the same model as `cur`: its usages and hints become cur's."""
    cur.usages.extend(ref.usages)
    cur.hints.extend(h for h in ref.hints if h not in cur.hints)
    cur.declared_only = cur.declared_only and ref.declared_only


def _merge(into: dict[tuple[str, str], ModelRef], refs: list[ModelRef]) -> None:
    for ref in refs:
        cur = into.get(ref.key)
        if cur is None:
            into[ref.key] = ref
        else:
            _absorb(cur, ref)


def _fold_unknown_folders(refs: dict[tuple[str, str], ModelRef]) -> list[ModelRef]:
    """A name seen with no folder somewhere and a known folder elsewhere is the same model."""
    known = {name: ref for (folder, name), ref in refs.items() if folder}
    out = []
    for (folder, name), ref in refs.items():
        if not folder and name in known:
            _absorb(known[name], ref)
            continue
        out.append(ref)
    return out


def _refuse_foreign_folders(refs: list[ModelRef], folders: dict[str, list[str]]) -> None:
    """A workflow's `models[].directory` is honoured only when it names a model folder key (plus a plain
    subfolder); a reference whose workflow names any other place is unsafe, never fetched. A key this
    ComfyUI does not have (official templates name newer ComfyUI's folders) stays missing in it, and a
    fix refuses to write there, saying what to install."""
    for ref in refs:
        if ref.unsafe_reason:
            continue
        for directory in dict.fromkeys(h.directory for h in ref.hints if h.directory):
            reason = write_location_reason(folders, directory, require_registered=False)
            if reason:
                ref.unsafe_reason = f"the workflow puts it in {directory!r}: {reason}"
                break


def _attach_note_urls(refs: list[ModelRef], urls: list[str]) -> None:
    if not urls:
        return
    by_base: dict[str, list[str]] = {}
    for u in dict.fromkeys(urls):  # the templates' notes: 3,529 links, 929 different
        base = unquote(u.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1]).lower()
        if base:
            by_base.setdefault(base, []).append(u)
    for ref in refs:
        for u in by_base.get(ref.basename.lower(), []):
            if all(h.url != u for h in ref.hints):
                ref.hints.append(ModelHint(url=u))


def classify(ref: ModelRef, inv: Inventory) -> ModelStatus:
    if ref.unsafe_reason:
        return ModelStatus(ref, "unsafe")
    if ref.by_node:
        return ModelStatus(ref, "by_node")
    if ref.folder:
        hit = next(filter(None, (inv.lookup(ref.folder, n) for n in (ref.name, *ref.alternatives))), None)
        if hit:
            return ModelStatus(ref, "unused" if ref.declared_only else "present", local=hit)
    else:
        hits = [f for f in inv.named(ref.basename) if f.relpath == ref.name]
        if hits:
            return ModelStatus(ref, "unused" if ref.declared_only else "present", local=hits[0])
    if ref.declared_only:
        return ModelStatus(ref, "unused")
    elsewhere = inv.named(ref.basename)
    return ModelStatus(ref, "elsewhere" if elsewhere else "missing", elsewhere=elsewhere)


def _missing_nodes(nodes: dict[str, NodeRef], known: set[str] | None) -> list[NodeRef]:
    if known is None:
        return []
    return sorted((n for t, n in nodes.items() if t not in known), key=lambda n: n.node_type)


class Scanner:
    """Collects documents from files or in-memory data, then checks them against one inventory."""

    def __init__(self, host: Host, inventory: Inventory | None = None):
        self.host = host
        self.inventory = inventory if inventory is not None else build_inventory(host)
        self.node_defs = host.node_defs()
        self.known_types = host.node_types()
        self._combo = combo_folder_finder(self.node_defs, self.inventory)
        self.report = ScanReport(node_check=getattr(host, "node_source", "host") if self.known_types is not None
                                 else "skipped")
        self._refs: dict[tuple[str, str], ModelRef] = {}
        self._nodes: dict[str, NodeRef] = {}
        self._urls: list[str] = []

    def add_documents(self, docs: list[Doc], label: str) -> None:
        self.report.workflows.append(label)
        # A file holding both UI and API forms describes one graph: the UI form is richer (hints, subgraphs).
        kinds = {k for k, _ in docs}
        named = next((parameters_hints(d.get("text")) for k, d in docs if k == "parameters"), {})
        image_wide = named.pop("*", [])
        budget = Budget(label)  # one for the whole file: its documents describe one graph
        for kind, doc in docs:
            if kind == "parameters" or (kind == "prompt" and "workflow" in kinds):
                continue
            try:
                ex = extract(kind, doc, label, self.node_defs, self._combo, budget)
            except WorkflowError as e:
                self.report.problems.append(ParseProblem(label, e.reason))
                action("scan_refused", workflow=label, reason=e.reason)
                return
            attach_clues(ex.models, named, ex.airs + image_wide)
            attach_chains(kind, doc, ex.models)
            self._add(ex)

    def _add(self, ex: Extracted) -> None:
        _merge(self._refs, ex.models)
        for n in ex.nodes:
            cur = self._nodes.get(n.node_type)
            if cur is None:
                self._nodes[n.node_type] = n
            else:
                cur.usages.extend(n.usages)
                cur.cnr_id, cur.aux_id, cur.ver = cur.cnr_id or n.cnr_id, cur.aux_id or n.aux_id, cur.ver or n.ver
        self._urls.extend(ex.note_urls)

    def add_file(self, path: Path, label: str) -> None:
        try:
            docs = read_documents(path)
        except WorkflowError as e:
            self.report.problems.append(ParseProblem(label, e.reason))
            action("parse_error", workflow=label, error=e.reason)
            return
        self.add_documents(docs, label)

    def add_data(self, data: Any, label: str) -> None:
        try:
            docs = split_documents(data, label)
        except WorkflowError as e:
            self.report.problems.append(ParseProblem(label, e.reason))
            return
        self.add_documents(docs, label)

    def finish(self) -> ScanReport:
        refs = _fold_unknown_folders(self._refs)
        _refuse_foreign_folders(refs, self.host.folders())
        _attach_note_urls(refs, self._urls)
        self.report.models = sorted((classify(r, self.inventory) for r in refs),
                                    key=lambda s: (s.state, s.ref.folder or "~", s.ref.name.lower()))
        self.report.missing_nodes = _missing_nodes(self._nodes, self.known_types)
        failed = getattr(self.host, "failed_packs", None)  # inside ComfyUI: packs whose import failed
        if callable(failed) and self.report.missing_nodes:
            self.report.failed_packs = failed([n.node_type for n in self.report.missing_nodes])
        self.report.node_types_seen = len(self._nodes)
        for n in self._nodes.values():
            for wf in n.workflows:
                self.report.node_types.setdefault(wf, []).append(n.node_type)
        for s in self.report.models:
            if s.state != "present":
                action("model_" + s.state, name=s.ref.name, folder=s.ref.folder, folder_source=s.ref.folder_source,
                       workflows=s.ref.workflows,
                       elsewhere=[f.path for f in s.elsewhere][:5], reason=s.ref.unsafe_reason)
        for n in self.report.missing_nodes:
            action("node_missing", node_type=n.node_type, workflows=n.workflows)
        return self.report


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while one file is read and walked. Its parsed JSON is a tree of
    thousands of containers that lives only that long, and allocating them makes the collector walk them over
    and over (the 660 official templates: ~20 ms of a ~270 ms scan) for cycles a JSON tree cannot hold. Any
    cycle made meanwhile is still collected: the allocation count carries over, so the first allocation after
    the file collects. Only on the main thread (the CLI): the collector is the whole process's, and a scan on
    a worker thread must not pause it for a host's other threads."""
    if threading.current_thread() is not threading.main_thread() or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def scan_paths(paths: list[str], host: Host, inventory: Inventory | None = None) -> ScanReport:
    scanner = Scanner(host, inventory)
    roots = [r for r in (os.path.abspath(os.path.expanduser(p)) for p in paths) if os.path.isdir(r)]
    for f in iter_workflow_files(paths):
        root = next((r for r in roots if str(f).startswith(r.rstrip(os.sep) + os.sep)), None)
        with _collector_paused():
            scanner.add_file(f, file_label(f, root))
    return scanner.finish()


def scan_workflow_data(data: Any, name: str, host: Host, inventory: Inventory | None = None) -> ScanReport:
    """One workflow handed over in memory (the ComfyUI page, a running prompt)."""
    scanner = Scanner(host, inventory)
    scanner.add_data(data, name)
    return scanner.finish()

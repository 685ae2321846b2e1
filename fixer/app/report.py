"""Scan results in the file contract (docs/architecture.md): missing_models.json, missing_nodes.json,
summary_report.md, stdout."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

from ..constants import is_pickle
from ..models import FolderSource, ModelState, ModelStatus, ScanReport, to_jsonable
from ..shapes import MissingNodeEntry, ModelEntry, ModelHints, NodesNotChecked, PackMatch, ScanCounts
from ..state import now_iso, write_json_atomic, write_text_atomic
from ..transfer.policy import redact


def model_entry(s: ModelStatus, dest: str | None = None) -> ModelEntry:
    """One model of missing_models.json (and of the page's scan, with its `dest`)."""
    ref = s.ref
    first = ref.usages[0] if ref.usages else None
    url = ref.hint("url")
    hints = ModelHints(url=redact(url) if url else None,  # a link may carry ?token=: reports are shared
                       hash=ref.hint("hash"), hash_type=ref.hint("hash_type"), directory=ref.hint("directory"))
    return ModelEntry(filename=ref.name, expected_type=ref.folder, workflow=first.workflow if first else None,
                      node_type=first.node_type if first else None, node_id=first.node_id if first else None,
                      state=s.state, folder_source=ref.folder_source, optional=ref.optional,
                      pickle=is_pickle(ref.name), workflows=ref.workflows, nodes=list(ref.usages), hints=hints,
                      elsewhere=list(s.elsewhere), unsafe_reason=ref.unsafe_reason, dest=dest)


def counts(report: ScanReport) -> ScanCounts:
    c: Counter[str] = Counter(s.state for s in report.models)
    return ScanCounts(workflows=len(report.workflows), unreadable=len(report.problems),
                      models=sum(1 for s in report.models if s.state != "unused"),
                      present=c["present"], elsewhere=c["elsewhere"], missing=c["missing"], unsafe=c["unsafe"],
                      unused=c["unused"], by_node=c["by_node"], missing_nodes=len(report.missing_nodes))


NODES_NOT_CHECKED: Literal["not checked"] = "not checked"


def nodes_output(report: ScanReport, packs: list[PackMatch]) -> list[MissingNodeEntry] | NodesNotChecked:
    """missing_nodes.json: the guide's list when node types were checked; when they were not (no running
    ComfyUI or /object_info to check against), an object saying so, never `[]`, which reads "none missing"."""
    if report.node_check == "skipped":
        return NodesNotChecked(node_check=NODES_NOT_CHECKED, missing_nodes=None,
                               why="no running ComfyUI or saved /object_info was given to check the node types "
                                   "against",
                               how="run again with --server URL (a running ComfyUI) or --object-info FILE")
    from ..nodepacks.lookup import missing_nodes_json  # its import (5-10 ms) only when node types were checked

    return missing_nodes_json(report.missing_nodes, packs)


def write_scan_outputs(report: ScanReport, state_dir: Path, packs: list[PackMatch] | None = None) -> None:
    out = state_dir / "output"
    rows = [model_entry(s) for s in report.models if s.state in ("missing", "elsewhere", "unsafe")]
    write_json_atomic(out / "missing_models.json", rows)
    write_json_atomic(out / "missing_nodes.json", nodes_output(report, packs or []))
    write_text_atomic(out / "summary_report.md", summary_markdown(report, packs or []))


# How each reference's folder was learned, in the report's words (ModelRef.folder_source).
FOLDER_LEARNED: dict[FolderSource, str] = {
    "node_table": "core loader", "probe": "asked the node", "static": "read from the pack's source",
    "server": "asked the running ComfyUI", "prompt": "prompt text", "hint": "the workflow's models[]",
    "node_def": "the node's options", "keyword": "guessed from the name", "unknown": "unknown",
}


def _by_folder(report: ScanReport, state: ModelState) -> dict[str, list[ModelStatus]]:
    groups: dict[str, list[ModelStatus]] = defaultdict(list)
    for s in report.by_state(state):
        groups[s.ref.folder or "(folder unknown)"].append(s)
    return dict(sorted(groups.items()))


def summary_text(report: ScanReport) -> str:
    """The human summary the CLI prints."""
    c = counts(report)
    unreadable = f", {c.unreadable} could not be read" if c.unreadable else ""
    lines = [f"Scanned {c.workflows} workflow file(s){unreadable}",
             f"Models referenced: {c.models}  present: {c.present}  present elsewhere: {c.elsewhere}  "
             f"missing: {c.missing}" + (f"  unsafe names: {c.unsafe}" if c.unsafe else "")]
    missing = _by_folder(report, "missing")
    learned = Counter(FOLDER_LEARNED.get(s.ref.folder_source, s.ref.folder_source) for s in report.by_state("missing"))
    if learned:
        lines.append("Folders of the missing: " + ", ".join(f"{n} {how}" for how, n in learned.most_common()))
    if missing:
        lines.append("Missing by folder:")
        for folder, items in missing.items():
            names = ", ".join(s.ref.name + (" (optional)" if s.ref.optional else "") for s in items[:6])
            more = f" … +{len(items) - 6}" if len(items) > 6 else ""
            lines.append(f"  {folder:<20} {len(items):>3}  {names}{more}")
    for s in report.by_state("elsewhere"):
        where = ", ".join(f"{f.folder}/{f.relpath}" for f in s.elsewhere[:3])
        lines.append(f"Present elsewhere: {s.ref.folder}/{s.ref.name} -> found at {where} "
                     "(relink instead of downloading)")
    for s in report.by_state("unsafe"):
        lines.append(f"Unsafe name refused: {s.ref.name!r}: {s.ref.unsafe_reason}")
    for s in report.by_state("by_node"):
        lines.append(f"Downloaded by the node on first run: {s.ref.name} ({s.ref.usages[0].node_type})")
    if report.node_check == "skipped":
        lines.append("Missing node types: not checked (pass --server URL, a running ComfyUI, or --object-info FILE)")
    elif report.missing_nodes:
        types = ", ".join(n.node_type for n in report.missing_nodes[:10])
        more = f" … +{len(report.missing_nodes) - 10}" if len(report.missing_nodes) > 10 else ""
        lines.append(f"Missing node types: {len(report.missing_nodes)} ({types}{more})")
    else:
        lines.append("Missing node types: none")
    for pack in report.failed_packs:
        lines.append(f"Pack {pack.name} is installed but failed to import ({pack.reason or 'see ComfyUI log'}): "
                     f"{', '.join(pack.node_types)} come from it; fix its dependencies, then restart ComfyUI")
    if report.problems:
        lines.append("Could not read:")
        lines.extend(f"  {p.path}: {p.error}" for p in report.problems)
    return "\n".join(lines)


_MARKDOWN_SECTIONS: tuple[tuple[ModelState, str], ...] = (
    ("missing", "Missing models"), ("elsewhere", "Present elsewhere (relinkable)"),
    ("unsafe", "Unsafe names (refused)"), ("unused", "Declared but unused"))


def summary_markdown(report: ScanReport, packs: list[PackMatch], extra_sections: list[str] | None = None) -> str:
    c = to_jsonable(counts(report))
    md = ["# ComfyFixerSmart report", "", f"Generated {now_iso()}", "",
          "| | count |", "|---|---|"]
    md += [f"| {k.replace('_', ' ')} | {v} |" for k, v in c.items()]
    for state, title in _MARKDOWN_SECTIONS:
        groups = _by_folder(report, state)
        if not groups:
            continue
        md += ["", f"## {title}", "", "| folder | folder from | file | used by | note |", "|---|---|---|---|---|"]
        for folder, items in groups.items():
            for s in items:
                used = "; ".join(sorted({f"{u.workflow} #{u.node_id} {u.node_type}" for u in s.ref.usages})[:3])
                note = []
                if s.ref.optional:
                    note.append("only in muted/bypassed nodes")
                if is_pickle(s.ref.name):
                    note.append("pickle format")
                if s.elsewhere:
                    note.append("found at " + ", ".join(f"{f.folder}/{f.relpath}" for f in s.elsewhere[:2]))
                if s.ref.unsafe_reason:
                    note.append(s.ref.unsafe_reason)
                if s.ref.folder_source == "unknown":
                    note.append("folder unknown: choose one")
                learned = FOLDER_LEARNED.get(s.ref.folder_source, s.ref.folder_source)
                md.append(f"| {folder} | {learned} | `{s.ref.name}` | {used} | {'; '.join(note)} |")
    if report.node_check == "skipped":
        md += ["", "## Custom nodes", "", "Not checked: no running ComfyUI or /object_info was given."]
    elif report.missing_nodes:
        from ..nodepacks.lookup import packs_markdown

        md += ["", "## Missing custom nodes", "", packs_markdown(packs)]
    if report.problems:
        md += ["", "## Files that could not be read", ""] + [f"- `{p.path}`: {p.error}" for p in report.problems]
    for section in extra_sections or []:
        md += ["", section]
    return "\n".join(md) + "\n"

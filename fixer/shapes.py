"""The shape of every JSON document the product writes or serves, as dataclasses.

One serializer turns them into JSON (models.to_jsonable); fixer/schema.py derives a JSON Schema from
them (committed as docs/schema.json), and tests check the files on disk and the fields the page
reads against it. Field names of the file contract's documents (status.json, missing_models.json,
resolutions.json) are a contract: new fields are added, none is renamed or removed.

Documents:
- status.json: StatusDoc (its `data` a RunData during a fix); the page's status (GET /comfyfixer/status and
  the `comfyfixer.status` event): PanelStatus, the same with the background hash index's IndexProgress;
- output/missing_models.json and the page's scan: ModelEntry (filename/expected_type, as the file contract names them);
- output/resolutions.json: ResolutionEntry;
- the review plan the panel shows before downloading: PlanDoc;
- the page's `comfyfixer.done` event: DoneEvent.
The documents only one part writes live beside it, out of every command's imports (each dataclass costs its
creation at import, a --scan's included): the downloader's in fixer/transfer/shapes.py (downloaded_models.json,
--download's status data, verification_report.json), the identity commands' in fixer/identity/shapes.py
(models.lock.json, hash index, sync, duplicates, identified files, the shared cache's locks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .errors import ErrorInfo, TokenName
from .models import FailedPack, FolderSource, LocalFile, ModelState, Source, Usage
from .record import Record

# The file contract's phases plus `review` (a fix waiting for the user's go before downloading).
Phase = Literal["idle", "scanning", "resolving", "review", "downloading", "verifying", "complete", "error"]
PHASES: tuple[Phase, ...] = get_args(Phase)
# A model's row during a fix, from "queued" to one of FINAL_STATES.
RowState = Literal["queued", "resolving", "resolved", "review", "downloading", "verifying", "done", "failed",
                   "cancelled", "not_found", "needs_choice", "skipped"]
FinalState = Literal["done", "failed", "cancelled", "not_found", "needs_choice", "skipped"]
FINAL_STATES: tuple[FinalState, ...] = get_args(FinalState)
ResolutionState = Literal["chosen", "needs_choice", "not_found"]  # a resolutions.json entry


# --- output/missing_models.json and the scan the page asks for -------------------------------------
@dataclass(eq=False, repr=False)
class ModelHints(Record):
    """What the workflow itself says about the file (models[] / properties.models); a URL without tokens."""

    url: str | None = None
    hash: str | None = None
    hash_type: str | None = None
    directory: str | None = None


@dataclass(eq=False, repr=False)
class ModelEntry(Record):
    """One model of a scan: the file contract's fields first (filename, expected_type, workflow, node_type,
    node_id), then what we know beyond them."""

    filename: str
    expected_type: str | None  # ComfyUI's folder key (loras, checkpoints, ...); None when it cannot be known
    workflow: str | None
    node_type: str | None
    node_id: str | None
    state: ModelState
    folder_source: FolderSource
    optional: bool
    pickle: bool
    workflows: list[str]
    nodes: list[Usage]
    hints: ModelHints
    elsewhere: list[LocalFile]
    unsafe_reason: str | None
    dest: str | None = None  # the page's scan only: the real path a missing model will be written to
    # The page's scan only: the pack (id, or the node type) without which the file has nowhere to go.
    needs_pack: str | None = None
    partial: PartialFile | None = None  # the page's scan only: a stopped download's bytes on disk


@dataclass(eq=False, repr=False)
class PartialFile(Record):
    """What a stopped download left at a missing file's destination, kept for resuming."""

    bytes: int
    total: int | None


@dataclass(eq=False, repr=False)
class ScanCounts(Record):
    workflows: int
    unreadable: int
    models: int
    present: int
    elsewhere: int
    missing: int
    unsafe: int
    unused: int
    by_node: int
    missing_nodes: int
    for_missing_packs: int = 0  # the page's scan: files only an uninstalled pack can load (not in `missing`)


@dataclass(eq=False, repr=False)
class MissingNode(Record):
    """A node type the host does not have, and where the workflow uses it."""

    node_type: str
    cnr_id: str | None
    aux_id: str | None
    ver: str | None
    nodes: list[Usage]


@dataclass(eq=False, repr=False)
class ScanResult(Record):
    """The page's scan of the open workflow."""

    workflow: str
    node_check: str
    summary: ScanCounts
    models: list[ModelEntry]
    missing_nodes: list[MissingNode]
    packs: list[PackMatch]
    failed_packs: list[FailedPack]  # installed packs that did not load, whose node types the workflow wants
    rows: list[Row] = field(default_factory=list)  # what earlier runs of this workflow left per model (carried)
    # How this workflow's last run ended, while the status is another workflow's run (a queued fix starts as
    # soon as this one ends): the panel keeps saying how its own run went.
    last_run: RunSummary | None = None


# How the pack of a missing node type was identified (fixer/nodepacks/lookup.py).
MatchKind = Literal["cnr_id", "aux_id", "exact", "pattern", "update_comfyui", "unknown"]


@dataclass(eq=False, repr=False)
class PackCandidate(Record):
    """Another pack that provides some of the same node types (for the user to choose)."""

    id: str
    title: str
    repository: str
    stars: int | None
    node_types: list[str]
    install: list[str]
    files: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)
    cnr_id: str | None = None


@dataclass(eq=False, repr=False)
class PackMatch(Record):
    """One pack (or "update ComfyUI", or one unknown type) and the missing node types it accounts for."""

    id: str | None  # registry id, or "author/repo"; None for an unknown type
    title: str
    repository: str | None
    version: str | None  # the `ver` the workflow recorded, when it did
    matched_by: MatchKind
    node_types: list[str]
    workflows: list[str]
    reason: str
    candidates: list[PackCandidate] = field(default_factory=list)
    install: list[str] = field(default_factory=list)
    search_url: str | None = None
    cnr_id: str | None = None  # registry id, when known (Manager installs by it)
    files: list[str] = field(default_factory=list)  # what Manager's list says to fetch
    pip: list[str] = field(default_factory=list)
    # What the workflow's cnr_id / aux_id claim and Manager's map does not confirm for these types: shown,
    # never installed ("registry pack 'x'", "repository https://github.com/a/b").
    workflow_says: str | None = None
    manager_installable: bool = False  # "Install with Manager" may be offered (a pack the map lists)
    install_git: list[str] = field(default_factory=list)  # git clone + pip install -r, when the repo is known
    install_cli: list[str] = field(default_factory=list)  # comfy node install <id>, for listed packs


@dataclass(eq=False, repr=False)
class PackRef(Record):
    """Another pack that provides the same node type."""

    id: str
    title: str
    repository: str
    stars: int | None


@dataclass(eq=False, repr=False)
class NodeUsage(Record):
    workflow: str
    node_id: str
    subgraph_path: list[str]
    optional: bool


@dataclass(eq=False, repr=False)
class NodesNotChecked(Record):
    """output/missing_nodes.json when node types were not checked (no running ComfyUI or /object_info):
    never `[]`, which a script reads as "nothing missing"."""

    node_check: Literal["not checked"]
    missing_nodes: None
    why: str
    how: str


@dataclass(eq=False, repr=False)
class MissingNodeEntry(Record):
    """One entry of output/missing_nodes.json: the file contract's node_type and workflows, then the pack that
    provides the type. `class_type` is the same name under the key ComfyUI's API format uses."""

    node_type: str
    class_type: str
    count: int
    workflows: list[str]
    node_ids: list[str]
    usages: list[NodeUsage]
    optional: bool
    cnr_id: str | None
    aux_id: str | None
    ver: str | None
    pack_id: str | None
    pack_title: str | None
    repository: str | None
    version: str | None
    matched_by: MatchKind
    reason: str
    candidates: list[PackRef]
    install: list[str]
    install_git: list[str]
    install_cli: list[str]
    workflow_says: str | None
    manager_installable: bool
    search_url: str | None


# --- candidates and output/resolutions.json -------------------------------------------------------------
@dataclass(eq=False, repr=False)
class CandidateEntry(Record):
    """A place a missing model can be had, as the panel lists it for the user to pick from."""

    source: Source
    url: str | None
    local_path: str | None
    reason: str
    confidence: float
    filename: str
    folder: str | None
    size: int | None
    gated: bool


@dataclass(eq=False, repr=False)
class ResolutionEntry(Record):
    """One entry of output/resolutions.json: the file contract's fields (filename, source incl. not_found,
    model_id / version_id / repo_id, download_url, expected_type), then what the panel and report show."""

    filename: str
    source: str  # where the bytes come from: civitai, huggingface, local, not_found, or the link's host
    download_url: str | None
    expected_type: str | None
    model_id: int | str | None
    version_id: int | str | None
    repo_id: str | None
    ids: dict[str, Any]
    local_path: str | None
    size: int | None
    sha256: str | None
    confidence: float | None
    reason: str
    gated: bool
    needs_token: TokenName | None
    candidates: list[CandidateEntry]
    why: str
    tried: list[str]
    found_by: Source | None = None  # how the source was found: embedded, catalog, civitai, huggingface, fuzzy, ...
    state: ResolutionState = "not_found"


# --- the review plan --------------------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class PlanFile(Record):
    """One file of a plan: where it will be written."""

    name: str  # as the workflow writes it
    folder: str  # ComfyUI's folder key (diffusion_models, loras, ...)
    path: str | None  # the real file path it will be written to; None when ComfyUI has no such folder
    size: int | None = None
    problem: str | None = None  # why there is no path


@dataclass(eq=False, repr=False)
class FolderTotal(Record):
    """One destination folder of a plan: how many files go there, their known bytes, how many of unknown
    size, the folder as the user knows it ("models/loras/") and the free space there."""

    folder: str
    count: int = 0
    bytes: int = 0
    unknown_sizes: int = 0
    into: str | None = None
    free_bytes: int | None = None


@dataclass(eq=False, repr=False)
class PlanDoc(Record):
    """"Download 6 models, 41.2 GB, into models/ (free: 120 GB)": what a fix will fetch, before a byte moves."""

    headline: str
    count: int
    total_bytes: int
    unknown_sizes: int
    free_bytes: int | None
    fits: bool
    into: str | None
    files: list[PlanFile]
    folders: list[FolderTotal] = field(default_factory=list)  # per destination folder
    sizing: int = 0  # files whose size is being asked of their source (the review waits for these)


# --- a fix run: status.json's `data` and the panel's rows ------------------------------------------------------
@dataclass(eq=False, repr=False)
class Row(Record):
    """What the panel shows for one model."""

    name: str
    folder: str | None
    state: RowState = "queued"
    source: Source | None = None
    url: str | None = None
    reason: str | None = None
    confidence: float | None = None
    size: int | None = None
    sha256: str | None = None
    warnings: list[str] = field(default_factory=list)
    candidates: list[CandidateEntry] = field(default_factory=list)
    bytes_done: int = 0
    total: int | None = None
    speed: float = 0.0
    eta: float | None = None
    error: ErrorInfo | None = None
    path: str | None = None
    tried: list[str] = field(default_factory=list)  # the searches behind `reason` (the panel's details toggle)
    needs_token: TokenName | None = None  # the source needs a token that is not set (known before downloading)
    license_url: str | None = None  # a gated repo: where its license is accepted
    # Where the bytes come from (civitai, huggingface, local, or the host), as resolutions.json's `source` says;
    # `source` stays how it was found (catalog, embedded, ...), which the panel labels.
    origin: str | None = None
    dest: str | None = None  # where the file will be written (the panel's rows, before it is)
    saved_as: str | None = None  # a pasted link's file keeps its real name: the loader is repointed to it
    carried: bool = False  # the row an earlier run of the same workflow left (this run did not touch it)


@dataclass(eq=False, repr=False)
class Overall(Record):
    bytes_done: int
    total: int
    speed: float
    eta: float | None


@dataclass(eq=False, repr=False)
class RunSummary(Record):
    """How many models ended in each final state (and, at the end, how long the run took)."""

    done: int
    failed: int
    cancelled: int
    not_found: int
    needs_choice: int
    skipped: int
    seconds: float | None = None


@dataclass(eq=False, repr=False)
class RunData(Record):
    run_id: str
    workflow: str
    models: list[Row]
    overall: Overall
    summary: RunSummary | None
    plan: PlanDoc | None = None  # while the run waits for review


@dataclass(eq=False, repr=False)
class StatusProgress(Record):
    current: int = 0
    total: int = 0
    percent: float = 0.0


@dataclass(eq=False, repr=False)
class StatusError(Record):
    """The file contract's error entry {timestamp, error, details}, with the error's code and typed facts beside."""

    timestamp: str
    error: str
    details: str
    code: str
    retry_after: float | None = None
    needs_token: TokenName | None = None
    token_helps: TokenName | None = None
    license_url: str | None = None
    part_kept: bool | None = None
    folder: str | None = None
    service: str | None = None
    status: int | None = None
    needed: int | None = None
    free: int | None = None


@dataclass(eq=False, repr=False)
class StatusDoc(Record):
    """status.json (the file contract's {timestamp, phase, progress, data, errors}) and the page's status event.
    `data` is a fix run's RunData, or what a CLI command reports (its scan counts, its downloads)."""

    timestamp: str
    phase: Phase = "idle"
    progress: StatusProgress = field(default_factory=StatusProgress)
    data: RunData | dict[str, Any] = field(default_factory=dict)
    errors: list[StatusError] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # workflows whose fix waits for the running one to end


# The background hash index (fixer/identity/hash_index.py): walking = listing the model files; paused = ComfyUI
# runs or queues a prompt; stopped = cut short (turned off meanwhile); off = the settings turned it off.
IndexState = Literal["idle", "walking", "hashing", "paused", "done", "stopped", "off", "failed"]


@dataclass(eq=False, repr=False)
class IndexProgress(Record):
    """How far the background hash index got: files and bytes done of those found, and its read limit."""

    state: IndexState = "idle"
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0  # files already in the index count whole at once
    hashed_bytes: int = 0  # bytes read this walk: 0 on a second walk over unchanged files
    read_limit: int = 0  # bytes a second the pace allows (0: no limit)
    error: str | None = None


@dataclass(eq=False, repr=False)
class PanelStatus(StatusDoc):
    """The panel's status (GET /comfyfixer/status and the `comfyfixer.status` event): status.json's document and
    beside it the background hash index of this ComfyUI (never in status.json, which any process writes)."""

    index: IndexProgress = field(default_factory=IndexProgress)


@dataclass(eq=False, repr=False)
class DoneFile(Record):
    folder: str
    name: str
    saved_as: str | None = None  # a pasted link's file keeps its real name; the page repoints the loaders to it


@dataclass(eq=False, repr=False)
class DoneEvent(Record):
    """The page's `comfyfixer.done` event: files that landed, for the page to refresh its loaders."""

    run_id: str | None
    summary: RunSummary | None
    files: list[DoneFile]
    workflow: str | None = None

"""The data that flows between stages (docs/architecture.md, "What flows"). Plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Literal, Union, overload

from .errors import ErrorInfo, TokenName
from .record import Record

if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # typeshed's protocol of a dataclass instance (no runtime module)

ModelState = Literal["present", "elsewhere", "missing", "unsafe", "unused", "by_node"]  # by_node: the node downloads it
# How a reference's folder was learned: the core table, asking the node (probe), reading its pack's sources
# (static), a running ComfyUI's pack (server), prompt syntax, the workflow's hint, its COMBO vs disk, keywords.
# A node's folder map (fixer/host/folder_probe.py) is learned by one of the middle three.
MapSource = Literal["probe", "static", "server"]
FolderSource = Literal["node_table", MapSource, "prompt", "hint", "node_def", "keyword", "unknown"]
# Where a candidate came from; "user" is a link the user pasted, "not_found" a resolution without one.
Source = Literal["local", "embedded", "catalog", "civitai", "huggingface", "fuzzy", "llm", "user", "not_found"]
TransferState = Literal["queued", "downloading", "verifying", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class ModelHint:
    """What a workflow says about a model file itself (`models[]` / `properties.models`)."""

    url: str | None = None
    hash: str | None = None
    hash_type: str | None = None
    directory: str | None = None
    kind: str | None = None  # a workflow-wide clue's Civitai resource type ("lora", "checkpoint"), for pairing


@dataclass(slots=True)
class Usage:
    """One place a workflow references a model or node type."""

    workflow: str
    node_id: str
    node_type: str
    input_name: str | None = None
    subgraph_path: tuple[str, ...] = ()
    optional: bool = False  # muted (mode 2) or bypassed (mode 4)
    # The keys (ModelRef.key) of the checkpoints / diffusion models whose chain this usage sits in
    # (fixer.read.chains); () for an anchor itself or when the graph's links do not tell.
    anchors: tuple[tuple[str, str], ...] = ()
    # How many places the graph has this node in: a node of a subgraph definition is in every instance of
    # it (and of the subgraphs holding those); `subgraph_path` names one of them, the shortest. 0: the
    # definition is never placed.
    instances: int = 1


class UsedIn(Record):
    """What ModelRef and NodeRef derive alike from where the workflows use them (`self.usages`)."""

    usages: list[Usage]

    @property
    def optional(self) -> bool:
        """Only muted or bypassed nodes use it."""
        return bool(self.usages) and all(u.optional for u in self.usages)

    @property
    def workflows(self) -> list[str]:
        return sorted({u.workflow for u in self.usages})


@dataclass(eq=False, repr=False)
class ModelRef(UsedIn):
    """One model file the scanned workflows need, merged across every place that names it."""

    name: str  # as the widget names it, separators normalised to "/"
    folder: str | None  # canonical ComfyUI folder key; None when it cannot be known
    folder_source: FolderSource = "unknown"
    usages: list[Usage] = field(default_factory=list)
    hints: list[ModelHint] = field(default_factory=list)
    unsafe_reason: str | None = None
    declared_only: bool = False  # listed in models[] but no node uses it
    alternatives: tuple[str, ...] = ()  # other names the node accepts for it (a prompt's name without extension)
    by_node: bool = False  # one of the node's own choices that it downloads on first run: never queued

    @property
    def key(self) -> tuple[str, str]:
        return (self.folder or "", self.name.lower())


    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def hint(self, attr: str) -> str | None:
        return next((getattr(h, attr) for h in self.hints if getattr(h, attr)), None)

    @property
    def stated_sha256(self) -> str | None:
        """The sha256 the workflow states for this file (a models[] hash whose type is sha256 or unsaid),
        lower-case; the first when several entries state one. Only these bytes are ever accepted for it."""
        for h in self.hints:
            value = (h.hash or "").lower()
            if (h.hash_type or "sha256").lower() == "sha256" and len(value) == 64 and \
                    all(c in "0123456789abcdef" for c in value):
                return value
        return None


@dataclass(eq=False, repr=False)
class NodeRef(UsedIn):
    """A node type the host does not have."""

    node_type: str
    usages: list[Usage] = field(default_factory=list)
    cnr_id: str | None = None
    aux_id: str | None = None
    ver: str | None = None


@dataclass(eq=False, repr=False)
class FailedPack(Record):
    """An installed pack that did not load (ComfyUI's "IMPORT FAILED"), and the node types a workflow
    wants from it: its nodes are missing although the pack is there; reinstalling it is no fix."""

    name: str
    reason: str | None  # ComfyUI's own words, when its log said them
    node_types: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LocalFile:
    folder: str
    relpath: str  # "/"-separated, relative to the folder root it was found in
    path: str  # absolute
    size: int


@dataclass(eq=False, repr=False)
class ModelStatus(Record):
    """A ModelRef checked against the local inventory."""

    ref: ModelRef
    state: ModelState
    local: LocalFile | None = None  # where it is, for "present"
    elsewhere: list[LocalFile] = field(default_factory=list)  # relinkable copies


@dataclass(eq=False, repr=False)
class ParseProblem(Record):
    """A file the scan could not read as a workflow, and why."""

    path: str
    error: str


@dataclass(eq=False, repr=False)
class ScanReport(Record):
    """What a scan found over its workflows: every model with its state, missing node types, unreadable files."""

    workflows: list[str] = field(default_factory=list)
    problems: list[ParseProblem] = field(default_factory=list)
    models: list[ModelStatus] = field(default_factory=list)
    missing_nodes: list[NodeRef] = field(default_factory=list)
    node_check: str = "skipped"  # "server", "object_info", "host" or "skipped"
    node_types_seen: int = 0
    node_types: dict[str, list[str]] = field(default_factory=dict)  # workflow -> every node type it uses
    failed_packs: list[FailedPack] = field(default_factory=list)  # installed, did not load, wanted here

    def by_state(self, state: ModelState) -> list[ModelStatus]:
        return [m for m in self.models if m.state == state]


@dataclass(eq=False, repr=False)
class Candidate(Record):
    """A place a missing model can be had."""

    source: Source
    filename: str
    folder: str | None
    confidence: float
    reason: str
    url: str | None = None
    local_path: str | None = None
    size: int | None = None
    sha256: str | None = None
    gated: bool = False
    needs_token: TokenName | None = None  # when the source needs a token
    ids: dict[str, Any] = field(default_factory=dict)  # repo_id, model_id, version_id, file_id ...
    # The facts behind the reason's words, for the one-sentence `why` (never read back from `reason`):
    made_for: str | None = None  # made for another model family than the chain's (its reason says so first)
    shared_by: tuple[str, ...] = ()  # the model families that each ship a file of this name


@dataclass(eq=False, repr=False)
class Resolution(Record):
    """Where a missing model can be had: the chosen candidate (None: not found), the others, and why."""

    name: str
    folder: str | None
    chosen: Candidate | None
    candidates: list[Candidate] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # the details behind `why`, one line per search
    why: str = ""  # one sentence for a person: where it was found, or why not ("searched 7 ways")

    @property
    def source(self) -> Source:
        return self.chosen.source if self.chosen else "not_found"


@dataclass(eq=False, repr=False)
class TransferRequest(Record):
    """What the downloader needs to fetch one file into place."""

    url: str
    folder: str
    filename: str  # relative to the folder; may hold a subfolder
    expected_size: int | None = None
    sha256: str | None = None
    source: str = ""
    model_name: str = ""  # the name the workflow uses, for messages


@dataclass(eq=False, repr=False)
class Transfer(Record):
    """One download: its request, where it goes (the final name and its .part), and how far it is."""

    request: TransferRequest
    target: str
    part: str
    bytes_done: int = 0
    total: int | None = None
    speed: float = 0.0  # bytes/s
    state: TransferState = "queued"
    error: ErrorInfo | None = None
    sha256: str | None = None
    warning: str | None = None  # e.g. a pickle format; shown in the report and the panel


# A JSON value as json.dumps writes it and json.loads gives it back.
JSON = Union[dict[str, "JSON"], list["JSON"], str, int, float, bool, None]
JSONObject = dict[str, JSON]

_PLAIN = (str, int, float, bool, type(None))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # per dataclass, looked up once: scans serialize 100k objects


@overload
def to_jsonable(obj: DataclassInstance | dict[Any, Any]) -> JSONObject: ...
@overload
def to_jsonable(obj: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any]) -> list[JSON]: ...
@overload
def to_jsonable(obj: object) -> JSON: ...


def to_jsonable(obj: object) -> JSON:
    """The one serializer: dataclasses (nested, fixer/shapes.py) to plain JSON types, field by field.
    TypeError for anything else (json.dumps's `default=` contract): no value leaves it that is not JSON."""
    if isinstance(obj, _PLAIN):
        return obj
    names = _field_names(type(obj))
    if names is not None:
        return {n: to_jsonable(getattr(obj, n)) for n in names}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    raise TypeError(f"{type(obj).__name__} is not a JSON value and no shape of fixer/shapes.py")


def json_default(obj: object) -> object:
    """to_jsonable one level at a time, as `json.dumps(default=json_default)`: a dataclass becomes the dict of
    its fields as they are, and the encoder (C) writes their lists, text and numbers itself, calling back only
    for the dataclasses inside. The same JSON as to_jsonable's for text-keyed documents (all of ours: the
    encoder words a bool or None key as JSON does, to_jsonable as Python does), with a Python call per
    dataclass instead of per value: a scan's missing_models.json in two thirds of the time."""
    names = _field_names(type(obj))
    if names is not None:
        return {n: getattr(obj, n) for n in names}
    return to_jsonable(obj)


def _field_names(cls: type) -> tuple[str, ...] | None:
    names = _FIELD_NAMES.get(cls)
    if names is None and is_dataclass(cls):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names

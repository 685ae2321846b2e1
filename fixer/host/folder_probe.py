"""Which folder each input of a node lists, in one shape whoever learned it (docs/comfyui-facts.md).

Inside ComfyUI the node is asked: its INPUT_TYPES() runs while folder_paths answers every listing with a
marker name per folder, and the markers found in an input's options name the folders it reads, even when
they are empty (a fresh install). Outside ComfyUI the same `FolderMap` comes from reading the packs'
sources (static_folders.py) or from a running ComfyUI's pack (the route). It travels inside a node
definition under FOLDER_MAP_KEY, so extract.py finds it where it already looks for a node's inputs.

The wrappers are installed on folder_paths once, process-wide; they record only while this module's
context variable is set, which happens for the duration of one INPUT_TYPES() call in the scanning thread.
Everywhere else (/object_info, running prompts, other threads) they are exact pass-throughs.

The probe changes nothing observable: a listing asked for while recording is the folder's real listing
plus the markers (so a pack that filters it keeps a marker, and one that keeps it keeps real names once
the markers are taken out), and whatever the call stored in the pack's state is put back afterwards
(probe_isolation.py). A last plain INPUT_TYPES() call checks that no marker is left in its answer.
"""

from __future__ import annotations

import contextvars
import logging
import re
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..actionlog import action
from ..constants import MODEL_EXTENSIONS, map_legacy
from ..models import MapSource
from .loaders import combo_options
from .probe_isolation import Snapshot

log = logging.getLogger(__name__)

FOLDER_MAP_KEY = "comfyfixer_folder_map"
LISTERS = ("get_filename_list", "get_filename_list_", "get_full_path", "get_full_path_or_raise", "get_folder_paths")
_MARKER = "__cfprobe{}__"
_MARKER_RX = re.compile(r"__cfprobe(\d+)__")
_ACTIVE: contextvars.ContextVar["_Recording | None"] = contextvars.ContextVar("comfyfixer_folder_probe", default=None)


def extension_of(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


@dataclass(frozen=True)
class Listing:
    """One folder listed in an input's options, maybe under a prefix (Impact's `bbox/` + ultralytics_bbox)."""

    folder: str
    prefix: str = ""
    extensions: frozenset[str] = frozenset()  # what the folder lists; empty: every file

    def accepts(self, value: str) -> bool:
        return value.startswith(self.prefix) and (not self.extensions or extension_of(value) in self.extensions)


@dataclass(frozen=True)
class FolderMap:
    """A node type's inputs -> the folders their options list, and how that was learned."""

    source: MapSource
    inputs: dict[str, tuple[Listing, ...]] = field(default_factory=dict)
    complete: bool = False  # every folder asked during the probed call is listed by some input
    # Inputs that read no folder, on positive evidence: options written in the source, or weight names
    # offered while no folder was asked. Never only because no folder was seen (a list built at import).
    fixed: frozenset[str] = frozenset()
    input_sources: dict[str, MapSource] = field(default_factory=dict)  # an input learned another way ("static")

    def source_of(self, input_name: str | None) -> MapSource:
        return self.input_sources.get(input_name or "", self.source)

    def locate(self, input_name: str | None, value: str) -> tuple[str, str] | None:
        """(folder, name inside it) for a value of this input, the longest prefix first: a listing that names
        the value's extension, else one that lists every file (or whose extensions are unknown), else the
        first whose prefix fits."""
        listings = self.inputs.get(input_name or "")
        if not listings:
            return None
        by_prefix = sorted(listings, key=lambda x: -len(x.prefix))
        ext = extension_of(value)
        fit = next((x for x in by_prefix if value.startswith(x.prefix) and ext in x.extensions), None) \
            or next((x for x in by_prefix if x.accepts(value)), None) \
            or next((x for x in by_prefix if value.startswith(x.prefix)), None)
        if fit is None:
            return None
        return fit.folder, value[len(fit.prefix):]

    def accepts_extension(self, input_name: str | None, value: str) -> bool:
        """The input lists a folder that takes this value's extension (e.g. `.patch` for inpaint)."""
        ext = extension_of(value)
        return bool(ext) and any(ext in x.extensions for x in self.inputs.get(input_name or "", ()))

    def reads_no_folder(self, input_name: str | None) -> bool:
        return bool(input_name) and input_name not in self.inputs and input_name in self.fixed

    def with_static(self, static: "FolderMap | None") -> "FolderMap":
        """Inside ComfyUI: an input the probe could not see (a list built at import, a filter that kept
        nothing) takes what the pack's source says; the probe's own findings win where both have one."""
        if static is None:
            return self
        extra = {k: v for k, v in static.inputs.items() if k not in self.inputs}
        if not extra and not static.fixed:
            return self
        sources = {**self.input_sources, **{k: static.source for k in extra}}
        fixed = (self.fixed | static.fixed) - set(static.inputs)
        return FolderMap(self.source, {**self.inputs, **extra}, self.complete, frozenset(fixed), sources)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "complete": self.complete, "fixed": sorted(self.fixed),
               "inputs": {k: [{"folder": x.folder, "prefix": x.prefix, "extensions": sorted(x.extensions)}
                              for x in v] for k, v in self.inputs.items()}}
        if self.input_sources:
            out["input_sources"] = dict(self.input_sources)
        return out

    @classmethod
    def from_json(cls, data: Any, source: MapSource) -> "FolderMap | None":
        """From a server's answer (untrusted): anything malformed is dropped, never raised."""
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
            return None
        inputs: dict[str, tuple[Listing, ...]] = {}
        for name, listings in data["inputs"].items():
            if not isinstance(name, str) or not isinstance(listings, list):
                continue
            good = tuple(listing for x in listings if (listing := _listing_from_json(x)) is not None)
            if good:
                inputs[name] = good
        fixed = data.get("fixed")
        sources = data.get("input_sources")
        return cls(source, inputs, complete=data.get("complete") is True,
                   fixed=frozenset(f for f in fixed if isinstance(f, str)) if isinstance(fixed, list) else frozenset(),
                   input_sources={k: _MAP_SOURCES[v] for k, v in sources.items()
                                  if k in inputs and isinstance(v, str) and v in _MAP_SOURCES}
                   if isinstance(sources, dict) else {})


# A claimed source (untrusted text) -> the literal it names.
_MAP_SOURCES: dict[str, MapSource] = {"probe": "probe", "static": "static", "server": "server"}


def _listing_from_json(x: object) -> Listing | None:
    """One listing of a server's answer (untrusted), or None when it names no folder."""
    if not isinstance(x, dict):
        return None
    folder, prefix, extensions = x.get("folder"), x.get("prefix"), x.get("extensions")
    if not isinstance(folder, str) or not folder:
        return None
    return Listing(map_legacy(folder), prefix if isinstance(prefix, str) else "",
                   frozenset(e.lower() for e in extensions or [] if isinstance(e, str)))


_PARSED: dict[int, tuple[dict[str, Any], FolderMap | None]] = {}  # id of a map's JSON -> (that JSON, parsed)
_PARSED_MAX = 4096


def folder_map_of(node_def: Any) -> FolderMap | None:
    """The folder map a node definition carries. It is kept as JSON (`FolderMap.to_json`) so definitions
    stay plain data wherever they travel (a worker process, a route); parsed once per map."""
    data = node_def.get(FOLDER_MAP_KEY) if isinstance(node_def, dict) else None
    if not isinstance(data, dict):
        return None
    hit = _PARSED.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    claimed = data.get("source")
    source = _MAP_SOURCES[claimed] if isinstance(claimed, str) and claimed in _MAP_SOURCES else "server"
    fm = FolderMap.from_json(data, source)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[id(data)] = (data, fm)
    return fm


def combo_entries(input_types: Any) -> Iterable[tuple[str, list[str]]]:
    """(input name, options) of every COMBO in an INPUT_TYPES() answer (V1 list or V3 "COMBO")."""
    if not isinstance(input_types, dict):
        return
    node_def = {"input": input_types}
    for section in ("required", "optional"):
        spec = input_types.get(section)
        for name in spec if isinstance(spec, dict) else ():
            options = combo_options(node_def, name)
            if options is not None:
                yield name, options


# Markers for a folder that registers no extension (any file): one per extension a model file has, so a
# pack that keeps only `*.safetensors` (Kolors-MZ's LLM folder) still finds one, plus the bare name.
_ANY_FILE_EXTENSIONS = tuple(sorted(MODEL_EXTENSIONS))
_WEIGHT_NAME = re.compile(r"\.(" + "|".join(e.lstrip(".") for e in sorted(MODEL_EXTENSIONS)) + r")$", re.IGNORECASE)


def is_marker(value: Any) -> bool:
    return isinstance(value, str) and "__cfprobe" in value


def _holds_marker(value: Any, depth: int = 0) -> bool:
    """A marker anywhere in an INPUT_TYPES() answer (bounded: answers are small, a pack's may nest)."""
    if is_marker(value):
        return True
    if depth > 6:
        return False
    if isinstance(value, dict):
        return any(_holds_marker(k, depth + 1) or _holds_marker(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_marker(v, depth + 1) for v in value)
    return False


class _Recording:
    """One INPUT_TYPES() call being recorded: the folders asked for, and the markers handed out."""

    def __init__(self, probe: "FolderProbe"):
        self.probe = probe
        self.asked: list[str] = []  # in the order asked
        self.temp_dirs: list[str] = []

    def ask(self, folder: str) -> None:
        if folder not in self.asked:
            self.asked.append(folder)

    def listing(self, folder: str, real: list[str]) -> list[str] | None:
        """The folder's real names plus a marker per extension it lists (so a pack's own extension filter
        keeps one); None for an unregistered folder (the real function decides what happens)."""
        entry = self.probe.registered(folder)
        if entry is None:
            return None
        self.ask(folder)
        base = self.probe.marker(folder)
        exts = sorted({e.lower() for e in entry if isinstance(e, str) and e.startswith(".")})
        return list(real) + [base + e for e in exts or _ANY_FILE_EXTENSIONS] + ([] if exts else [base])


class FolderProbe:
    """The probe for one folder_paths module: wrappers installed once, results cached per node class."""

    def __init__(self, folder_paths: Any):
        self.fp = folder_paths
        self._index: dict[str, int] = {}
        self._folders: list[str] = []
        self._lock = threading.Lock()
        # One probe at a time: a pack's state is saved and put back around each call.
        self._calls = threading.RLock()
        # Inside ComfyUI: runs a probe on the event loop's thread, where /object_info and a prompt's
        # validation run, so neither can read a pack's cache while it holds markers (set by the host).
        self.confine: Callable[[Callable[[], Any]], Any] | None = None
        self._cache: weakref.WeakKeyDictionary[type, FolderMap | None] = weakref.WeakKeyDictionary()
        self._install()

    # --- the wrappers ------------------------------------------------------------------------------
    def _install(self) -> None:
        """Wrap each listing function once per process. A second copy of this module (the pack imported
        under another name) finds the wrappers in place and records through their context variable."""
        installed = [getattr(getattr(self.fp, name, None), "_comfyfixer_probe", None) for name in LISTERS]
        self.active = next((v for v in installed if v is not None), _ACTIVE)
        for name, done in zip(LISTERS, installed):
            real = getattr(self.fp, name, None)
            if real is not None and done is None:
                setattr(self.fp, name, _wrapper(name, real, self.active))

    def registered(self, folder: str) -> Any:
        entry = (getattr(self.fp, "folder_names_and_paths", None) or {}).get(folder)
        return entry[1] if isinstance(entry, (list, tuple)) and len(entry) > 1 else None

    def marker(self, folder: str) -> str:
        with self._lock:
            if folder not in self._index:
                self._index[folder] = len(self._folders)
                self._folders.append(folder)
            return _MARKER.format(self._index[folder])

    def folder_of_marker(self, index: int) -> str | None:
        return self._folders[index] if index < len(self._folders) else None

    def marker_dir(self, folder: str, recording: _Recording) -> str | None:
        """A directory holding one marker file per extension and a marker subfolder, for packs that list
        get_folder_paths() themselves (Florence2's LLM folders). It lives in ComfyUI's temp directory, one
        per probed call, and is removed when the call returns."""
        names = recording.listing(folder, [])
        temp = getattr(self.fp, "get_temp_directory", None)
        if names is None or temp is None:
            return None
        try:
            base = Path(temp()) / "comfyfixer_probe"
            base.mkdir(parents=True, exist_ok=True)
            d = Path(tempfile.mkdtemp(dir=base))
            recording.temp_dirs.append(str(d))
            for n in names:
                (d / n).touch(exist_ok=True)
            (d / (self.marker(folder) + "folder")).mkdir(exist_ok=True)
        except OSError as e:
            log.debug("no marker folder for %s: %s", folder, e)
            return None
        return str(d)

    # --- probing -----------------------------------------------------------------------------------
    def probe(self, cls: type) -> FolderMap | None:
        """The folders each input of `cls` lists; None when INPUT_TYPES() fails. Cached per class (scans run
        in several threads: the panel's, a prompt's Report node, the route's)."""
        with self._lock:
            try:
                return self._cache[cls]
            except (KeyError, TypeError):
                pass
        # The lock is taken where the probe runs (the loop's thread when confined): a thread waiting for
        # the loop never holds it, so a probe started on the loop itself cannot deadlock against it.
        result = self.confine(lambda: self._locked(cls)) if self.confine else self._locked(cls)
        with self._lock:
            try:
                self._cache[cls] = result
            except TypeError:  # not weak-referenceable: probe again next time
                pass
        return result

    def _locked(self, cls: Any) -> FolderMap | None:
        with self._calls:
            return self._probe(cls)

    def _probe(self, cls: Any) -> FolderMap | None:
        recording = _Recording(self)
        snapshot = Snapshot.take(cls) if isinstance(cls, type) else None
        token = self.active.set(recording)
        try:
            # Read before the state is put back: the answer may be the very list a pack caches.
            return self._read_answer(cls.INPUT_TYPES(), recording)
        except Exception as e:  # a broken custom node must not break our scan
            log.debug("INPUT_TYPES of %s failed while probing: %s", getattr(cls, "__name__", cls), e)
            return None
        finally:
            self.active.reset(token)
            for d in recording.temp_dirs:
                shutil.rmtree(d, ignore_errors=True)
            if snapshot is not None:
                self._put_back(cls, snapshot, handed_out=bool(recording.asked))

    def _put_back(self, cls: Any, snapshot: Snapshot, handed_out: bool) -> None:
        """Restore the pack's state, then ask the node once more without recording: a marker in that
        answer is one the restore missed (kept where it does not look); say so, loudly. The state is
        restored again after that call, so the probe leaves it exactly as it found it."""
        swept = snapshot.restore(is_marker, sweep_markers=handed_out)
        try:
            leaked = _holds_marker(cls.INPUT_TYPES())
        except Exception:  # noqa: BLE001 - it failed while probing too, or only now: nothing shown
            leaked = False
        snapshot.restore(is_marker, sweep_markers=False)  # the check's own call changes nothing either
        if swept or leaked:
            action("folder_probe_cleanup", node_class=getattr(cls, "__name__", str(cls)), swept=swept,
                   leaked=leaked)
        if leaked:
            log.warning("comfyfixer: %s keeps its folder listing where the probe cannot restore it; restart "
                        "ComfyUI if its lists show names starting with __cfprobe", getattr(cls, "__name__", cls))

    def _read_answer(self, answer: Any, recording: _Recording) -> FolderMap:
        inputs: dict[str, tuple[Listing, ...]] = {}
        combos = list(combo_entries(answer))
        for name, options in combos:
            found: list[Listing] = []
            for opt in options:
                m = _MARKER_RX.search(opt) if isinstance(opt, str) else None
                folder = self.folder_of_marker(int(m.group(1))) if m else None
                if m is None or folder is None:
                    continue
                listing = Listing(map_legacy(folder), opt[:m.start()], self._extensions(folder))
                if listing not in found:
                    found.append(listing)
            if found:
                inputs[name] = tuple(found)
        asked = list(dict.fromkeys(map_legacy(f) for f in recording.asked))
        if len(asked) == 1:
            # The only folder asked during the call, and inputs whose options came back empty: the pack
            # filtered every marker out (a name pattern of its own), the folder is theirs.
            original = next(f for f in recording.asked if map_legacy(f) == asked[0])
            for name, options in combos:
                if not options and name not in inputs:
                    inputs[name] = (Listing(asked[0], "", self._extensions(original)),)
        # Weights the node downloads itself: options that name weight files while no folder was asked at
        # all during the call. Only such positive evidence marks an input as reading no folder (a list
        # built at import shows "None" or the files then present, never this).
        fixed = frozenset(name for name, options in combos if name not in inputs and not asked
                          and any(isinstance(o, str) and _WEIGHT_NAME.search(o) for o in options))
        listed = {x.folder for ls in inputs.values() for x in ls}
        return FolderMap("probe", inputs, complete=set(asked) <= listed, fixed=fixed)

    def _extensions(self, folder: str) -> frozenset[str]:
        return frozenset(e.lower() for e in self.registered(folder) or () if isinstance(e, str) and e.startswith("."))


def _wrapper(name: str, real: Callable[..., Any],
             active: contextvars.ContextVar[_Recording | None]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        recording = active.get()
        if recording is None or not args or not isinstance(args[0], str):
            return real(*args, **kwargs)
        folder = map_legacy(args[0])
        if recording.probe.registered(folder) is None:
            # A folder this ComfyUI does not have (BrushNet lists models/inpaint itself when ComfyUI has no
            # "inpaint"): asked all the same, so an empty input is never put down to another folder asked.
            recording.ask(folder)
            return real(*args, **kwargs)
        if name in ("get_filename_list", "get_filename_list_"):
            answer = real(*args, **kwargs)
            names = recording.listing(folder, answer if name == "get_filename_list" else answer[0])
            return names if name == "get_filename_list" else (names, *answer[1:])
        if name == "get_folder_paths":
            d = recording.probe.marker_dir(folder, recording)
            return [d] if d else real(*args, **kwargs)
        recording.ask(folder)
        return real(*args, **kwargs)

    wrapper._comfyfixer_probe = active  # type: ignore[attr-defined]
    wrapper.__wrapped__ = real  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(real, "__name__", name)
    wrapper.__doc__ = getattr(real, "__doc__", None)
    return wrapper


_PROBES: dict[int, tuple[Any, FolderProbe]] = {}  # id -> (module kept alive so the id stays its own, probe)
_PROBES_LOCK = threading.Lock()


def probe_for(folder_paths: Any) -> FolderProbe:
    """The one probe of a folder_paths module (installing the wrappers the first time)."""
    with _PROBES_LOCK:
        entry = _PROBES.get(id(folder_paths))
        if entry is None:
            entry = _PROBES[id(folder_paths)] = (folder_paths, FolderProbe(folder_paths))
        return entry[1]


def with_folder_map(node_def: dict[str, Any], folder_map: FolderMap | None) -> dict[str, Any]:
    if folder_map is None:
        return node_def
    return {**node_def, FOLDER_MAP_KEY: folder_map.to_json()}


def probe_all(folder_paths: Any, classes: dict[str, Any], types: Iterable[str] | None = None) -> dict[str, Any]:
    """Node type -> its folder map as JSON, for the route a CLI with --server asks (all types, or `types`)."""
    probe = probe_for(folder_paths)
    wanted = classes if types is None else {t: classes[t] for t in types if t in classes}
    out: dict[str, Any] = {}
    for node_type, cls in wanted.items():
        fm = probe.probe(cls)
        if fm is not None and (fm.inputs or fm.complete):  # complete: its fixed options are the node's own
            out[node_type] = fm.to_json()
    return out


def apply_server_maps(object_info: dict[str, Any], answer: Any) -> int:
    """Put the folder maps a running ComfyUI's pack recorded into its /object_info definitions (untrusted
    answer: malformed entries are skipped). Returns how many node types got one."""
    if not isinstance(answer, dict):
        return 0
    count = 0
    for node_type, data in answer.items():
        d = object_info.get(node_type)
        if not isinstance(d, dict):
            continue
        fm = FolderMap.from_json(data, "server")
        if fm is not None:
            object_info[node_type] = with_folder_map(d, fm)
            count += 1
    return count


FOLDER_MAP_ROUTE = "/comfyfixer/folder_map"

"""The host adapter: which folders ComfyUI has, where they are, and which node types it knows.

`StandaloneHost` reads a ComfyUI root and its extra_model_paths.yaml the way ComfyUI does (CLI).
`FolderPathsHost` wraps ComfyUI's own `folder_paths` module, handed in by the adapter, so this
package never imports ComfyUI.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from ..constants import (
    CLIENT_HEADER,
    COMFY_PT_EXTENSIONS,
    CORE_FOLDERS,
    DEFAULT_FOLDER_DIRS,
    MODEL_EXTENSIONS,
    NON_MODEL_FOLDERS,
    map_legacy,
)
from ..errors import ConfigError, UnsafeFileType, UnsafeFolder
from ..models import FailedPack
from ..read.names import normalise, unsafe_reason
from ..record import Record
from .failed_packs import failed_packs
from .folder_probe import FOLDER_MAP_ROUTE, FolderProbe, folder_map_of, probe_all, probe_for, with_folder_map
from .probe_isolation import pack_root
from .static_folders import PackSources, Reading, WithPackDefs

log = logging.getLogger("fixer.host")

class Host(Protocol):
    def folders(self) -> dict[str, list[str]]:
        """Folder key -> absolute paths, [0] being where downloads go."""

    def extensions(self, folder: str) -> frozenset[str]:
        """File extensions the folder lists (empty: every file)."""

    def node_types(self) -> set[str] | None:
        """Node types the host knows; None when unknown (node checking skipped)."""

    def node_defs(self) -> Mapping[str, Any] | None:
        """/object_info-shaped definitions, to learn a custom loader's folder from its COMBO."""

    def models_dir(self) -> str | None:
        """ComfyUI's models/ folder (folder_paths.models_dir), or None when unknown."""


@dataclass(eq=False, repr=False)
class StandaloneHost(Record):
    """A ComfyUI install read from disk, plus optional node definitions from /object_info."""

    root: Path
    paths: dict[str, list[str]] = field(default_factory=dict)
    exts: dict[str, frozenset[str]] = field(default_factory=dict)
    object_info: dict[str, Any] | None = None
    node_source: str = "skipped"
    custom_nodes: Path | None = None  # packs whose sources say which folder each input lists (static_folders)

    @classmethod
    def from_root(cls, root: str | os.PathLike[str], extra_configs: list[str] | None = None) -> "StandaloneHost":
        root = Path(root).expanduser().resolve()
        models = root / "models"
        paths: dict[str, list[str]] = {}
        exts: dict[str, frozenset[str]] = {}
        for key in CORE_FOLDERS:
            dirs = DEFAULT_FOLDER_DIRS.get(key, (key,))
            paths[key] = [str(models / d) for d in dirs]
            exts[key] = COMFY_PT_EXTENSIONS
        exts["configs"] = frozenset({".yaml"})
        exts["diffusers"] = frozenset({"folder"})
        exts["classifiers"] = frozenset({""})
        paths.pop("custom_nodes", None)
        # ComfyUI main.py apply_custom_paths: outputs of model-saving nodes are listed too, never default.
        for key, sub in (("checkpoints", "checkpoints"), ("text_encoders", "clip"), ("vae", "vae"),
                         ("diffusion_models", "diffusion_models"), ("loras", "loras")):
            paths[key].append(str(root / "output" / sub))
        for key, path in pack_model_dirs(models, paths).items():
            paths[key] = [path]
            exts[key] = frozenset()
        host = cls(root=root, paths=paths, exts=exts)
        yamls = [root / "extra_model_paths.yaml"] + [Path(p) for p in (extra_configs or [])]
        for y in yamls:
            if y.is_file():
                host.apply_extra_paths(y)
        return host

    def apply_extra_paths(self, yaml_path: Path) -> None:
        """As ComfyUI utils/extra_config.py `load_extra_path_config`."""
        # ComfyUI's own dependency; only needed when a yaml exists. PyYAML ships no type hints (types-PyYAML
        # is not a dependency): safe_load's answer is untrusted data, checked below.
        import yaml  # type: ignore[import-untyped]

        try:
            config = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"Cannot read {yaml_path}: {e}. Fix the YAML or move the file away.") from e
        if not isinstance(config, dict):
            raise ConfigError(f"{yaml_path} must hold sections of folder paths, got {type(config).__name__}")
        yaml_dir = yaml_path.parent.resolve()
        for section in config.values():
            if not isinstance(section, dict):
                continue
            base = section.get("base_path")
            if base:
                base = os.path.expandvars(os.path.expanduser(str(base)))
                if not os.path.isabs(base):
                    base = os.path.abspath(os.path.join(yaml_dir, base))
            is_default = bool(section.get("is_default", False))
            for key, value in section.items():
                if key in ("base_path", "is_default") or value is None:
                    continue
                folder = map_legacy(key)
                if folder == "custom_nodes":
                    continue
                for line in str(value).split("\n"):
                    line = line.strip()
                    if not line:
                        continue
                    full = os.path.join(base, line) if base else os.path.join(yaml_dir, line)
                    self.add_path(folder, os.path.normpath(full), is_default)

    def add_path(self, folder: str, path: str, is_default: bool = False) -> None:
        lst = self.paths.setdefault(folder, [])
        self.exts.setdefault(folder, frozenset())  # unknown keys list every file, like ComfyUI
        if path in lst:
            if is_default:
                lst.remove(path)
                lst.insert(0, path)
            return
        lst.insert(0, path) if is_default else lst.append(path)

    def with_object_info(self, info: dict[str, Any], source: str) -> "StandaloneHost":
        self.object_info = info
        self.node_source = source
        return self

    def folders(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.paths.items()}

    def models_dir(self) -> str | None:
        return str(self.root / "models")

    def extensions(self, folder: str) -> frozenset[str]:
        return self.exts.get(folder, frozenset())

    def node_types(self) -> set[str] | None:
        return set(self.object_info) if self.object_info is not None else None

    def node_defs(self) -> Mapping[str, Any] | None:
        if self.custom_nodes is not None and self.custom_nodes.is_dir():
            return WithPackDefs(self.object_info, self.custom_nodes)
        return self.object_info


@dataclass(eq=False, repr=False)
class FolderPathsHost(Record):
    """Inside ComfyUI: `folder_paths` (the module) and a callable giving the live node classes."""

    folder_paths: Any
    node_classes: Callable[[], dict[str, Any]] | None = None
    node_source: str = "host"
    import_failures: Callable[[], dict[str, str]] | None = None  # pack path -> why ComfyUI could not import it
    confine: Callable[[Callable[[], Any]], Any] | None = None  # runs a probe on ComfyUI's event loop thread
    _sources: PackSources | None = field(default=None, init=False, repr=False)
    # Node types the user's scans asked the folders of: all that GET /comfyfixer/folder_map may tell.
    scanned_types: set[str] = field(default_factory=set)

    def folders(self) -> dict[str, list[str]]:
        fp = self.folder_paths
        paths = {k: list(v[0]) for k, v in fp.folder_names_and_paths.items() if k != "custom_nodes"}
        models_dir = getattr(fp, "models_dir", None)
        if models_dir:
            paths.update({k: [p] for k, p in pack_model_dirs(Path(models_dir), paths).items()})
        return paths

    def extensions(self, folder: str) -> frozenset[str]:
        entry = self.folder_paths.folder_names_and_paths.get(map_legacy(folder))
        return frozenset(entry[1]) if entry else frozenset()

    def models_dir(self) -> str | None:
        models_dir = getattr(self.folder_paths, "models_dir", None)
        return models_dir if isinstance(models_dir, str) else None

    def node_types(self) -> set[str] | None:
        return set(self.node_classes()) if self.node_classes else None

    def pack_sources(self) -> PackSources:
        if self._sources is None:
            entry = self.folder_paths.folder_names_and_paths.get("custom_nodes")
            self._sources = PackSources(list(entry[0]) if entry else [])
        return self._sources

    def node_defs(self) -> Mapping[str, Any] | None:
        if not self.node_classes:
            return None
        return LiveNodeDefs(self.node_classes(), self.probe(), self.pack_sources(), self.scanned_types)

    def probe(self) -> FolderProbe:
        probe = probe_for(self.folder_paths)
        if self.confine is not None:
            probe.confine = self.confine
        return probe

    def failed_packs(self, node_types: list[str]) -> list[FailedPack]:
        """The installed packs that did not load and provide some of `node_types` (missing node types of a
        workflow), with ComfyUI's reason when its log said one."""
        if not self.node_classes or not node_types:
            return []
        try:
            readings = self.pack_sources().not_loaded(loaded_pack_roots(self.node_classes()))
            return failed_packs(readings, set(node_types), self.import_failures() if self.import_failures else {})
        except Exception as e:  # noqa: BLE001 - naming failed packs is a courtesy: the scan goes on without it
            log.warning("comfyfixer: could not tell which packs failed to import: %s", e)
            return []

    def folder_maps(self, types: list[str] | None = None, *, ask: bool = False) -> dict[str, Any]:
        """Node type -> the folders its inputs list (FolderMap JSON). `ask`: asked of the node classes now, all
        or `types` (a scan the user started: the CLI's --server). Else only the types scans already asked, from
        the probe's per-class cache, so a request anyone can send never makes a node run the probe."""
        if not self.node_classes:
            return {}
        classes = self.node_classes()
        self.probe()  # confined to ComfyUI's loop, as a scan's probes are
        if ask:
            asked = list(classes) if types is None else types
            self.scanned_types.update(t for t in asked if t in classes)
            return probe_all(self.folder_paths, classes, asked)
        return probe_all(self.folder_paths, classes, sorted(self.scanned_types))


def loaded_pack_roots(classes: dict[str, Any]) -> set[str]:
    """The real folders of the packs ComfyUI loaded node classes from."""
    roots = {pack_root(c) for c in {id(c): c for c in classes.values()}.values() if isinstance(c, type)}
    return {os.path.realpath(r) for r in roots if r}


def pack_model_dirs(models_dir: Path, registered: dict[str, list[str]]) -> dict[str, str]:
    """`models/<key>` folders no registered key covers: a pack registers its own key there (ipadapter,
    ultralytics, ...), and its files stay known (present, not downloaded again) while that pack is
    not loaded, as in the CLI and inside ComfyUI alike."""
    known = {os.path.normpath(p) for lst in registered.values() for p in lst}
    try:
        dirs = sorted(d for d in models_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return {}
    return {d.name: str(d) for d in dirs
            if os.path.normpath(str(d)) not in known and d.name not in registered and d.name not in NON_MODEL_FOLDERS}


def with_pack_folders(folders: dict[str, list[str]], models_dir: str | None,
                      keys: Iterable[str]) -> dict[str, list[str]]:
    """`folders` plus models/<key> for each of `keys` nothing registers: folders an installed pack's loader
    reads under ComfyUI's models/ itself (BrushNet lists models/inpaint), named by the pack's definition. Until
    the folder exists ComfyUI knows no such key; the loader still reads there, so that is where its files go
    (created by the download). Only a plain key names such a folder, never a path."""
    out = dict(folders)
    for key in keys:
        if models_dir and key not in out and key not in NON_MODEL_FOLDERS and "/" not in key \
                and map_legacy(key) == key and not unsafe_reason(key):
            out[key] = [os.path.join(models_dir, key)]
    return out


def model_folders(folders: dict[str, list[str]]) -> dict[str, list[str]]:
    """The registered folders that hold models: the only places anything is ever written."""
    return {k: v for k, v in folders.items() if k not in NON_MODEL_FOLDERS and v}


def write_location_reason(folders: dict[str, list[str]], directory: str, *,
                          require_registered: bool = True) -> str | None:
    """Why `directory` (a folder key, optionally with a plain subfolder: `loras/sdxl`) is not a place to
    write models, or None when it is one. Without `require_registered`, a plain key this ComfyUI does not
    have (a newer ComfyUI's, an uninstalled pack's) passes: only a write into it is refused."""
    reason = unsafe_reason(directory)
    if reason:
        return f"{reason}; only ComfyUI's model folders are written to"
    key, _, sub = normalise(directory).partition("/")
    key = map_legacy(key)
    if key in NON_MODEL_FOLDERS:
        return f"{key!r} is ComfyUI's folder for {'node packs' if key == 'custom_nodes' else key}, not a model folder"
    paths = model_folders(folders).get(key)
    if not paths and not require_registered:
        return None
    if not paths:
        return (f"ComfyUI has no model folder {key!r}: update ComfyUI or install the node pack that registers it, "
                "then restart ComfyUI (or put the file in place yourself)")
    if sub:
        base = os.path.realpath(paths[0])
        real = os.path.realpath(os.path.join(base, sub))
        if os.path.commonpath([base, real]) != base:
            return f"it resolves outside {paths[0]} (through a symlink)"
    return None


def file_type_reason(name: str, registered: Iterable[str]) -> str | None:
    """Why a file called `name` may not be saved into a folder listing the `registered` extensions, or None.

    A folder lists the extensions ComfyUI registered for its key; one registering none ("folder" for
    diffusers, every file for a pack's own key) takes the model formats. Never a script or a program:
    a shared workflow or a pasted link must not drop `evil.py` beside a pack's models.
    """
    ext = os.path.splitext(name)[1].lower()
    allowed = frozenset(e.lower() for e in registered if e.startswith(".")) or MODEL_EXTENSIONS
    if ext in allowed:
        return None
    what = f"a {ext} file" if ext else "a file without an extension"
    return f"{what} is not a type this folder lists ({', '.join(sorted(allowed))})"


def target_root(folders: dict[str, list[str]], directory: str, *, name: str | None = None,
                extensions: Callable[[str], Iterable[str]] | None = None) -> str:
    """Where a new file for `directory` goes: the real path of the folder's first registered path
    (extra_model_paths.yaml honoured), plus the subfolder; UnsafePath for anything else. With the file's
    `name`, its extension must be one the folder key lists (`extensions`: Host.extensions)."""
    reason = write_location_reason(folders, directory)
    if reason:
        raise UnsafeFolder(directory, reason)
    key, _, sub = normalise(directory).partition("/")
    key = map_legacy(key)
    if name is not None:
        bad_type = file_type_reason(name, extensions(key) if extensions else ())
        if bad_type:
            raise UnsafeFileType(name, directory, bad_type)
    return os.path.realpath(os.path.join(model_folders(folders)[key][0], sub))


class LiveNodeDefs(Mapping[str, Any]):
    """Node definitions asked of the node classes one type at a time, only for the types a workflow
    uses: INPUT_TYPES() of every installed pack (as /object_info does) can take seconds, and some
    packs list folders in it. Each carries the folders its inputs list, asked of the node (folder_probe),
    completed by what its pack's source says for inputs the probe cannot see (a list built at import).
    A node type of a pack that did not load (its import failed) gets the definition read from its source."""

    def __init__(self, classes: dict[str, Any], probe: FolderProbe | None = None, sources: PackSources | None = None,
                 asked: set[str] | None = None):
        self._classes = classes
        self._probe = probe
        self._sources = sources
        self._asked = asked  # records the types probed (FolderPathsHost.scanned_types)
        self._defs: dict[str, Any] = {}
        self._not_loaded: dict[str, Any] | None = None
        self._readings: dict[str, Reading] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._defs:
            self._defs[name] = self._live(name) if name in self._classes else self._from_source(name)
        if self._defs[name] is None:
            raise KeyError(name)
        return self._defs[name]

    def _live(self, name: str) -> Any:
        cls = self._classes[name]
        if self._asked is not None:
            self._asked.add(name)
        try:
            # Probe first: the plain call after it leaves whatever the pack caches in its real state.
            folder_map = self._probe.probe(cls) if self._probe else None
            answer = cls.INPUT_TYPES()
            outputs = getattr(cls, "RETURN_TYPES", None)
        except Exception:  # a broken custom node must not break our scan
            return None
        static = self._static_map(cls, name)
        folder_map = folder_map.with_static(static) if folder_map is not None else static
        node_def: dict[str, Any] = {"input": answer}
        if isinstance(outputs, (list, tuple)):  # as /object_info's "output": the scan asks for CONDITIONING
            node_def["output"] = [o for o in outputs if isinstance(o, str)]
        return with_folder_map(node_def, folder_map)

    def _static_map(self, cls: Any, name: str) -> Any:
        root = pack_root(cls) if self._sources is not None and isinstance(cls, type) else None
        if root is None or self._sources is None:
            return None
        root = os.path.realpath(root)
        if root not in self._readings:  # once per pack and scan (checking it changed stats every file)
            try:
                self._readings[root] = self._sources.pack(root)
            except Exception as e:  # noqa: BLE001 - a pack's source this reader trips on must not break a scan
                log.warning("comfyfixer: could not read the source of %s: %s", root, e)
                self._readings[root] = Reading()
        return folder_map_of(self._readings[root].defs.get(name))

    def _from_source(self, name: str) -> Any:
        if self._sources is None:
            return None
        if self._not_loaded is None:
            merged = Reading()
            try:
                for reading in self._sources.not_loaded(loaded_pack_roots(self._classes)).values():
                    merged.add(reading)
            except Exception as e:  # noqa: BLE001 - as above: the scan goes on without those definitions
                log.warning("comfyfixer: could not read the packs that did not load: %s", e)
            self._not_loaded = merged.defs
        return self._not_loaded.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __bool__(self) -> bool:  # definitions can come from packs' sources even with no class loaded
        return True


def load_object_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"Cannot read --object-info {path}: {e}. Save /object_info from a running ComfyUI.") from e
    if not isinstance(data, dict):
        raise ConfigError(f"--object-info {path} is not an /object_info answer (expected a JSON object)")
    return data


def ask_folder_maps(server: str, timeout: float = 60.0) -> Any:
    """What this pack, running in the ComfyUI at `server`, finds of its node types' folders (asked now, for
    this scan); None when that ComfyUI does not run this pack or does not answer: the static reading and
    keywords remain."""
    import requests

    url = server.rstrip("/") + FOLDER_MAP_ROUTE
    try:
        r = requests.post(url, json={}, headers={CLIENT_HEADER: "cli"}, timeout=timeout)
        r.raise_for_status()
        return r.json()
    except (requests.RequestException, ValueError) as e:
        log.info("no folder map from %s (%s): custom inputs' folders come from the packs' sources", url, e)
        return None


def fetch_object_info(server: str, timeout: float = 20.0) -> dict[str, Any]:
    import requests

    url = server.rstrip("/") + "/object_info"
    try:
        r = requests.get(url, timeout=timeout)
        r.raise_for_status()
        data = r.json()
    except (requests.RequestException, ValueError) as e:
        raise ConfigError(f"Cannot read node definitions from {url}: {e}. Is ComfyUI running there?") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{url} did not answer an /object_info object")
    return data

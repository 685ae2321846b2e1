"""What the user has: every model file under every registered folder path. No hashing at scan time."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field

from ..constants import MODEL_EXTENSIONS
from ..host.host import Host
from ..models import LocalFile
from ..record import Record
from .walk import printable, walk_files

log = logging.getLogger("fixer.read.inventory")


@dataclass(eq=False, repr=False)
class Inventory(Record):
    """The model files on disk, by folder, base name and size."""

    files: list[LocalFile] = field(default_factory=list)
    folder_paths: dict[str, list[str]] = field(default_factory=dict)
    _by_folder: dict[str, dict[str, LocalFile]] = field(default_factory=dict, repr=False)
    _by_basename: dict[str, list[LocalFile]] = field(default_factory=dict, repr=False)
    _by_size: dict[int, list[LocalFile]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        by_folder: dict[str, dict[str, LocalFile]] = defaultdict(dict)
        by_base: dict[str, list[LocalFile]] = defaultdict(list)
        by_size: dict[int, list[LocalFile]] = defaultdict(list)
        for f in self.files:
            by_folder[f.folder].setdefault(f.relpath, f)  # first registered path wins, as in get_full_path
            by_base[f.relpath.rsplit("/", 1)[-1].lower()].append(f)
            by_size[f.size].append(f)
        self._by_folder, self._by_basename, self._by_size = dict(by_folder), dict(by_base), dict(by_size)

    def lookup(self, folder: str, name: str) -> LocalFile | None:
        """The file a loader of `folder` would load for `name` (exact relative path)."""
        return self._by_folder.get(folder, {}).get(name.replace("\\", "/"))

    def named(self, basename: str) -> list[LocalFile]:
        """Files with this base name in any folder or subfolder, case-insensitive."""
        return list(self._by_basename.get(basename.rsplit("/", 1)[-1].lower(), []))

    def with_size(self, size: int) -> list[LocalFile]:
        return list(self._by_size.get(size, []))

    def folder_names(self) -> list[str]:
        return list(self.folder_paths)

    def relpaths(self, folder: str) -> set[str]:
        return set(self._by_folder.get(folder, {}))


def _model_files(root: str, exts: frozenset[str]) -> list[tuple[str, str, int]]:
    """(relpath, abspath, size) of the model files under root."""
    out: list[tuple[str, str, int]] = []
    for rel, e in walk_files(root, skip_dir=lambda name: name in (".git", ".cache", ".ipynb_checkpoints")):
        ext = os.path.splitext(e.name)[1].lower()
        if ext not in MODEL_EXTENSIONS and not (exts and ext in exts):
            continue
        if printable(rel) != rel:  # no workflow can name it, and no report can show it as it is
            log.warning("skipped the model file %s: its name is not valid UTF-8; rename it to use it",
                        printable(e.path))
            continue
        try:
            out.append((rel, e.path, e.stat().st_size))
        except OSError:
            continue  # gone since the listing
    return out


def build_inventory(host: Host) -> Inventory:
    folders = host.folders()
    files: list[LocalFile] = []
    for folder, paths in folders.items():
        exts = host.extensions(folder)
        for root in paths:
            if not os.path.isdir(root):
                continue
            files.extend(LocalFile(folder, rel, path, size) for rel, path, size in _model_files(root, exts))
    return Inventory(files=files, folder_paths=folders)

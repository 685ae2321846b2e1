"""Making one file appear under another name without copying its bytes: a hard link, else a symlink.

A hard link is the same file (deleting any name keeps the bytes under the others); a symlink is made only
where hard links cannot be (another file system, a share without them) and points at the real path.
Every change is one atomic step: a new name appears whole (link(2) and symlink(2) refuse an existing
name), and a duplicate is replaced by renaming a link made beside it, so a kill at any moment leaves the
duplicate or the link in place, never neither.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Literal

from ..read.names import confine, safe_relpath

LinkKind = Literal["hardlink", "symlink"]
TEMP_SUFFIX = ".cfs-link"  # the name a link has before it is renamed over a duplicate; never a model type
# Errors of link(2) meaning "not here": another device, a file system or share without hard links.
_NO_HARD_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES})


def place_of(root: str | os.PathLike[str], name: str) -> Path:
    """Where `name` (may hold a subfolder) lives under `root`: its folder confined to root, the name itself
    taken as it is (it may already be a symlink to a shared cache, which `confine` would refuse)."""
    rel = safe_relpath(name)
    folder, _, base = rel.rpartition("/")
    parent = confine(root, folder) if folder else Path(root).resolve()
    return parent / base


def link_new(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> LinkKind:
    """A new name `dest` for the file `src`; FileExistsError when `dest` exists (never overwritten)."""
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
        return "hardlink"
    except OSError as e:
        if e.errno not in _NO_HARD_LINK:
            raise
    os.symlink(os.path.realpath(src), dest)
    return "symlink"


def temp_name(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(f".{p.name}{TEMP_SUFFIX}")


def replace_with_link(keep: str | os.PathLike[str], dup: str | os.PathLike[str]) -> LinkKind:
    """`dup` becomes a link to `keep`: a link made under a temp name beside it, then renamed over it."""
    tmp = temp_name(dup)
    try:
        os.unlink(tmp)  # left by a run killed between making it and the rename
    except FileNotFoundError:
        pass
    kind = link_new(keep, tmp)
    try:
        os.replace(tmp, dup)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return kind

"""models.lock.json: every model the workflows use, pinned by folder, name, size and sha256, with where the
bytes can be had and how that was learned. Written from a ComfyUI root (`build_lockfile`); read back as
untrusted input (`parse_lockfile`): a lockfile comes from another machine, a colleague, the internet.

Reading checks each entry on its own and refuses only that entry: the name must be a plain relative path
(no `..`, no absolute path), the folder a model folder key and the file a type that folder lists (the
host's write-location check, at sync time), the size a positive integer under MAX_SIZE, the sha256 64 hex
digits; every URL must pass the transfer policy (https on an allowed host), others are dropped with a
reason. The file itself is bounded (MAX_BYTES, MAX_ENTRIES).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from .. import __version__
from ..errors import ErrorInfo, FixerError, LockfileInvalid
from ..models import ModelStatus
from ..read.names import safe_relpath
from ..state import now_iso
from ..transfer.policy import check_start_url, redact, strip_secret_query
from .cache import is_sha256
from .hash_index import HashIndex
from .shapes import FoundBy, LockEntry, LockFile

LOCKFILE_VERSION = 1
MAX_BYTES = 32 * 2**20
MAX_ENTRIES = 50_000
MAX_SIZE = 4 * 2**40  # no model file is bigger than 4 TiB; a bigger claim is a broken or hostile lockfile
MAX_URLS = 16
FOUND_BY: tuple[str, ...] = get_args(FoundBy)


@dataclass
class Refused:
    """One lockfile entry that will not be synced, and why."""

    label: str
    error: ErrorInfo


@dataclass
class ParsedLockfile:
    entries: list[LockEntry] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    dropped_urls: list[str] = field(default_factory=list)  # in words: which URL, why


# -- writing ------------------------------------------------------------------------------
def build_lockfile(report_models: Iterable[ModelStatus], index: HashIndex, known_urls: dict[str, list[str]],
                   identified: dict[str, str] | None = None) -> LockFile:
    """The lockfile of what a scan found: each present model hashed (the index makes it cheap), with the
    URLs known for its path (`known_urls`: path -> URLs, from downloads) or its reference (the workflow's
    models[] link), `identified` (sha256 -> Civitai link) for the rest. Models not on disk are listed
    as unresolved: a lockfile pins bytes it has seen."""
    entries: dict[tuple[str, str], LockEntry] = {}
    unresolved: list[str] = []
    for m in report_models:
        ref = m.ref
        label = f"{ref.folder or '?'}/{ref.name}"
        if m.state != "present" or m.local is None or not ref.folder:
            unresolved.append(label)
            continue
        sha = index.sha256(m.local.path)
        if sha is None:
            unresolved.append(label)
            continue
        urls, found_by = _sources(m, sha, known_urls, identified or {})
        workflows = sorted({u.workflow for u in ref.usages if getattr(u, "workflow", None)})
        key = (ref.folder, ref.name)
        if key not in entries:
            entries[key] = LockEntry(name=ref.name, folder=ref.folder, size=os.path.getsize(m.local.path),
                                     sha256=sha, urls=urls, found_by=found_by, workflows=workflows)
    models = sorted(entries.values(), key=lambda e: (e.folder, e.name))
    return LockFile(lockfile_version=LOCKFILE_VERSION, generated_by=f"comfy-fixer {__version__}", created=now_iso(),
                    models=models, unresolved=sorted(set(unresolved)))


def _sources(m: ModelStatus, sha: str, known_urls: dict[str, list[str]],
             identified: dict[str, str]) -> tuple[list[str], FoundBy]:
    assert m.local is not None
    urls: list[str] = []
    found_by: FoundBy = "present"
    for url, how in ([(u, "downloaded") for u in known_urls.get(m.local.path, [])]
                     + [(h.url, "workflow") for h in m.ref.hints if h.url]
                     + ([(identified[sha], "civitai")] if sha in identified else [])):
        clean = strip_secret_query(url)
        if clean not in urls:
            urls.append(clean)
            found_by = found_by if found_by != "present" else how  # type: ignore[assignment]
    return urls, found_by


# -- reading ------------------------------------------------------------------------------
def read_lockfile(path: str | os.PathLike[str], extra_hosts: list[str] | tuple[str, ...] = ()) -> ParsedLockfile:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise LockfileInvalid(f"{p} is {size} bytes, more than a lockfile can be ({MAX_BYTES}); "
                                  "check it is a models.lock.json")
        data = json.loads(p.read_bytes())
    except OSError as e:
        raise LockfileInvalid(f"Cannot read the lockfile {p}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise LockfileInvalid(f"{p} is not JSON ({e}); pass a models.lock.json written by comfy-fixer lock") from None
    return parse_lockfile(data, str(p), extra_hosts)


def parse_lockfile(data: Any, where: str, extra_hosts: list[str] | tuple[str, ...] = ()) -> ParsedLockfile:
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise LockfileInvalid(f"{where} is not a lockfile (no 'models' list); write one with comfy-fixer lock")
    version = data.get("lockfile_version")
    if version != LOCKFILE_VERSION:
        raise LockfileInvalid(f"{where} has lockfile_version {version!r}; this comfy-fixer reads version "
                              f"{LOCKFILE_VERSION}: update comfy-fixer or write the lockfile again")
    if len(data["models"]) > MAX_ENTRIES:
        raise LockfileInvalid(f"{where} lists {len(data['models'])} models, more than {MAX_ENTRIES}")
    out = ParsedLockfile()
    seen: dict[tuple[str, str], str] = {}
    for i, raw in enumerate(data["models"]):
        label = f"entry {i + 1}"
        try:
            entry = _entry(raw, label, extra_hosts, out.dropped_urls)
            key = (entry.folder, entry.name.lower())
            if key in seen and seen[key] != entry.sha256:
                raise LockfileInvalid(f"{entry.folder}/{entry.name} is listed twice with different sha256")
            if key not in seen:
                seen[key] = entry.sha256
                out.entries.append(entry)
        except FixerError as e:
            out.refused.append(Refused(label if not isinstance(raw, dict) else
                                       f"{str(raw.get('folder'))[:80]}/{str(raw.get('name'))[:200]}", e.info()))
    return out


def _entry(raw: Any, label: str, extra_hosts: list[str] | tuple[str, ...], dropped: list[str]) -> LockEntry:
    if not isinstance(raw, dict):
        raise LockfileInvalid(f"{label} is not an object")
    name, folder, size, sha = raw.get("name"), raw.get("folder"), raw.get("size"), raw.get("sha256")
    if not isinstance(name, str) or not isinstance(folder, str) or not name or not folder:
        raise LockfileInvalid(f"{label} has no name or folder")
    name = safe_relpath(name)  # UnsafePath for ../, absolute paths, drive letters
    if "/" in folder or folder != folder.strip() or len(folder) > 100:
        raise LockfileInvalid(f"{label}: {folder[:100]!r} is not a folder key (loras, checkpoints, ...)")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_SIZE:
        raise LockfileInvalid(f"{folder}/{name}: size {str(size)[:40]} is not a byte count between 1 and {MAX_SIZE}")
    if not isinstance(sha, str) or not is_sha256(sha.lower()):
        raise LockfileInvalid(f"{folder}/{name}: sha256 {str(sha)[:80]!r} is not 64 hex digits")
    urls: list[str] = []
    raw_urls = raw.get("urls")
    for url in (raw_urls if isinstance(raw_urls, list) else [])[:MAX_URLS]:
        if not isinstance(url, str):
            continue
        try:
            check_start_url(url, extra_hosts)
        except FixerError as e:
            dropped.append(f"{folder}/{name}: {redact(url)[:200]}: {e}")
            continue
        urls.append(strip_secret_query(url))
    found = raw.get("found_by")
    return LockEntry(name=name, folder=folder, size=size, sha256=sha.lower(), urls=urls,
                     found_by=found if found in FOUND_BY else "lockfile")

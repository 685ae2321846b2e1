"""Local disk: the wanted file already here under another folder, subfolder or case, or the same bytes
under another name. Offers linking it into place, or rewriting the workflow's widget value.

Hashing is the expensive part, so it happens only when there is a sha256 to compare with and only over
files of exactly the expected size; results are cached by path + size + mtime in the state directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..models import Candidate, LocalFile, ModelRef
from ..state import read_json, write_text_atomic
from .base import CONFIDENCE, Found, SearchRun
from .fuzzy import loose

log = logging.getLogger("fixer.sources.local")
CHUNK = 8 * 2**20


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """sha256 per file, valid while path, size and mtime are unchanged (the rule folder_paths uses for its cache)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._data: dict[str, dict[str, Any]] = read_json(path, {}) if path is not None else {}

    async def sha256(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        entry = self._data.get(path)
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return entry["sha256"]
        try:
            digest = await asyncio.to_thread(sha256_file, path)
        except OSError as e:
            log.warning("Cannot read %s to hash it: %s", path, e)
            return None
        self._data[path] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self._save()
        return digest

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_text_atomic(self.path, json.dumps(self._data))
        except OSError as e:
            log.warning("Cannot write the hash cache %s: %s", self.path, e)


def _offer(ref: ModelRef, f: LocalFile) -> str:
    """What the user can do with a local copy, in words."""
    where = f"{f.folder}/{f.relpath}"
    if ref.folder and f.folder == ref.folder:
        return (f"the file is already in {ref.folder} as '{f.relpath}': rewrite the workflow to that name, "
                f"or link it to '{ref.name}'")
    return f"the same file is at {where} ({f.path}): link or move it into {ref.folder or 'its folder'}"


def _candidate(ref: ModelRef, f: LocalFile, confidence: float, reason: str, sha: str | None = None) -> Candidate:
    ids: dict[str, Any] = {"local_folder": f.folder, "local_relpath": f.relpath}
    if ref.folder and f.folder == ref.folder:
        ids["rewrite_to"] = f.relpath
    return Candidate(source="local", filename=ref.name, folder=ref.folder or f.folder, confidence=confidence,
                     reason=reason, local_path=f.path, size=f.size, sha256=sha, ids=ids)


class LocalSource:
    name = "local"

    def __init__(self, hashes: HashCache):
        self.hashes = hashes

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        inv = run.inventory
        if inv is None:
            found.tried.append("local disk: no inventory (skipped)")
            return found
        want_sha = (ref.hint("hash") or "").lower() if (ref.hint("hash_type") or "sha256").lower() == "sha256" else ""
        hits = [f for f in inv.named(ref.basename) if not (f.folder == ref.folder and f.relpath == ref.name)]
        for f in hits:
            exact = f.relpath.rsplit("/", 1)[-1] == ref.basename
            conf = CONFIDENCE["local_name"] if exact else CONFIDENCE["local_case"]
            reason = _offer(ref, f) + ("" if exact else " (the name differs in case)")
            sha = None
            if len(want_sha) == 64:
                sha = await self.hashes.sha256(f.path)
                if sha != want_sha:
                    found.tried.append(f"local disk: {f.path} has the name but not the sha256 the workflow gives")
                    continue
                conf, reason = CONFIDENCE["local_content"], reason + "; sha256 matches the workflow's hash"
            found.candidates.append(_candidate(ref, f, conf, reason, sha))
        if len(want_sha) == 64 and not found.candidates:
            content = await self.by_content(ref, want_sha, None, run)
            if content:
                found.candidates.append(content)
        # Same name apart from case and separators, in the folder the loader reads: for the fuzzy source.
        wanted = loose(ref.basename)
        for f in getattr(inv, "files", []):
            base = f.relpath.rsplit("/", 1)[-1]
            if f.folder == ref.folder and base.lower() != ref.basename.lower() and loose(base) == wanted:
                run.saw(ref, base, _candidate(ref, f, CONFIDENCE["local_name"], _offer(ref, f)))
        found.tried.append(f"local disk: {len(hits)} file(s) named {ref.basename} in other places")
        return found

    async def by_content(self, ref: ModelRef, sha256: str, size: int | None, run: SearchRun) -> Candidate | None:
        """A local file with these bytes under any name: hashes only files of the expected size."""
        inv = run.inventory
        if inv is None or size is None:
            return None
        for f in inv.with_size(size):
            if await self.hashes.sha256(f.path) == sha256.lower():
                return _candidate(ref, f, CONFIDENCE["local_content"],
                                  f"same bytes (sha256) as {f.folder}/{f.relpath}: link or copy it into place",
                                  sha256.lower())
        return None

"""Local disk: the wanted file already here under another folder, subfolder or case, or the same bytes
under another name. Offers linking it into place, or rewriting the workflow's widget value.

Hashing is the expensive part, so it happens only when there is a sha256 to compare with and only over
files of exactly the expected size; the hashes live in the hash index (fixer.identity.hash_index, keyed by
device, inode, size and mtime), so a file the index knows is matched by its hash without being read, under
any name and in any folder.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..identity.hash_index import HashIndex
from ..models import Candidate, LocalFile, ModelRef
from .base import CONFIDENCE, Found, SearchRun
from .fuzzy import loose

log = logging.getLogger("fixer.sources.local")


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

    def __init__(self, index: HashIndex):
        self.index = index
        self._known: dict[str, list[LocalFile]] | None = None

    async def sha256_of(self, path: str) -> str | None:
        """A local file's sha256: the index's word for it as it is now, else hashed now (unpaced: a fix
        needs it) and remembered."""
        known = self.index.known(path)
        if known is not None:
            return known
        digest = await asyncio.to_thread(self.index.sha256, path)
        if digest is not None:
            await asyncio.to_thread(self.index.save)
        return digest

    def _known_by_sha(self, files: list[LocalFile]) -> dict[str, list[LocalFile]]:
        """The inventory's files the index already has a hash for, by hash: one stat each, once per source."""
        if self._known is None:
            self._known = {}
            for f in files:
                sha = self.index.known(f.path)
                if sha is not None:
                    self._known.setdefault(sha, []).append(f)
        return self._known

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        inv = run.inventory
        if inv is None:
            found.tried.append("local disk: no inventory (skipped)")
            return found
        want_sha = ref.stated_sha256 or ""
        hits = [f for f in inv.named(ref.basename) if not (f.folder == ref.folder and f.relpath == ref.name)]
        for f in hits:
            exact = f.relpath.rsplit("/", 1)[-1] == ref.basename
            conf = CONFIDENCE["local_name"] if exact else CONFIDENCE["local_case"]
            reason = _offer(ref, f) + ("" if exact else " (the name differs in case)")
            sha = None
            if len(want_sha) == 64:
                sha = await self.sha256_of(f.path)
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
        """A local file with these bytes under any name: one the hash index knows (no read), else one of the
        expected size hashed now."""
        inv = run.inventory
        if inv is None:
            return None
        want = sha256.lower()
        known = self._known_by_sha(getattr(inv, "files", []))
        candidates = known.get(want, []) + ([f for f in inv.with_size(size) if f not in known.get(want, [])]
                                            if size is not None else [])
        for f in candidates:
            if await self.sha256_of(f.path) == want:  # the index's word checked against the file as it is now
                return _candidate(ref, f, CONFIDENCE["local_content"],
                                  f"same bytes (sha256) as {f.folder}/{f.relpath}: link or copy it into place", want)
        return None

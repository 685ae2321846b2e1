"""What every source shares: the result type, the per-run search state, the confidence scale."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..config import SearchConfig
from ..constants import civitai_base_url, hf_endpoint
from ..models import Candidate, ModelRef
from ..upstream.civitai import key_headers, red_url
from ..upstream.http import HttpClient
from .family import ANCHOR_FOLDERS, chain_anchors, combine, family_of_name, ref_family
from .history import SearchHistory

T = TypeVar("T")

# How sure each kind of evidence makes us (0..1). In one place so the scale can be read as a whole;
# search.fuzzy_threshold (default 0.7) splits "download it" from "ask the user".
CONFIDENCE = {
    "local_content": 1.0,      # same sha256 as the file the workflow names
    "hash_match": 0.99,        # upstream file whose sha256 equals the workflow's hint
    "civitai_hash": 0.98,      # Civitai by-hash hit for a hash the workflow carries
    "embedded": 0.95,          # the workflow's own URL that ends in the file name
    "local_name": 0.95,        # the same file name elsewhere on this disk
    "local_case": 0.9,         # the same name elsewhere, differing only in case
    "catalog": 0.92,           # ComfyUI's official templates / Manager's model list name the file
    "hf_trusted": 0.9,         # exact file name in an official or first-party repo
    "civitai_name": 0.85,      # exact file name in a Civitai version found by name search
    "hf_only": 0.8,            # exact file name, no other repo disagrees, publisher not known
    "publisher": 0.85,         # exact file name in a repo the catalogs take that folder's files from
    "llm_confirmed": 0.75,     # an LLM proposal confirmed against the real API
    "reupload": 0.65,          # exact name, only in a re-upload named after the file
    "contested": 0.55,         # exact name, but repos of equal standing hold different bytes
    "generic_name": 0.5,       # names like model.safetensors say nothing about which model
    "wrong_folder": 0.6,       # found, but the source files it under another model folder
    "civitai_renamed": 0.82,   # a Civitai file whose name equals the wanted one through Civitai's renaming rules
    "kin_family": 0.6,         # made for a sibling fine-tune of the chain's base (SDXL LoRA, Pony chain)
    "other_family": 0.45,      # made for another family than the chain's, while a same-name file fits it
}

# File names that many unrelated models share; a match on them proves nothing.
GENERIC_STEMS = frozenset({
    "model", "pytorch_model", "diffusion_pytorch_model", "adapter_model", "config", "vae", "unet", "model_fp16",
    "diffusion_pytorch_model.fp16", "ema", "last", "final", "lora", "pytorch_lora_weights", "weights",
})


@dataclass
class Found:
    candidates: list[Candidate] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # words for a person, one line per search; never parsed
    unreached: set[str] = field(default_factory=set)  # services ("civitai", "huggingface") that could not be searched
    other_bytes: int = 0  # candidates refused: their sha256 is not the one the workflow states

    def extend(self, other: Found) -> None:
        self.candidates.extend(other.candidates)
        self.tried.extend(other.tried)
        self.unreached |= other.unreached
        self.other_bytes += other.other_bytes

    def note_reply(self, service: str, status: int) -> None:
        """A service that answered "wait" (429/503, after the retries) could not be searched right now."""
        if status in (429, 503):
            self.unreached.add(service)


@dataclass(frozen=True)
class SeenFile:
    """A file an upstream offered while searching for a model, under a name that differs from the wanted one."""

    filename_seen: str
    candidate: Candidate


class Source(Protocol):
    name: str

    async def find(self, ref: ModelRef, run: SearchRun) -> Found: ...


@dataclass
class SearchRun:
    config: SearchConfig
    secrets: dict[str, str]
    http: HttpClient
    history: SearchHistory
    inventory: Any = None  # fixer.read.inventory.Inventory (lookup/named/with_size)
    comfyui_root: Path | None = None
    state_dir: Path | None = None
    hf_endpoint: str = field(default_factory=hf_endpoint)
    civitai_base: str = field(default_factory=civitai_base_url)
    civitai_red: str | None = field(default_factory=red_url)  # asked when the configured domain finds nothing
    hashes: set[str] = field(default_factory=set)  # every sha256 hint of the run: one batch lookup on Civitai
    official_sha: dict[str, str] = field(default_factory=dict)  # file name (lower) -> sha256 a catalog records
    families: dict[str, str] = field(default_factory=dict)  # workflow -> model family (sources.family)
    # anchor key -> what resolving that checkpoint / diffusion model revealed of its family (the resolver
    # sets it when the anchor is final); anchors not being resolved (present) are known by name.
    anchor_families: dict[tuple[str, str], asyncio.Future[str | None]] = field(default_factory=dict)
    _memo: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)
    _seen: dict[tuple[str, str], list[SeenFile]] = field(default_factory=dict)
    _ways: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    async def once(self, key: Any, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make()` once per key for this run; concurrent callers share the one request."""
        fut = self._memo.get(key)
        if fut is None:
            fut = asyncio.ensure_future(make())
            self._memo[key] = fut
        return await asyncio.shield(fut)

    async def close(self) -> None:
        """Cancel shared requests nobody waits for any more (the consumer stopped early)."""
        pending = [f for f in self._memo.values() if not f.done()]
        for f in pending:
            f.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for f in self._memo.values():  # retrieve failures so asyncio does not log them as unhandled
            if f.done() and not f.cancelled():
                f.exception()

    def saw(self, ref: ModelRef, filename: str, candidate: Candidate) -> None:
        self._seen.setdefault(ref.key, []).append(SeenFile(filename, candidate))

    def seen_files(self, ref: ModelRef) -> list[SeenFile]:
        return self._seen.get(ref.key, [])

    def searched(self, ref: ModelRef, way: str) -> None:
        """Count one way of looking for `ref` (a query, a hash, a link), for "searched 7 ways"."""
        ways = self._ways.setdefault(ref.key, [])
        if way not in ways:
            ways.append(way)

    def ways(self, ref: ModelRef) -> list[str]:
        return self._ways.get(ref.key, [])

    def family(self, ref: ModelRef) -> str | None:
        """The model family `ref`'s chains are built for as far as known now (SD 1.5, SDXL, Flux ...): an
        anchor resolved in this run by what resolving it revealed, one still resolving or present on disk by
        its name; a reference the graph ties to no chain takes its workflow's. A checkpoint's own is its name's
        only (never another chain's). Good for searching; judging awaits `family_for`."""
        if ref.folder in ANCHOR_FOLDERS:
            return family_of_name(ref.name)
        anchors = chain_anchors(ref)
        if not anchors:
            return ref_family(ref, self.families)
        known = []
        for a in anchors:
            fut = self.anchor_families.get(a)
            done = fut is not None and fut.done() and not fut.cancelled()
            known.append(fut.result() if fut is not None and done else family_of_name(a[1]))
        return combine(known)

    async def family_for(self, ref: ModelRef) -> str | None:
        """`family`, after the anchors of `ref`'s chains being resolved in this run are final (dependency
        order: the anchor's answer informs its dependants). Sources await it after their searches, so the
        searching itself is never held up."""
        pending = [f for a in chain_anchors(ref) if (f := self.anchor_families.get(a)) is not None and not f.done()]
        if pending and ref.folder not in ANCHOR_FOLDERS:
            await asyncio.wait(pending)
        return self.family(ref)

    def civitai_headers(self) -> dict[str, str]:
        return key_headers(self.secrets)


def weak_folder(ref: ModelRef) -> bool:
    """The scan only guessed the folder from words of the name (or could not tell at all)."""
    return ref.folder is None or ref.folder_source == "keyword"


def settle_folder(ref: ModelRef, filed: str | None, conf: float, *, took: str, clash: str, unknown: str,
                  authoritative: bool = True) -> tuple[str | None, float, str]:
    """(folder, confidence, clause for the reason) when a source files the model under `filed`.

    The one rule every source follows: a folder the scan only guessed (`weak_folder`) gives way to the
    folder an authoritative source files the model under (`took` is said); a folder the workflow's node
    names stands, and a source filing the file elsewhere lowers the confidence to "wrong_folder" (`clash`);
    no folder from either side leaves the choice to the user (`unknown`). The clauses are the source's
    own words."""
    if ref.folder and filed and filed != ref.folder:
        if authoritative and weak_folder(ref):
            return filed, conf, took
        return ref.folder, min(conf, CONFIDENCE["wrong_folder"]), clash
    folder = ref.folder or filed
    if folder is None:
        return None, min(conf, CONFIDENCE["contested"]), unknown
    return folder, conf, ""


def stem(name: str) -> str:
    """The file name without folders and extension: `SDXL/foo.safetensors` -> `foo`."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    root, ext = os.path.splitext(base)
    return root if ext else base


def is_generic(name: str) -> bool:
    return stem(name).lower() in GENERIC_STEMS

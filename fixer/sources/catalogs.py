"""Offline catalogs that ship with ComfyUI installs: the official workflow templates (packages
`comfyui-workflow-templates*`, each template's `models[]` gives name -> url + folder) and
ComfyUI-Manager's `model-list.json`. Read where they are installed, loaded once per process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.metadata
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..constants import hf_offline, map_legacy
from ..models import Candidate, ModelRef
from ..upstream.source_spec import parse_hf_url
from .base import CONFIDENCE, Found, SearchRun, is_generic, settle_folder
from .fuzzy import loose
from .huggingface import COMFY_ORGS, gated_note, repo_gated, resolve_url

log = logging.getLogger("fixer.sources.catalogs")

# ComfyUI-Manager's `type` -> folder for save_path "default" (comfyui_manager/glob/constants.py model_dir_name_map).
MANAGER_TYPE_FOLDER = {
    "checkpoints": "checkpoints", "checkpoint": "checkpoints", "unclip": "checkpoints",
    "text_encoders": "text_encoders", "clip": "text_encoders", "vae": "vae", "lora": "loras",
    "t2i-adapter": "controlnet", "t2i-style": "controlnet", "controlnet": "controlnet", "clip_vision": "clip_vision",
    "gligen": "gligen", "upscale": "upscale_models", "embedding": "embeddings", "embeddings": "embeddings",
    "unet": "diffusion_models", "diffusion_model": "diffusion_models",
}


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    url: str
    folder: str | None
    sha256: str | None
    origin: str  # "templates <file>" / "ComfyUI-Manager model-list.json"
    mentions: int = 1  # how many catalog entries give this url+folder: the more, the more canonical


def walk_models(obj: Any) -> Iterator[dict[str, Any]]:
    """Every `models[]` entry with a name and url, top level or in node properties, subgraphs included."""
    if isinstance(obj, dict):
        models = obj.get("models")
        if isinstance(models, list):
            for m in models:
                if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("url"), str):
                    yield m
        for k, v in obj.items():
            if k != "models":
                yield from walk_models(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk_models(v)


VENV_DIRS = ("venv", ".venv", "python_embeded", "../python_embeded")  # portable Windows builds keep it beside


def template_files(comfyui_root: Path | None = None) -> list[Path]:
    """Template JSON files of every `comfyui-workflow-templates*` distribution: in this Python, and in
    the ComfyUI's own environment when the CLI runs from another one."""
    out: list[Path] = []
    if comfyui_root:
        for venv in VENV_DIRS:
            base = Path(comfyui_root) / venv
            for pkg in [*base.glob("lib/python3*/site-packages/comfyui_workflow_templates*"),
                        *base.glob("Lib/site-packages/comfyui_workflow_templates*")]:
                out += [p for p in pkg.glob("templates/*.json") if not p.name.startswith("index")]
    for dist in importlib.metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if not name.startswith("comfyui-workflow-templates"):
            continue
        for f in dist.files or []:
            p = str(f)
            if p.endswith(".json") and "/templates/" in p and not p.rsplit("/", 1)[-1].startswith("index"):
                out.append(Path(dist.locate_file(f)))
    return sorted(set(out))


def manager_lists(comfyui_root: Path | None) -> list[Path]:
    out: list[Path] = []
    try:
        dist = importlib.metadata.distribution("comfyui-manager")
        out += [Path(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith("comfyui_manager/model-list.json")]
    except importlib.metadata.PackageNotFoundError:
        pass
    if comfyui_root:
        for d in ("ComfyUI-Manager", "comfyui-manager"):
            p = Path(comfyui_root) / "custom_nodes" / d / "model-list.json"
            if p.is_file():
                out.append(p)
    return out


def _clean_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))  # drops ?download=true


def _manager_folder(m: dict[str, Any]) -> str | None:
    save = str(m.get("save_path") or "default").replace("\\", "/")
    if save == "default":
        return MANAGER_TYPE_FOLDER.get(str(m.get("type", "")).lower())
    if save.startswith("custom_nodes") or ".." in save or save.startswith("/"):
        return None
    return map_legacy(save.split("/")[0])


@functools.lru_cache(maxsize=8)
def load_index(template_paths: tuple[Path, ...], manager_paths: tuple[Path, ...]) -> dict[str, list[CatalogEntry]]:
    """lower-case file name -> entries. Cached per process: the packages do not change under a running ComfyUI."""
    index: dict[str, list[CatalogEntry]] = {}

    def add(e: CatalogEntry) -> None:
        bucket = index.setdefault(e.name.lower(), [])
        for i, x in enumerate(bucket):
            if x.url == e.url and x.folder == e.folder:
                bucket[i] = dataclasses.replace(x, mentions=x.mentions + 1)
                return
        bucket.append(e)

    for p in template_paths:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.debug("skipping template %s: %s", p, err)
            continue
        for m in walk_models(data):
            sha = m.get("hash") if str(m.get("hash_type", "")).lower() == "sha256" else None
            folder = map_legacy(m["directory"]) if isinstance(m.get("directory"), str) else None
            add(CatalogEntry(m["name"], _clean_url(m["url"]), folder, sha, f"ComfyUI template {p.stem}"))
    for p in manager_paths:
        try:
            models = json.loads(p.read_text(encoding="utf-8")).get("models", [])
        except (OSError, ValueError, AttributeError) as err:
            log.warning("Cannot read ComfyUI-Manager's model list %s: %s", p, err)
            continue
        for m in models:
            if isinstance(m, dict) and m.get("filename") and m.get("url"):
                add(CatalogEntry(m["filename"], _clean_url(m["url"]), _manager_folder(m), None,
                                 "ComfyUI-Manager model-list.json"))
    return index


@functools.lru_cache(maxsize=8)
def loose_index(template_paths: tuple[Path, ...], manager_paths: tuple[Path, ...]) -> dict[str, list[CatalogEntry]]:
    """Entries by name with case and separators folded, for the fuzzy source."""
    out: dict[str, list[CatalogEntry]] = {}
    for entries in load_index(template_paths, manager_paths).values():
        for e in entries:
            out.setdefault(loose(e.name), []).append(e)
    return out


class CatalogSource:
    name = "catalog"

    def __init__(self, comfyui_root: Path | None = None):
        self.templates = tuple(template_files(comfyui_root))
        self.managers = tuple(manager_lists(comfyui_root))

    def index(self) -> dict[str, list[CatalogEntry]]:
        return load_index(self.templates, self.managers)

    def loose_index(self) -> dict[str, list[CatalogEntry]]:
        return loose_index(self.templates, self.managers)

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        # Parsing ~650 templates takes a fraction of a second: once per process, off the event loop.
        index = await run.once(("catalog_index",), lambda: asyncio.to_thread(self.index))
        entries = [e for e in index.get(ref.basename.lower(), [])]
        near = await run.once(("catalog_loose_index",), lambda: asyncio.to_thread(self.loose_index))
        for e in near.get(loose(ref.basename), []):
            if e.name.lower() != ref.basename.lower():
                run.saw(ref, e.name, self._candidate(ref, run, e, CONFIDENCE["catalog"], f"{e.origin} lists {e.name}"))
        found.tried.append(f"offline catalogs: {len(self.templates)} ComfyUI templates, {len(self.managers)} "
                           f"Manager list(s), {len(entries)} entries named {ref.basename}")
        if not entries:
            return found
        folders = {e.folder for e in entries if e.folder}
        generic = is_generic(ref.basename)
        for e in entries:
            conf = CONFIDENCE["generic_name"] if generic else CONFIDENCE["catalog"]
            reason = f"{e.origin} lists {e.name}"
            if e.name != ref.basename:
                conf, reason = min(conf, CONFIDENCE["local_case"]), reason + " (name differs in case)"
            if not ref.folder and len(folders) > 1:
                conf = min(conf, CONFIDENCE["contested"])
                reason += f"; catalogs disagree on its folder ({', '.join(sorted(folders))})"
            found.candidates.append(self._candidate(ref, run, e, conf, reason))
        await mark_gated(run, found.candidates)  # near names are left unasked: a request each for a mere hint
        return found

    def _candidate(self, ref: ModelRef, run: SearchRun, e: CatalogEntry, conf: float, reason: str) -> Candidate:
        folder, conf, note = settle_folder(
            ref, e.folder, conf, took=f" for {e.folder} (the workflow's node does not say where it loads from)",
            clash=f" for {e.folder}, but the workflow loads it from {ref.folder}",
            unknown="; the model folder is unknown")
        reason += note
        url, ids = e.url, {"origin": e.origin, "downloads": e.mentions}
        hf = parse_hf_url(e.url, run.hf_endpoint)
        if hf:
            url = resolve_url(run.hf_endpoint, hf[0], hf[2], hf[1])  # honour HF_ENDPOINT as Manager does
            ids.update(repo_id=hf[0], path=hf[2], revision=hf[1])
        return Candidate(source="catalog", filename=ref.name, folder=folder, confidence=conf, reason=reason,
                         url=url, sha256=e.sha256, ids=ids)


async def mark_gated(run: SearchRun, candidates: list[Candidate]) -> None:
    """Mark the catalog's Hugging Face files in gated repos as the Hugging Face source does, so that the
    need for a token and the license is known at review, not learned from a 401. Asked only without a
    token (with one the gate does not stop the download), one request per repo per run, shared with the
    Hugging Face source. ComfyUI's own orgs publish their repackages ungated, and at equal confidence the
    resolver prefers them: a file they also offer costs no request."""
    if hf_offline() or run.secrets.get("HF_TOKEN"):
        return
    comfy = [c.confidence for c in candidates if c.ids.get("repo_id", "").split("/")[0] in COMFY_ORGS]
    ask = [c for c in candidates if c.ids.get("repo_id") and not any(x >= c.confidence for x in comfy)]
    repos = sorted({c.ids["repo_id"] for c in ask})
    answers = await asyncio.gather(*(repo_gated(run, r) for r in repos), return_exceptions=True)
    gated = set()
    for repo_id, a in zip(repos, answers):
        # Unreachable means unknown: the download's own 401 still says what to do.
        if isinstance(a, BaseException) and not isinstance(a, (aiohttp.ClientError, TimeoutError)):
            raise a
        if a is True:
            gated.add(repo_id)
    for c in ask:
        if c.ids["repo_id"] in gated:
            c.gated, c.needs_token = True, "HF_TOKEN"
            c.reason += "; " + gated_note(run, c.ids["repo_id"])

"""Offline catalogs that ship with ComfyUI installs: the official workflow templates (packages
`comfyui-workflow-templates*`, each template's `models[]` gives name -> url + folder), ComfyUI-Manager's
`model-list.json`, and the model lists other installed packs ship in Manager's format. Read where they are
installed, loaded once per process.

They also tell where well-known files live: `PublisherSource` lists, for a file nothing else found, the
Hugging Face repos the catalogs take files of the same folder from (plus the homes of well-known annotator
and upscaler weights), and picks the exact name from those trees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.metadata
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..constants import hf_offline, map_legacy
from ..models import Candidate, ModelRef
from ..upstream.hub import gated_note, lfs_facts, paths_info, repo_gated, repo_tree, resolve_url
from ..upstream.source_spec import parse_hf_url
from .base import CONFIDENCE, Found, SearchRun, is_generic, settle_folder
from .fuzzy import loose
from .huggingface import COMFY_ORGS

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


# The ComfyUI's own Python: a venv inside it or beside it (comfy-cli and many guides make the venv next to the
# ComfyUI folder), the portable Windows build's python_embeded beside ComfyUI/.
VENV_DIRS = ("venv", ".venv", "python_embeded", "../venv", "../.venv", "../python_embeded")


def template_files(comfyui_root: Path | None = None) -> list[Path]:
    """Template JSON files of every `comfyui-workflow-templates*` distribution: in this Python, and in
    the ComfyUI's own environment when the CLI runs from another one."""
    out: list[Path] = []
    if comfyui_root:
        root = Path(comfyui_root).resolve()
        bases = [(root / venv).resolve() for venv in VENV_DIRS] + running_comfyui_prefixes(root)
        for base in bases:
            for pkg in [*base.glob("lib/python3*/site-packages/comfyui_workflow_templates*"),
                        *base.glob("Lib/site-packages/comfyui_workflow_templates*")]:
                out += [p for p in pkg.glob("templates/*.json") if not p.name.startswith("index")]
    for dist in importlib.metadata.distributions():
        if not _distribution_name(dist).startswith("comfyui-workflow-templates"):
            continue
        for f in dist.files or []:
            p = str(f)
            if p.endswith(".json") and "/templates/" in p and not p.rsplit("/", 1)[-1].startswith("index"):
                out.append(Path(str(dist.locate_file(f))))
    return sorted(set(out))


def _distribution_name(dist: importlib.metadata.Distribution) -> str:
    """The distribution's name, lower case with '-' for '_': from its .dist-info folder's name where the finder
    knows it (`_normalized_name`), else from its METADATA. Parsing every installed package's METADATA (an email
    parser per file, 150 of them here) cost ~0.17 s per call, twice in each run that resolves models."""
    quick = getattr(dist, "_normalized_name", None)
    if isinstance(quick, str) and quick:
        return quick.lower().replace("_", "-")
    # get_all: PackageMetadata's typed surface on 3.10 (the first value is what .get("Name") gives).
    return str((dist.metadata.get_all("Name") or [""])[0] or "").lower().replace("_", "-")


PACK_LISTS = ("model-list.json", "model_list.json")  # ComfyUI-Manager's format, shipped by some packs too


MAX_PROCESSES = 4096  # a bound on the process table walk


def running_comfyui_prefixes(comfyui_root: Path) -> list[Path]:
    """The Python environments of ComfyUI processes running from `comfyui_root` (Linux /proc; elsewhere none):
    a ComfyUI started from a conda env or a venv somewhere else keeps its template packages there. The prefix
    is the one its interpreter was started as (a venv's python is a link to the base one, so not its target),
    else the VIRTUAL_ENV / CONDA_PREFIX it runs in. Only this user's processes are readable anyway."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    main = (comfyui_root / "main.py").resolve()
    out: list[Path] = []
    for n, entry in enumerate(proc.iterdir()):
        if n >= MAX_PROCESSES:
            break
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()[:65536].split(b"\0")
            if not any(a.endswith(b"main.py") for a in argv):
                continue
            cwd = Path(os.readlink(entry / "cwd"))
            args = [os.fsdecode(a) for a in argv if a]
            if not any((cwd / a).resolve() == main for a in args if a.endswith("main.py")):
                continue
            exe = Path(args[0]) if os.path.isabs(args[0]) else None
            if exe is not None and exe.parent.name in ("bin", "Scripts"):
                out.append(exe.parent.parent)
            env = dict(x.split(b"=", 1) for x in (entry / "environ").read_bytes()[:262144].split(b"\0") if b"=" in x)
            out += [Path(os.fsdecode(env[k])) for k in (b"VIRTUAL_ENV", b"CONDA_PREFIX") if env.get(k)]
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or another user's
    return list(dict.fromkeys(out))


def manager_lists(comfyui_root: Path | None) -> list[Path]:
    """ComfyUI-Manager's model list (its package or its custom node folder) and every installed pack's own
    list in the same format."""
    out: list[Path] = []
    try:
        dist = importlib.metadata.distribution("comfyui-manager")
        out += [Path(str(dist.locate_file(f))) for f in dist.files or []
                if str(f).endswith("comfyui_manager/model-list.json")]
    except importlib.metadata.PackageNotFoundError:
        pass
    if comfyui_root:
        packs = Path(comfyui_root) / "custom_nodes"
        try:
            dirs = sorted(d for d in packs.iterdir() if d.is_dir()) if packs.is_dir() else []
        except OSError:
            dirs = []
        out += [p for d in dirs[:MAX_PACKS] for name in PACK_LISTS if (p := d / name).is_file()]
    return out


MAX_PACKS = 2000  # custom node folders looked into for a model list


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")  # a pack's list may give a file's sha256 (Manager's own gives none)
MAX_LIST_BYTES = 16 * 2**20  # a pack's model list is a few hundred KB; a bigger one is not read


def _list_origin(p: Path) -> str:
    return ("ComfyUI-Manager model-list.json" if p.parent.name.lower() in ("comfyui_manager", "comfyui-manager")
            else f"the {p.parent.name} pack's {p.name}")


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
            if p.stat().st_size > MAX_LIST_BYTES:
                raise ValueError(f"larger than {MAX_LIST_BYTES} bytes")
            models = json.loads(p.read_text(encoding="utf-8")).get("models", [])
            models = models if isinstance(models, list) else []
        except (OSError, ValueError, AttributeError) as err:
            log.warning("Cannot read the model list %s: %s", p, err)
            continue
        for m in models:
            if isinstance(m, dict) and isinstance(m.get("filename"), str) and isinstance(m.get("url"), str) \
                    and m["filename"] and m["url"]:
                sha = m.get("sha256") if isinstance(m.get("sha256"), str) and _SHA256.fullmatch(m["sha256"]) else None
                add(CatalogEntry(m["filename"], _clean_url(m["url"]), _manager_folder(m), sha and sha.lower(),
                                 _list_origin(p)))
    return index


@functools.lru_cache(maxsize=8)
def loose_index(template_paths: tuple[Path, ...], manager_paths: tuple[Path, ...]) -> dict[str, list[CatalogEntry]]:
    """Entries by name with case and separators folded, for the fuzzy source."""
    out: dict[str, list[CatalogEntry]] = {}
    for entries in load_index(template_paths, manager_paths).values():
        for e in entries:
            out.setdefault(loose(e.name), []).append(e)
    return out


class CatalogFiles:
    """The catalog files of one ComfyUI, found on first use and then kept: finding them walks the installed
    distributions and the process table (~10-25 ms), which a run whose models all have the workflow's own
    links never needs. One is shared by the sources that read the catalogs."""

    def __init__(self, comfyui_root: Path | None = None):
        self.comfyui_root = comfyui_root

    @functools.cached_property
    def templates(self) -> tuple[Path, ...]:
        return tuple(template_files(self.comfyui_root))

    @functools.cached_property
    def managers(self) -> tuple[Path, ...]:
        return tuple(manager_lists(self.comfyui_root))


class CatalogSource:
    name = "catalog"

    def __init__(self, files: CatalogFiles):
        self.files = files

    def index(self) -> dict[str, list[CatalogEntry]]:
        return load_index(self.files.templates, self.files.managers)

    def loose_index(self) -> dict[str, list[CatalogEntry]]:
        return loose_index(self.files.templates, self.files.managers)

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        # Parsing ~650 templates takes a fraction of a second: once per process, off the event loop.
        index = await run.once(("catalog_index",), lambda: asyncio.to_thread(self.index))
        entries = [e for e in index.get(ref.basename.lower(), [])]
        near = await run.once(("catalog_loose_index",), lambda: asyncio.to_thread(self.loose_index))
        for e in near.get(loose(ref.basename), []):
            if e.name.lower() != ref.basename.lower():
                run.saw(ref, e.name, self._candidate(ref, run, e, CONFIDENCE["catalog"], f"{e.origin} lists {e.name}"))
        found.tried.append(f"offline catalogs: {len(self.files.templates)} ComfyUI templates, "
                           f"{len(self.files.managers)} Manager list(s), {len(entries)} entries named {ref.basename}")
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
        await self._check_on_hub(ref, run, found)
        await mark_gated(run, found.candidates)  # near names are left unasked: a request each for a mere hint
        return found

    @staticmethod
    async def _check_on_hub(ref: ModelRef, run: SearchRun, found: Found) -> None:
        """Ask the Hub for each catalog file's facts (one request each, shared with the Hugging Face source): its
        size and sha256 (the review counts them); a file the Hub says is gone (its repo deleted, like SD 2.1's)
        is no candidate, and the sha256 the catalog records for it then judges the re-uploads by their bytes.
        ComfyUI's own orgs keep what their catalogs name: their files cost no request (as for the gate)."""
        if hf_offline() or not run.config.huggingface:
            return
        hub = [c for c in found.candidates if c.ids.get("repo_id") and c.ids["repo_id"].split("/")[0] not in COMFY_ORGS]
        infos = await asyncio.gather(*(paths_info(run, c.ids["repo_id"], c.ids["path"], c.ids.get("revision") or "main")
                                       for c in hub), return_exceptions=True)
        for c, info in zip(hub, infos):
            if isinstance(info, BaseException):
                if not isinstance(info, (aiohttp.ClientError, TimeoutError)):
                    raise info
                continue  # unknown: the download's own answer still says what to do
            if info.entry:
                size, sha = lfs_facts(info.entry)
                if c.sha256 and sha and c.sha256 != sha:
                    c.confidence = min(c.confidence, CONFIDENCE["contested"])
                    c.reason += "; the file there now has other bytes than the catalog records"
                c.size, c.sha256 = c.size or size, c.sha256 or sha
            elif info.gone:
                found.candidates.remove(c)
                found.tried.append(f"{c.ids['origin']} lists {ref.basename} in {c.ids['repo_id']}, which no longer "
                                   f"has it: {info.error}")
                if c.sha256:
                    run.official_sha.setdefault(ref.basename.lower(), c.sha256)

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
        else:
            url = on_civitai_base(url, run.civitai_base)
        return Candidate(source="catalog", filename=ref.name, folder=folder, confidence=conf, reason=reason,
                         url=url, sha256=e.sha256, ids=ids)


CIVITAI_HOSTS = frozenset({"civitai.com", "www.civitai.com"})


def on_civitai_base(url: str, base: str) -> str:
    """A catalog's civitai.com link on the Civitai the user points at (CIVITAI_BASE_URL), as HF links honour
    HF_ENDPOINT: a mirror or a proxy then serves every Civitai download alike."""
    parts = urlsplit(url)
    if (parts.hostname or "").lower() not in CIVITAI_HOSTS:
        return url
    b = urlsplit(base.rstrip("/"))
    return urlunsplit((b.scheme, b.netloc, b.path + parts.path, parts.query, ""))


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


# Homes of well-known weights that no catalog lists by folder: annotator bundles hold upscalers and
# detectors under their original names (`RealESRGAN_x4plus.pth` in lllyasviel/Annotators).
IMPLIED_PUBLISHERS: dict[str, tuple[str, ...]] = {
    "upscale_models": ("lllyasviel/Annotators",),
    "controlnet": ("lllyasviel/Annotators",),
}
PUBLISHERS_PER_FOLDER = 6  # tree listings per model at most: each is a request or a few at the Hub's pace


@functools.lru_cache(maxsize=8)
def publishers(template_paths: tuple[Path, ...], manager_paths: tuple[Path, ...]) -> dict[str, tuple[str, ...]]:
    """folder -> Hugging Face repos the catalogs take that folder's files from, most used first."""
    counts: dict[str, dict[str, int]] = {}
    for entries in load_index(template_paths, manager_paths).values():
        for e in entries:
            hf = parse_hf_url(e.url, "https://huggingface.co")
            if hf and e.folder:
                by_repo = counts.setdefault(e.folder, {})
                by_repo[hf[0]] = by_repo.get(hf[0], 0) + e.mentions
    return {f: tuple(sorted(c, key=lambda r: (-c[r], r))) for f, c in counts.items()}


class PublisherSource:
    """The long tail: a file the searches did not find, looked for by name in the trees of the repos its
    folder implies (what the catalogs take that folder's files from, and well-known annotator homes)."""

    name = "huggingface"

    def __init__(self, files: CatalogFiles):
        self.files = files

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        if not ref.folder or hf_offline() or is_generic(ref.basename):
            return found
        learnt = await run.once(("catalog_publishers",), lambda: asyncio.to_thread(
            publishers, self.files.templates, self.files.managers))
        repos = list(dict.fromkeys([*IMPLIED_PUBLISHERS.get(ref.folder, ()), *learnt.get(ref.folder, ())]))
        repos = repos[:PUBLISHERS_PER_FOLDER]
        if not repos:
            return found
        trees = await asyncio.gather(*(repo_tree(run, r, ref.name) for r in repos), return_exceptions=True)
        want = ref.basename.lower()
        hits: list[tuple[str, str]] = []
        for repo_id, paths in zip(repos, trees):
            if isinstance(paths, BaseException):
                if not isinstance(paths, (aiohttp.ClientError, TimeoutError)):
                    raise paths
                continue
            hits += [(repo_id, p) for p in paths if p.rsplit("/", 1)[-1].lower() == want]
        run.searched(ref, f"the trees of {len(repos)} repos {ref.folder} files come from")
        found.tried.append(f"publishers of {ref.folder} ({', '.join(repos)}): {len(hits)} hold {ref.basename}")
        facts = await asyncio.gather(*(paths_info(run, r, p) for r, p in hits))
        shas = {lfs_facts(info.entry)[1] for info in facts if info.entry}
        for (repo_id, path), info in zip(hits[:5], facts):
            size, sha = lfs_facts(info.entry) if info.entry else (None, None)
            conf = CONFIDENCE["publisher"] if len(shas) <= 1 else CONFIDENCE["contested"]
            exact = path.rsplit("/", 1)[-1] == ref.basename
            reason = (f"exact file name{'' if exact else ' apart from case'} in {repo_id}, where the catalogs take "
                      f"{ref.folder} files from: {path}"
                      + ("" if len(shas) <= 1 else "; these repos hold different bytes under this name"))
            found.candidates.append(Candidate(
                source="huggingface", filename=ref.name, folder=ref.folder,
                confidence=conf if exact else min(conf, CONFIDENCE["local_case"]), reason=reason,
                url=resolve_url(run.hf_endpoint, repo_id, path), size=size, sha256=sha,
                ids={"repo_id": repo_id, "path": path, "revision": "main", "publisher": True}))
        await mark_gated(run, found.candidates)
        return found

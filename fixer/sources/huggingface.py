"""Hugging Face: find repos with words of the file name, match the exact file name in each repo's file
list (subfolders included), read sha256/size from paths-info, and weigh repos that disagree.

The Hub's search matches substrings of repo ids only, never file names (docs/upstream.md). So:
- ComfyUI's own orgs (Comfy-Org, comfyanonymous) are listed once per run with their file lists; they
  hold most files workflows name, often under ids that share no word with the file (`t5xxl_fp16`);
- the distinctive words of the name are searched (`hidream` in `clip_l_hidream`, `wan` in
  `wan2.1_...`, `stable-diffusion-xl` for `sd_xl_...`); only when such an answer fills a whole page
  (always, on the real Hub, for popular words) are the narrow terms asked too: the whole stem
  (exact-name mirrors) and the leading words (`wan_2.1` finds `Comfy-Org/Wan_2.1_ComfyUI_repackaged`).
- what the folder tells is searched too (SAM files sit in `*/segment-anything`, YOLO detectors in
  `*/adetailer`), and the known publishers of the workflow's model family are listed (HF by kind);
`full=true` makes a search return each repo's file list, so a search costs one request; a tree
listing is the fallback for a server that leaves the lists out.

The Hub's API calls are fixer.upstream.hub's (the one Hugging Face client).

Repos holding the same name with different bytes are weighed by standing (official or first-party
publisher > another publisher > a re-upload named after the file or marked as a mirror) and, between
equals, by ten times the downloads; otherwise the choice goes to the user.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from ..constants import CORE_FOLDERS, hf_offline, map_legacy
from ..errors import FixerError
from ..models import Candidate, ModelRef
from ..upstream.hub import (
    OFFLINE_NOTE,
    SEARCH_LIMIT,
    gated_note,
    lfs_facts,
    list_models,
    org_repos,
    paths_info,
    query_words,
    repo_tree,
    resolve_url,
)
from ..upstream.source_spec import parse_hf_url  # noqa: F401  (the one HF URL reader; tests import it from here)
from .base import CONFIDENCE, Found, SearchRun, is_generic, settle_folder, stem, weak_folder
from .family import family_of_name, family_of_tags, fit, mismatch_words
from .fuzzy import likeness

log = logging.getLogger("fixer.sources.huggingface")

# Publishers whose repos are the origin of the files ComfyUI workflows name (ComfyUI's own repackaging
# orgs first). A file there is the reference copy; same-named files elsewhere are mirrors or decoys.
TRUSTED_ORGS = frozenset(o.lower() for o in (
    "Comfy-Org", "comfyanonymous", "black-forest-labs", "stabilityai", "Lightricks", "Kijai", "lightx2v", "Wan-AI",
    "Qwen", "tencent", "city96", "lllyasviel", "h94", "xinsir", "madebyollin", "openai", "google", "laion",
    "runwayml", "stable-diffusion-v1-5", "Kwai-Kolors", "alibaba-pai", "ByteDance", "InstantX", "Shakker-Labs",
    "XLabs-AI", "guoyww", "THUDM", "hunyuanvideo-community", "microsoft", "facebook", "nvidia", "deepseek-ai",
    "ostris", "lodestones", "kandinskylab", "DiffSynth-Studio", "FastVideo", "VAST-AI", "Tencent-Hunyuan",
))
COMFY_ORGS = ("Comfy-Org", "comfyanonymous")  # ComfyUI's own repackaging orgs
# Words of a file name that say nothing about which repo holds it.
STOPWORDS = frozenset({
    "vae", "clip", "model", "models", "safetensors", "text", "encoder", "encoders", "lora", "loras", "fp16", "bf16",
    "fp32", "fp8", "scaled", "mixed", "e4m3fn", "e5m2", "pruned", "ema", "only", "diffusion", "pytorch", "the",
    "comfy", "comfyui", "unet", "weights", "base", "dev", "full", "fp8mixed", "fp8_scaled", "int8", "fp4", "nvfp4",
    "image", "video", "edit", "distilled", "step", "steps", "high", "low", "noise", "repackaged", "split", "files",
    "gguf", "q4", "q8", "v1", "v2", "v3", "lite", "large", "small", "medium", "turbo", "upscaler", "control", "and",
    "t2v", "i2v", "ti2v", "s2v", "t2i", "i2i", "v2v", "fun", "inp", "fp8e4m3fn", "scaled_fp8", "with", "for", "from",
    "all", "one", "proj", "pretrained", "rank", "convrot", "distill", "cfg", "int",
})
TREE_FALLBACK = 8  # Comfy-Org has a few hundred repos; their file lists are what most workflows name
FOLDER_WORDS = {**{f: f for f in CORE_FOLDERS}, "unet": "diffusion_models", "clip": "text_encoders",
                "lora": "loras", "upscale": "upscale_models", "embedding": "embeddings"}


# ---------------------------------------------------------------- URLs ---------------------------------

_FOLDER_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def folder_from_path(path: str, repo_id: str = "") -> str | None:
    """`split_files/vae/ae.safetensors` -> vae. Repos file models under ComfyUI folder names; in ComfyUI's
    own repackaging orgs the folder holding the file *is* the folder key (`geometry_estimation/...`),
    also for folders that custom nodes register."""
    dirs = [d for d in path.split("/")[:-1] if d != "split_files"]
    for part in reversed(dirs):
        folder = FOLDER_WORDS.get(part.lower())
        if folder:
            return map_legacy(folder)
    if repo_id and dirs and repo_id.split("/")[0] in COMFY_ORGS and _FOLDER_KEY.match(dirs[-1]):
        return dirs[-1]
    return None


# Common abbreviations in file names and the words publishers use in repo ids.
ALIASES = {"sdxl": ["stable-diffusion-xl"], "sd_xl": ["stable-diffusion-xl", "sdxl"],
           "svd": ["stable-video-diffusion"], "sd3": ["stable-diffusion-3"], "sd3.5": ["stable-diffusion-3.5"],
           "sd_1.5": ["stable-diffusion-v1-5"], "sd15": ["stable-diffusion-v1-5"], "sd2": ["stable-diffusion-2"]}
# Repo-name marks of a derivative copy: "<model>-mirror", "<model>_backup", "<model>-GGUF" holding no .gguf ...
_REUPLOAD = re.compile(r"(?:^|[\s_\-.])(mirror|backup|re-?upload|copy|archive|gguf|quants?|fp8|fp16|bf16|nf4|int8)"
                       r"(?:$|[\s_\-.])", re.I)


def standing(repo_id: str, filename: str) -> int:
    """3 official/first-party publisher; 2 another publisher; 1 a re-upload: a repo named exactly like the
    file's stem (docs/upstream.md: many exist, some true mirrors, some other bytes) or marked as a mirror."""
    if trusted(repo_id):
        return 3
    name = repo_id.split("/")[-1]

    def norm(x: str) -> str:
        return re.sub(r"[\s_\-.]+", "_", x.lower())

    mark = _REUPLOAD.search(name)
    if mark and mark.group(1).lower() == "gguf" and filename.lower().endswith(".gguf"):
        mark = None  # a GGUF repo is the origin of its .gguf files
    if norm(name) == norm(stem(filename)) or mark:
        return 1
    return 2


def trusted(repo_id: str) -> bool:
    return repo_id.split("/")[0].lower() in TRUSTED_ORGS


# ---------------------------------------------------------------- search terms -------------------------

_SPLIT = re.compile(r"[\s_\-]+")


def search_terms(name: str) -> tuple[list[str], list[str]]:
    """(broad, narrow) repo-id substrings for a file name.

    Broad terms are the distinctive words (`wan`, `hidream`); narrow ones the whole stem (exact-name
    mirrors) and the leading two words (`wan_2.1`). Every repo a narrow term finds, its broad word finds
    too, so narrow terms are asked only when a broad answer was cut off at the page limit, as it always
    is on the real Hub for popular words.
    """
    s = stem(name)
    words = [w for w in _SPLIT.split(s) if w]
    broad: list[str] = []
    for w in words:
        family = re.match(r"([a-z]+?)(?:v?\d|$)", w.lower())  # "wan2.1" -> "wan", "netayumev35" -> "netayume"
        for part in (w.lower(), family.group(1) if family else ""):
            if len(part) >= 3 and part not in STOPWORDS and not re.fullmatch(r"v?\d+(\.\d+)*[bkp]?", part) \
                    and part not in broad:
                broad.append(part)
    low = s.lower()
    for abbr, longs in ALIASES.items():
        if low == abbr or low.startswith(abbr + "_") or low.startswith(abbr + "-"):
            broad[:0] = [x for x in longs if x not in broad]
    narrow = [s] + ([f"{words[0]}_{words[1]}", f"{words[0]}-{words[1]}"] if len(words) >= 2 else [])
    for w in words:  # "flux3" is "FLUX-3" / "flux.3" in repo ids
        m = re.fullmatch(r"([a-z]{3,})(\d+(?:\.\d+)?)", w.lower())
        if m:
            narrow.append(f"{m.group(1)}-{m.group(2)}")
    narrow = [t for i, t in enumerate(narrow) if t.lower() not in [x.lower() for x in narrow[:i]] + broad]
    return broad[:4], narrow


# What a folder tells about where its files live: repo-id words of the kind of model (SAM files sit in
# `*/segment-anything`, YOLO detectors in `*/adetailer`), asked besides the words of the file name.
KIND_SEARCHES: dict[str, tuple[str, ...]] = {
    "controlnet": ("controlnet",), "upscale_models": ("esrgan", "upscale"), "sams": ("segment-anything", "sam-vit"),
    "ultralytics": ("adetailer", "yolo"), "ultralytics_bbox": ("adetailer", "yolo"),
    "ultralytics_segm": ("adetailer", "yolo"), "clip_vision": ("clip-vit", "siglip"),
    "ipadapter": ("ip-adapter",), "facerestore_models": ("gfpgan", "codeformer"), "instantid": ("instantid",),
}
# The known first-party publishers of a model family, listed (first page by downloads) for its files.
FAMILY_PUBLISHERS: dict[str, tuple[str, ...]] = {
    "Flux": ("black-forest-labs", "XLabs-AI"), "Flux.2": ("black-forest-labs",), "SDXL": ("stabilityai", "xinsir"),
    "SD 1.5": ("stable-diffusion-v1-5", "lllyasviel"), "SD 3": ("stabilityai",), "Wan": ("Wan-AI", "Kijai"),
    "Qwen-Image": ("Qwen", "DiffSynth-Studio"), "HunyuanVideo": ("tencent", "hunyuanvideo-community"),
    "LTXV": ("Lightricks",), "HiDream": ("HiDream-ai",),
}
FAMILY_BOUND_FOLDERS = ("loras", "checkpoints", "controlnet", "embeddings")  # files made for one base model
KIND_BUDGET = 3  # extra searches per model for its kind and family; each is shared by the run's models


def kind_queries(folder: str | None, family: str | None) -> list[dict[str, str]]:
    """The list_models queries a folder and a model family add (HF by kind), at most KIND_BUDGET."""
    out = [{"search": w} for w in KIND_SEARCHES.get(folder or "", ())]
    out += [{"author": org} for org in FAMILY_PUBLISHERS.get(family or "", ())]
    return out[:KIND_BUDGET]


# ---------------------------------------------------------------- the source ---------------------------


@dataclass
class Match:
    repo_id: str
    path: str
    downloads: int
    gated: bool
    size: int | None = None
    sha256: str | None = None
    exact_case: bool = True
    family: str | None = None  # what the repo's tags say it is made for (base_model:..., stable-diffusion-xl)

    @property
    def trusted(self) -> bool:
        return trusted(self.repo_id)

    @property
    def standing(self) -> int:
        return standing(self.repo_id, self.path.rsplit("/", 1)[-1])


def _differs(a: Match, b: Match) -> bool:
    if a.sha256 and b.sha256:
        return a.sha256 != b.sha256
    return bool(a.size and b.size and a.size != b.size)


class HuggingFaceSource:
    name = "huggingface"

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        if hf_offline():  # the user asked that nothing be sent to the Hub: say so, not "no repo holds it"
            found.tried.append(OFFLINE_NOTE)
            return found
        broad, narrow = search_terms(ref.basename)
        items: dict[str, dict[str, Any]] = {}
        failed: list[str] = []

        async def ask(queries: list[dict[str, str]]) -> bool:
            """True when some answer filled a whole page (the Hub had more to say)."""
            answers = await asyncio.gather(*(list_models(run, ref.name, **q) for q in queries), return_exceptions=True)
            full = False
            for q, a in zip(queries, answers):
                if isinstance(a, FixerError):
                    failed.append(f"{query_words(q)} ({a})")
                    if a.code in ("rate_limited", "service_busy", "unreachable"):
                        found.unreached.add("huggingface")
                    continue
                if isinstance(a, BaseException):
                    if not isinstance(a, (aiohttp.ClientError, TimeoutError)):
                        raise a
                    failed.append(f"{query_words(q)} (unreachable)")
                    found.unreached.add("huggingface")
                    run.history.record("huggingface", query_words(q), f"unreachable: {a.__class__.__name__}", ref.name)
                    continue
                full = full or len(a) >= SEARCH_LIMIT
                for item in a:
                    items.setdefault(item.get("id", ""), item)
            return full

        asked = list(broad)
        orgs = asyncio.gather(*(org_repos(run, o, ref.name) for o in COMFY_ORGS), return_exceptions=True)
        kinds = kind_queries(ref.folder, run.family(ref))
        kind_answers = asyncio.ensure_future(ask(kinds))  # popular words: a full page says nothing here
        if not broad or await ask([{"search": t} for t in broad]):
            asked += narrow
            await ask([{"search": t} for t in narrow])
        await kind_answers
        asked += [" ".join(f"{k}={v}" for k, v in q.items()) for q in kinds]
        for o, listed in zip(COMFY_ORGS, await orgs):
            if isinstance(listed, BaseException):
                if not isinstance(listed, (aiohttp.ClientError, TimeoutError)):
                    raise listed
                failed.append(f"author={o}")
                continue
            for item in listed:
                items.setdefault(item.get("id", ""), item)
        asked += [f"all of {o}" for o in COMFY_ORGS]
        for t in asked:
            run.searched(ref, f"Hugging Face {t}")
        found.tried.append(f"Hugging Face: searched repo ids for {', '.join(repr(t) for t in asked)} "
                           f"({len(items)} repos){'; failed: ' + ', '.join(sorted(set(failed))) if failed else ''}")
        matches = await self._matches(ref, run, items, found)
        if not matches:
            found.tried.append(f"Hugging Face: no repo among them holds a file named {ref.basename}")
            return found
        for m in matches:
            info = await paths_info(run, m.repo_id, m.path)
            if info.entry:
                m.size, m.sha256 = lfs_facts(info.entry)
            elif info.error:
                found.tried.append(info.error)
        found.candidates.extend(self._score(ref, run, matches, await run.family_for(ref)))
        return found

    async def _matches(self, ref: ModelRef, run: SearchRun, items: dict[str, dict[str, Any]],
                       found: Found) -> list[Match]:
        want = ref.basename
        # A server that leaves the file lists out of search answers costs a tree listing per repo:
        # only the most promising few are listed.
        unlisted = sorted((i for i in items.values() if "siblings" not in i),
                          key=lambda i: (trusted(i.get("id", "")), int(i.get("downloads") or 0)), reverse=True)
        trees = dict(zip([i["id"] for i in unlisted[:TREE_FALLBACK]],
                         await asyncio.gather(*(repo_tree(run, i["id"], ref.name) for i in unlisted[:TREE_FALLBACK]))))
        matches: list[Match] = []
        for repo_id, item in items.items():
            if "siblings" in item:
                paths = [s["rfilename"] for s in item.get("siblings") or []]
            else:
                paths = trees.get(repo_id, [])
            for p in paths:
                base = p.rsplit("/", 1)[-1]
                m = Match(repo_id, p, int(item.get("downloads") or 0), bool(item.get("gated")),
                          family=family_of_tags(item.get("tags")))
                if base == want:
                    matches.append(m)
                elif base.lower() == want.lower():
                    m.exact_case = False
                    matches.append(m)
                elif os.path.splitext(base)[1].lower() == os.path.splitext(want)[1].lower() and \
                        likeness(want, base).score >= 0.5:
                    run.saw(ref, base, self._candidate(ref, run, m, CONFIDENCE["hf_only"], "near name"))
        return matches

    def _candidate(self, ref: ModelRef, run: SearchRun, m: Match, conf: float, why: str) -> Candidate:
        path_folder = folder_from_path(m.path)  # core folder names only: safe to contradict the workflow
        if path_folder == "checkpoints" and ref.folder and ref.folder not in CORE_FOLDERS:
            path_folder = None  # research repos keep weights in checkpoints/ (SAM, YOLO): no ComfyUI folder meant
        # Only an official publisher's own folder names (`geometry_estimation/`) may replace a guessed folder.
        publisher = m.standing == 3
        filed = folder_from_path(m.path, m.repo_id) if publisher and weak_folder(ref) else path_folder
        reason = f"{why}: {m.path} in {m.repo_id}" + (" (official publisher)" if m.trusted else "")
        folder, conf, note = settle_folder(
            ref, filed, conf, authoritative=publisher,
            took=f"; filed under {filed} by the publisher (the workflow's node does not say)",
            clash=f"; the repo files it under {filed}, the workflow loads it from {ref.folder}",
            unknown="; the model folder is unknown: choose where it goes")
        reason += note
        if not m.exact_case:
            conf = min(conf, CONFIDENCE["hf_only"])
            reason += " (name differs in case)"
        if m.gated:
            reason += "; " + gated_note(run, m.repo_id)
        return Candidate(source="huggingface", filename=ref.name, folder=folder, confidence=conf, reason=reason,
                         url=resolve_url(run.hf_endpoint, m.repo_id, m.path), size=m.size, sha256=m.sha256,
                         gated=m.gated, needs_token="HF_TOKEN" if m.gated else None,
                         ids={"repo_id": m.repo_id, "path": m.path, "revision": "main", "downloads": m.downloads,
                              **({"family": m.family} if m.family else {})})

    def _score(self, ref: ModelRef, run: SearchRun, matches: list[Match], family: str | None) -> list[Candidate]:
        hinted = (ref.hint("hash") or "").lower()
        # Re-uploads are judged by their bytes where the official file's sha256 is known: the workflow's own, or
        # the one a catalog records for a file whose official home is gone.
        want_sha = hinted if len(hinted) == 64 else run.official_sha.get(ref.basename.lower(), "")
        has_token = bool(run.secrets.get("HF_TOKEN"))
        if len(want_sha) == 64:
            same = [m for m in matches if m.sha256 == want_sha]
            if same:
                best = max(same, key=lambda m: (m.trusted, not m.gated or has_token, m.downloads))
                why = "sha256 equals the workflow's hash" if want_sha == hinted else \
                    "sha256 equals the official file's, as ComfyUI's catalogs record it (its own repo is gone)"
                return [self._candidate(ref, run, best, CONFIDENCE["hash_match"], why)]
        # A repo named for another model family (`pixel-art-xl` for an SD 1.5 chain) ranks below the others;
        # when every repo holding the name is so named, the name decides and the mismatch is said.
        off = self._off_family(ref, matches, family)
        if len(off) == len(matches):
            # Keyed as a candidate's ids hold them (JSON-shaped, maybe absent).
            notes: dict[tuple[str | None, str | None], tuple[str, str]] = {
                (m.repo_id, m.path): (wanted, made) for m, _, wanted, made in off}
            scored = self._score(ref, run, matches, None)
            for c in scored:
                note = notes.get((c.ids.get("repo_id"), c.ids.get("path")))
                if note:
                    c.reason, c.made_for = f"{mismatch_words(*note)}; {c.reason}", note[1]
            return scored
        listed = [replace(self._candidate(ref, run, m, CONFIDENCE["kin_family" if f == "kin" else "other_family"],
                                          f"{mismatch_words(wanted, made)}: exact file name"), made_for=made)
                  for m, f, wanted, made in off]
        matches = [m for m in matches if all(m is not o[0] for o in off)]
        if not matches:
            return listed
        # Rank: standing of the publisher, then usable without a token, then downloads.
        ranked = sorted(matches, key=lambda m: (m.standing, m.exact_case, not m.gated or has_token, m.downloads),
                        reverse=True)
        best = ranked[0]
        rivals = [m for m in ranked[1:] if _differs(m, best)]
        peers = [r for r in rivals if r.standing >= best.standing]
        out: list[Candidate] = []
        if is_generic(ref.basename):
            conf, why = CONFIDENCE["generic_name"], "a generic file name that many models share"
        elif peers and not all(best.downloads >= 10 * max(r.downloads, 1) for r in peers):
            conf, why = CONFIDENCE["contested"], "exact file name, but repos of equal standing hold different bytes"
        elif best.standing == 1:
            conf = CONFIDENCE["reupload"]
            why = "exact file name, but only in a re-upload named after the file; nothing shows it is the original"
        else:
            conf = CONFIDENCE["hf_trusted"] if best.standing == 3 else CONFIDENCE["hf_only"]
            why = "exact file name"
            if len(ranked) > len(rivals) + 1:
                why += f", same bytes in {len(ranked) - len(rivals)} repos"
            if rivals:
                why += (f"; {len(rivals)} other repo(s) hold different bytes under this name, {best.repo_id} is "
                        + ("the official publisher" if best.standing == 3 else
                           "the original publisher" if not peers else "the most used by far"))
        out.append(self._candidate(ref, run, best, conf, why))
        for r in rivals[:5]:
            out.append(self._candidate(ref, run, r, min(conf, CONFIDENCE["contested"]) - 0.05,
                                       "same name, different bytes than the preferred repo"))
        return out + listed[:5]

    @staticmethod
    def _off_family(ref: ModelRef, matches: list[Match], wanted: str | None) -> list[tuple[Match, str, str, str]]:
        """(match, "other"/"kin", workflow family, repo family) for repos whose id names another family than
        the workflow's. Only for files made for one base model, and only when the wanted name itself says
        no family (a name that does is the workflow author's own choice)."""
        if not wanted or ref.folder not in FAMILY_BOUND_FOLDERS or family_of_name(ref.basename):
            return []
        out = []
        for m in matches:
            made = family_of_name(m.repo_id.split("/")[-1])
            f = fit(wanted, made)
            if f in ("other", "kin") and made:
                out.append((m, f, wanted, made))
        return out

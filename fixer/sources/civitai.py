"""Civitai: by hash when the workflow gives one (any hash type), else a name search whose results are
matched on the exact file name.

Civitai's search looks at model names, creators, hashes and trigger words, never file names, and drops
query words from the end until something matches; so the query is the file stem in words, narrowed
by the model types of the folder the workflow loads from, and only files whose name equals the
wanted one count. The file's own type decides its folder before the model's type does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp

from ..models import Candidate, ModelRef
from . import CONFIDENCE, Found, SearchRun, is_generic, said
from .fuzzy import likeness, stem

log = logging.getLogger("fixer.sources.civitai")

# upstream-apis.md A.7; model types with no core folder map to None (ask the user).
MODEL_TYPE_FOLDER = {
    "checkpoint": "checkpoints", "textualinversion": "embeddings", "hypernetwork": "hypernetworks",
    "lora": "loras", "locon": "loras", "dora": "loras", "controlnet": "controlnet", "upscaler": "upscale_models",
    "vae": "vae", "textencoder": "text_encoders", "clip": "text_encoders", "unet": "diffusion_models",
    "clipvision": "clip_vision", "motionmodule": "animatediff_models", "motion": "animatediff_models",
}
FILE_TYPE_FOLDER = {"vae": "vae", "text encoder": "text_encoders", "unet": "diffusion_models",
                    "diffusion model": "diffusion_models", "clipvision": "clip_vision", "controlnet": "controlnet"}
FOLDER_TYPES = {
    "checkpoints": ["Checkpoint"], "loras": ["LORA", "LoCon", "DoRA"], "embeddings": ["TextualInversion"],
    "hypernetworks": ["Hypernetwork"], "controlnet": ["Controlnet"], "upscale_models": ["Upscaler"], "vae": ["VAE"],
    "text_encoders": ["TextEncoder", "CLIP"], "diffusion_models": ["UNet", "Checkpoint"],
    "clip_vision": ["CLIPVision"], "animatediff_models": ["MotionModule"],
}
SEARCH_LIMIT = 20


def file_folder(model_type: str | None, file: dict[str, Any]) -> str | None:
    by_file = FILE_TYPE_FOLDER.get(str(file.get("type", "")).lower())
    return by_file or MODEL_TYPE_FOLDER.get(str(model_type or "").replace(" ", "").lower())


def query_words(name: str) -> str:
    """The file stem as words, camelCase split: model names are written as words
    (`majicmixRealistic_v7` is "majicMIX realistic"), and Civitai matches words, not file names."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem(name))
    return " ".join(w for w in re.split(r"[\s_\-.]+", spaced) if w)


def hash_type_of(h: str) -> str:
    return {8: "AutoV1/CRC32", 10: "AutoV2", 12: "AutoV3", 64: "SHA256/BLAKE3"}.get(len(h), "unknown")


def version_candidate(ref: ModelRef, version: dict[str, Any], file: dict[str, Any], model_type: str | None,
                      conf: float, why: str) -> Candidate:
    folder_here = file_folder(model_type, file)
    folder = ref.folder or folder_here
    reason = f"{why}: {file.get('name')} in Civitai model {version.get('modelId')} version {version.get('id')}"
    if ref.folder and folder_here and folder_here != ref.folder:
        conf = min(conf, CONFIDENCE["wrong_folder"])
        reason += f"; Civitai files it as {folder_here}, the workflow loads it from {ref.folder}"
    if folder is None:
        conf = min(conf, CONFIDENCE["contested"])
        reason += f"; Civitai type {model_type} has no ComfyUI folder: choose where it goes"
    size_kb = file.get("sizeKB")
    sha = ((file.get("hashes") or {}).get("SHA256") or "").lower() or None
    return Candidate(
        source="civitai", filename=ref.name, folder=folder, confidence=conf, reason=reason,
        url=file.get("downloadUrl") or version.get("downloadUrl"),
        size=round(size_kb * 1024) if isinstance(size_kb, (int, float)) else None, sha256=sha,
        ids={"model_id": version.get("modelId"), "version_id": version.get("id"), "file_id": file.get("id"),
             "model_type": model_type, "format": (file.get("metadata") or {}).get("format")},
    )


def weigh_same_name(cands: list[Candidate]) -> list[Candidate]:
    """Different models shipping different bytes under one file name: none is sure unless one is used
    ten times more than every other."""
    models = {c.ids.get("model_id") for c in cands}
    shas = {c.sha256 for c in cands if c.sha256}
    if len(models) < 2 or len(shas) < 2:
        return cands
    top = max(cands, key=lambda c: c.ids.get("downloads", 0))
    others = [c for c in cands if c.ids.get("model_id") != top.ids.get("model_id") and c.sha256 != top.sha256]
    if all(top.ids.get("downloads", 0) >= 10 * max(o.ids.get("downloads", 0), 1) for o in others):
        for o in others:
            o.confidence = min(o.confidence, CONFIDENCE["contested"] - 0.05)
        top.reason += "; other models ship other bytes under this name, this one is the most used by far"
        return cands
    for c in cands:
        c.confidence = min(c.confidence, CONFIDENCE["contested"])
        c.reason += "; several Civitai models ship different files under this name"
    return cands


class CivitaiSource:
    name = "civitai"

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        api = f"{run.civitai_base}/api/v1"
        try:
            h = (ref.hint("hash") or "").strip()
            if h:
                await self._by_hash(ref, run, api, h, found)
                if any(c.confidence >= CONFIDENCE["civitai_hash"] for c in found.candidates):
                    return found
            await self._by_name(ref, run, api, found)
        except (aiohttp.ClientError, TimeoutError) as e:
            found.tried.append(f"Civitai: could not be reached ({e.__class__.__name__}); try again later")
        return found

    async def _by_hash(self, ref: ModelRef, run: SearchRun, api: str, h: str, found: Found) -> None:
        reply = await run.http.get("civitai", f"{api}/model-versions/by-hash/{h}", headers=run.civitai_headers())
        run.history.record("civitai", f"by-hash {h}", "found" if reply.ok else f"HTTP {reply.status}: {said(reply)}",
                           ref.name)
        if not reply.ok:
            found.tried.append(f"Civitai by hash {h} ({hash_type_of(h)}): {said(reply)} (HTTP {reply.status})")
            return
        version = reply.json() or {}
        model_type = (version.get("model") or {}).get("type")
        for f in version.get("files", []):
            if any(str(v).upper() == h.upper() for v in (f.get("hashes") or {}).values()):
                found.candidates.append(version_candidate(ref, version, f, model_type, CONFIDENCE["civitai_hash"],
                                                          f"Civitai file with the workflow's {hash_type_of(h)} hash"))
                return
        found.tried.append(f"Civitai by hash {h}: version {version.get('id')} has no downloadable file with it")

    async def _by_name(self, ref: ModelRef, run: SearchRun, api: str, found: Found) -> None:
        query = query_words(ref.basename)
        params: list[tuple[str, str]] = [("query", query), ("limit", str(SEARCH_LIMIT))]
        params += [("types", t) for t in FOLDER_TYPES.get(ref.folder or "", [])]

        async def call():
            return await run.http.get("civitai", f"{api}/models", params=params, headers=run.civitai_headers())

        reply = await run.once(("civitai_search", tuple(params)), call)
        if not reply.ok:
            run.history.record("civitai", f"query={query}", f"HTTP {reply.status}: {said(reply)}", ref.name)
            found.tried.append(f"Civitai search {query!r}: {said(reply)} (HTTP {reply.status})")
            return
        items = (reply.json() or {}).get("items", [])
        run.history.record("civitai", f"query={query}", f"{len(items)} models", ref.name)
        hits = 0
        exact: list[Candidate] = []
        want = ref.basename.lower()
        generic = is_generic(ref.basename)
        for model in items:
            for version in model.get("modelVersions", []):
                version = {**version, "modelId": version.get("modelId", model.get("id"))}
                for f in version.get("files", []):
                    fname = str(f.get("name", ""))
                    if fname.lower() == want:
                        hits += 1
                        conf = CONFIDENCE["generic_name"] if generic else CONFIDENCE["civitai_name"]
                        cand = version_candidate(ref, version, f, model.get("type"), conf,
                                                 f"exact file name in \"{model.get('name')}\"")
                        cand.ids["downloads"] = int((model.get("stats") or {}).get("downloadCount") or 0)
                        exact.append(cand)
                    elif likeness(ref.basename, fname).score >= 0.5:
                        run.saw(ref, fname, version_candidate(ref, version, f, model.get("type"),
                                                              CONFIDENCE["civitai_name"], f"\"{model.get('name')}\""))
        found.candidates.extend(weigh_same_name(exact))
        found.tried.append(f"Civitai: searched {query!r} ({len(items)} models, {hits} with a file of this name)")

"""Civitai as it really is: by hash when the workflow gives one (any hash type), else searches whose results
are matched to the wanted file through Civitai's renaming rules.

Civitai's search looks at model names, creators, hashes and trigger words, and (since 2025) answers a query
that is exactly a file name; it drops query words from the end until something matches, and leaves NSFW-rated
models out unless `nsfw=true` is sent. So the queries are, until one finds the file: the exact file name, the
stem in words, the words without version and precision marks; each narrowed by the model types of the folder
the workflow loads from. A file matches when its name equals the wanted one, or does so through Civitai's
renaming (`{model}_{version}.{ext}` for checkpoints, a random `name.XXXX` suffix, case and separators).
One file matching is the file, whatever family it was made for (the mismatch with the chain's is said);
among several, the chain's family decides (`weigh_same_name`). civitai.com may hide NSFW-rated models
without saying so: the red domain is asked when it shows no file of the name, or only files made for
another family than the chain's. Files that failed Civitai's scans are refused, early-access versions
listed. The file's own type decides its folder before the model's type does.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import aiohttp

from ..models import Candidate, ModelRef
from ..upstream.civitai import by_hash_batch, early_access_until, on_base, scan_refusal
from ..upstream.http import said
from .base import CONFIDENCE, Found, SearchRun, is_generic, settle_folder, stem
from .family import family_of_base_model, fit, mismatch_words, shared_words
from .fuzzy import PRECISION_TAGS, likeness, loose

log = logging.getLogger("fixer.sources.civitai")

# docs/upstream.md; model types with no core folder map to None (ask the user).
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
# Folders of the model types Civitai rates NSFW (and "" for an unknown folder): only for these is the red domain
# asked again; a VAE or an upscaler the configured domain does not have is not hidden there.
RATED_FOLDERS = frozenset({"", "checkpoints", "loras", "embeddings", "hypernetworks", "diffusion_models"})
SEARCH_LIMIT = 50
SEARCH_PAGES = 2  # a popular word fills whole pages: follow the cursor once when nothing matched
MAX_QUERIES = 3  # name queries per model: each costs a request or two at the service's pace
# Civitai's random download suffix (`name.k3x9.safetensors`, since 2026-02): a short tag with a digit in it.
_RANDOM_SUFFIX = re.compile(r"^(?P<stem>.+)\.(?=[a-z0-9]*\d)[a-z0-9]{4,8}$", re.IGNORECASE)
_VERSION_WORD = re.compile(r"^v?\d+(?:[._]\d+)*[a-z]?$|^v\d.*$", re.IGNORECASE)
_PRECISION = frozenset(t for tag in PRECISION_TAGS for t in tag.split("_"))


def file_folder(model_type: str | None, file: dict[str, Any]) -> str | None:
    by_file = FILE_TYPE_FOLDER.get(str(file.get("type", "")).lower())
    return by_file or MODEL_TYPE_FOLDER.get(str(model_type or "").replace(" ", "").lower())


def without_suffix(file_stem: str) -> str:
    m = _RANDOM_SUFFIX.match(file_stem)
    return m.group("stem") if m else file_stem


def query_words(name: str) -> str:
    """The file stem as words, camelCase split: model names are written as words
    (`majicmixRealistic_v7` is "majicMIX realistic"), and Civitai matches words, not file names."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", without_suffix(stem(name)))
    return " ".join(w for w in re.split(r"[\s_\-.]+", spaced) if w)


def name_queries(name: str) -> list[str]:
    """What to ask Civitai for a file name, best first: the exact name, its words, its words without version
    and precision marks (Meilisearch drops words from the end only, so a mark in front would hide the rest)."""
    words = query_words(name)
    core = " ".join(w for w in words.split() if not _VERSION_WORD.match(w) and w.lower() not in _PRECISION)
    out = [name, words, core]
    return [q for i, q in enumerate(out) if q and q.lower() not in [x.lower() for x in out[:i]]]


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def download_name_key(model_name: str, version_name: str, file_type: str = "Model") -> str:
    """Civitai's download name of a file, `{model}_{version}` (getDownloadFilename), as a comparison key:
    letters and digits only, since its camel-casing of the words is not worth copying exactly."""
    version = re.sub(re.escape(model_name), "", version_name, flags=re.IGNORECASE) if model_name else version_name
    return _key(model_name) + _key(version) + ("" if file_type in ("Model", "") else _key(file_type))


def file_matches(wanted: str, model: dict[str, Any], version: dict[str, Any], file: dict[str, Any]) -> str | None:
    """Why a Civitai file is the wanted one (its name, or the name Civitai's renaming gives it), else None."""
    fname = str(file.get("name", ""))
    if fname.lower() == wanted.lower():
        return "exact file name"
    if os.path.splitext(wanted)[1].lower() != os.path.splitext(fname)[1].lower():
        return None
    w_stem, f_stem = without_suffix(stem(wanted)), without_suffix(stem(fname))
    if w_stem.lower() == f_stem.lower():
        return "the same file name without Civitai's random download suffix"
    if loose(w_stem) == loose(f_stem):
        return "the same file name apart from case and separators"
    if model.get("name") and _key(w_stem) == download_name_key(str(model["name"]), str(version.get("name", "")),
                                                               str(file.get("type") or "Model")):
        return "Civitai's download name for it ({model}_{version})"
    return None


def hash_type_of(h: str) -> str:
    return {8: "AutoV1/CRC32", 10: "AutoV2", 12: "AutoV3", 64: "SHA256/BLAKE3"}.get(len(h), "unknown")


def version_candidate(ref: ModelRef, version: dict[str, Any], file: dict[str, Any], model_type: str | None,
                      conf: float, why: str, family: str | None = None) -> Candidate:
    """A Civitai file as a candidate for `ref`; `family` is that of `ref`'s chain when known. The family is
    recorded (ids family / family_fit), never applied here: `weigh_same_name` decides with it."""
    folder_here = file_folder(model_type, file)
    reason = f"{why}: {file.get('name')} in Civitai model {version.get('modelId')} version {version.get('id')}"
    made_for = family_of_base_model(version.get("baseModel"))
    match = fit(family, made_for)
    folder, conf, note = settle_folder(
        ref, folder_here, conf, took=f"; Civitai files it as {folder_here} (the workflow's node does not say)",
        clash=f"; Civitai files it as {folder_here}, the workflow loads it from {ref.folder}",
        unknown=f"; Civitai type {model_type} has no ComfyUI folder: choose where it goes")
    reason += note
    size_kb = file.get("sizeKB")
    sha = ((file.get("hashes") or {}).get("SHA256") or "").lower() or None
    extra: dict[str, Any] = {}
    refused = scan_refusal(file)
    if refused:  # never downloaded, never offered: the resolver lists the reason among what it tried
        conf, extra["refused"] = 0.0, refused
    early = early_access_until(version)
    if early:  # a state, not a failure: listed for the user, who may have access (or wait)
        conf, extra["early_access"] = min(conf, CONFIDENCE["contested"]), early
        reason += f"; in early access on Civitai until {early}: downloadable then, or now with early access"
    return Candidate(
        source="civitai", filename=ref.name, folder=folder, confidence=conf, reason=reason,
        url=file.get("downloadUrl") or version.get("downloadUrl"),
        size=round(size_kb * 1024) if isinstance(size_kb, (int, float)) else None, sha256=sha,
        ids={"model_id": version.get("modelId"), "version_id": version.get("id"), "file_id": file.get("id"),
             "model_type": model_type, "format": (file.get("metadata") or {}).get("format"),
             "base_model": version.get("baseModel"), "family": made_for, "family_fit": match,
             "wanted_family": family, **extra},
    )


def _say_mismatch(c: Candidate, lower_to: str | None = None) -> None:
    """Prefix the reason with the family mismatch; lower the confidence only when told (a rival fits better)."""
    wanted, made_for, f = c.ids.get("wanted_family"), c.ids.get("family"), c.ids.get("family_fit")
    if f not in ("other", "kin") or not wanted or not made_for:
        return
    kin = " (both SDXL-based, it may work)" if f == "kin" else ""
    c.reason = f"{mismatch_words(wanted, made_for)}{kin}; {c.reason}"
    c.made_for = made_for
    if lower_to:
        c.confidence = min(c.confidence, CONFIDENCE[lower_to])


def weigh_same_name(cands: list[Candidate]) -> list[Candidate]:
    """Judge the files that match a wanted name. One file (one sha256): it is the file, whatever family it
    was made for (a mismatch is said, never a veto). Several: the chain's family decides (files made for it
    stay, the others are lowered: kin below the same family, another family below the threshold); with the
    family unknown and files made for several bases, none is sure (one file cannot fit both). Among what
    stays, different models shipping different bytes leave the choice to the user unless one is used ten
    times more than every other."""
    files = {c.sha256 or (c.ids.get("version_id"), c.ids.get("file_id")) for c in cands}
    if len(files) <= 1:
        for c in cands:
            _say_mismatch(c)
        return cands
    by_fit = {f: [c for c in cands if c.ids.get("family_fit") == f] for f in ("same", "unknown", "kin", "other")}
    wanted = next((c.ids.get("wanted_family") for c in cands if c.ids.get("wanted_family")), None)
    if wanted:
        rivals = by_fit["same"] or by_fit["unknown"] or by_fit["kin"]
        for c in cands:
            if c not in rivals:
                _say_mismatch(c, "kin_family" if c.ids.get("family_fit") == "kin" else "other_family")
        for c in rivals:
            _say_mismatch(c)
        if not rivals:
            return _contested(cands)
    else:
        rivals = cands
        if len({c.ids.get("family") for c in cands}) > 1:
            return _contested(cands)
    models = {c.ids.get("model_id") for c in rivals}
    shas = {c.sha256 for c in rivals if c.sha256}
    if len(models) < 2 or len(shas) < 2:
        return cands
    top = max(rivals, key=lambda c: c.ids.get("downloads", 0))
    others = [c for c in rivals if c.ids.get("model_id") != top.ids.get("model_id") and c.sha256 != top.sha256]
    if all(top.ids.get("downloads", 0) >= 10 * max(o.ids.get("downloads", 0), 1) for o in others):
        for o in others:
            o.confidence = min(o.confidence, CONFIDENCE["contested"] - 0.05)
        top.reason += "; other models ship other bytes under this name, this one is the most used by far"
        return cands
    for c in rivals:
        c.confidence = min(c.confidence, CONFIDENCE["contested"])
        c.reason += "; several Civitai models ship different files under this name"
    return cands


def _contested(cands: list[Candidate]) -> list[Candidate]:
    kinds = tuple(sorted({str(c.ids.get("family") or "an unknown base model") for c in cands}))
    for c in cands:
        c.confidence = min(c.confidence, CONFIDENCE["contested"])
        c.reason += f"; {shared_words(kinds)}"
        c.shared_by = kinds
    return cands


class CivitaiSource:
    name = "civitai"

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        try:
            h = (ref.hint("hash") or "").strip()
            if h:
                await self._by_hash(ref, run, h, found)
                if any(c.confidence >= CONFIDENCE["civitai_hash"] for c in found.candidates):
                    return found
            matched = await self._by_name(ref, run, run.civitai_base, found)
            family = await run.family_for(ref) if matched else None
            # civitai.com may leave NSFW-rated models out without saying so; the red domain serves them all. It
            # is asked when nothing matched, or only files made for another family than the chain's (the
            # chain's own may be the hidden one).
            off = bool(matched) and bool(family) and all(
                fit(family, family_of_base_model(v.get("baseModel"))) in ("other", "kin") for _, _, v, _ in matched)
            red: list[Any] = []
            if (not matched or off) and run.civitai_red and run.config.nsfw and (ref.folder or "") in RATED_FOLDERS:
                seen = {(v.get("id"), f.get("id")) for _, _, v, f in matched}
                red = [m for m in await self._by_name(ref, run, run.civitai_red, found)
                       if (m[2].get("id"), m[3].get("id")) not in seen]
            if matched or red:
                family = await run.family_for(ref)
                cands = weigh_same_name(self._candidates(ref, matched + red, family))
                for c in cands[len(matched):]:
                    c.reason += (f"; found on {run.civitai_red} ({run.civitai_base}'s search did not show it, as it "
                                 "may hide NSFW models)")
                found.candidates.extend(self._on_base(run, c) for c in cands)
        except (aiohttp.ClientError, TimeoutError) as e:
            found.tried.append(f"Civitai: could not be reached ({e.__class__.__name__}); try again later")
            found.unreached.add("civitai")
        return found

    async def _by_hash(self, ref: ModelRef, run: SearchRun, h: str, found: Found) -> None:
        run.searched(ref, f"Civitai by hash {h}")
        version = None
        if len(h) == 64 and run.hashes:  # every sha256 of the run in one request (or a few of 100)
            batch, refused = await run.once(("civitai_by_hash_batch",), lambda: by_hash_batch(
                run.http, run.civitai_base, run.secrets, sorted(run.hashes)))
            version = batch.get(h.lower())
            if version is None and refused is None:
                run.history.record("civitai", f"by-hash batch {h}", "not found", ref.name)
                found.tried.append(f"Civitai by hash {h} ({hash_type_of(h)}): no published file has it")
                return
        if version is None:
            reply = await run.once(("civitai_by_hash", h.upper()), lambda: run.http.get(
                "civitai", f"{run.civitai_base}/api/v1/model-versions/by-hash/{h}", headers=run.civitai_headers()))
            run.history.record("civitai", f"by-hash {h}",
                               "found" if reply.ok else f"HTTP {reply.status}: {said(reply)}",
                               ref.name)
            if not reply.ok:
                found.note_reply("civitai", reply.status)
                found.tried.append(f"Civitai by hash {h} ({hash_type_of(h)}): {said(reply)} (HTTP {reply.status})")
                return
            version = reply.json() or {}
        model_type = (version.get("model") or {}).get("type")
        for f in version.get("files", []):
            if any(str(v).upper() == h.upper() for v in (f.get("hashes") or {}).values()):
                # The bytes the workflow was made with: their family is right by definition.
                found.candidates.append(version_candidate(ref, version, f, model_type, CONFIDENCE["civitai_hash"],
                                                          f"Civitai file with the workflow's {hash_type_of(h)} hash"))
                return
        found.tried.append(f"Civitai by hash {h}: version {version.get('id')} has no downloadable file with it")

    async def search(self, run: SearchRun, ref: ModelRef, query: str, found: Found, cursor: str = "",
                     base: str | None = None) -> tuple[list[dict[str, Any]], str, str]:
        """One page of models for `query` on `base` (the configured domain by default), NSFW-rated included
        when allowed, shared per run: (items, the next page's cursor or "", error words or ""); a refusal to
        answer is noted in `found`."""
        base = base or run.civitai_base
        params: list[tuple[str, str]] = [("query", query), ("limit", str(SEARCH_LIMIT)),
                                         ("nsfw", "true" if run.config.nsfw else "false")]
        params += [("types", t) for t in FOLDER_TYPES.get(ref.folder or "", [])]
        params += [("cursor", cursor)] if cursor else []

        async def call() -> Any:
            return await run.http.get("civitai", f"{base}/api/v1/models", params=params, headers=run.civitai_headers())

        reply = await run.once(("civitai_search", base, tuple(params)), call)
        where = "" if base == run.civitai_base else f" on {base}"
        if not reply.ok:
            found.note_reply("civitai", reply.status)
            run.history.record("civitai", f"query={query}{where}", f"HTTP {reply.status}: {said(reply)}", ref.name)
            return [], "", f"{said(reply)} (HTTP {reply.status})"
        data = reply.json()
        body = data if isinstance(data, dict) else {}
        items = [m for m in body.get("items") or [] if isinstance(m, dict)]
        run.history.record("civitai", f"query={query}{where}" + (f" cursor={cursor}" if cursor else ""),
                           f"{len(items)} models", ref.name)
        return items, str((body.get("metadata") or {}).get("nextCursor") or ""), ""

    async def _by_name(self, ref: ModelRef, run: SearchRun, base: str, found: Found) -> list[Any]:
        """Search `base` by name: the files matching the wanted one, (why, model, version, file)."""
        asked: list[str] = []
        red = base != run.civitai_base
        label = (f"Civitai ({base}, asked because {run.civitai_base} did not show the chain's file)" if red
                 else "Civitai")
        for query in name_queries(ref.basename)[:MAX_QUERIES]:
            run.searched(ref, f"{'Civitai red' if red else 'Civitai'} {query!r}")
            items, cursor, err = await self.search(run, ref, query, found, base=base)
            matched, near = self._match(ref, items)
            pages = 1
            while not matched and cursor and pages < SEARCH_PAGES:
                more, cursor, err = await self.search(run, ref, query, found, cursor, base=base)
                items, pages = items + more, pages + 1
                matched, more_near = self._match(ref, more)
                near += more_near
            asked.append(f"{query!r}" + (f" ({err})" if err else f" ({len(items)} models)"))
            # The chain's family is awaited only now: the anchor resolved meanwhile, the search never waited.
            family = await run.family_for(ref) if matched or near else None
            for name, model, version, f in near:
                run.saw(ref, name, self._on_base(run, version_candidate(
                    ref, version, f, model.get("type"), CONFIDENCE["civitai_name"], f"\"{model.get('name')}\"",
                    family)))
            if matched:
                found.tried.append(f"{label}: searched {', '.join(asked)}; {len(matched)} file(s) match the name")
                return matched
        found.tried.append(f"{label}: searched {', '.join(asked)}; no file of this name")
        return []

    @staticmethod
    def _on_base(run: SearchRun, c: Candidate) -> Candidate:
        c.url = on_base(c.url or "", run.civitai_base, run.civitai_red) or c.url
        return c

    @staticmethod
    def _candidates(ref: ModelRef, matched: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]],
                    family: str | None) -> list[Candidate]:
        generic = is_generic(ref.basename)
        out: list[Candidate] = []
        for why, model, version, f in matched:
            conf = CONFIDENCE["generic_name"] if generic else CONFIDENCE[
                "civitai_name" if why == "exact file name" else "civitai_renamed"]
            cand = version_candidate(ref, version, f, model.get("type"), conf, f"{why} in \"{model.get('name')}\"",
                                     family)
            cand.ids["downloads"] = int((model.get("stats") or {}).get("downloadCount") or 0)
            out.append(cand)
        return out

    @staticmethod
    def _match(ref: ModelRef, items: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        """(files matching the wanted name: (why, model, version, file); files of a near name: (name, model,
        version, file)) among the search's models."""
        matched: list[Any] = []
        near: list[Any] = []
        for model in items:
            for version in model.get("modelVersions") or []:
                version = {**version, "modelId": version.get("modelId", model.get("id"))}
                for f in version.get("files") or []:
                    why = file_matches(ref.basename, model, version, f)
                    if why is not None:
                        matched.append((why, model, version, f))
                    elif likeness(ref.basename, str(f.get("name", ""))).score >= 0.5:
                        near.append((str(f.get("name", "")), model, version, f))
        return matched, near

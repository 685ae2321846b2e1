"""Clues a workflow or an image carries about its models besides file names: Civitai AIR URNs and version
ids, and A1111-style hashes. The scan attaches them to references as ModelHint (`attach`); the resolver's
sources read them (Civitai by hash, EmbeddedSource for AIR URNs). Scan-side: imports nothing of the
resolver, so a scan does not load the network stack.

- `air_hints(doc)`: every AIR URN (`urn:air:<base>:<type>:civitai:<model>@<version>`) anywhere in a JSON
  document (Civitai's generator writes them to `extra.airs`), plus the version ids of a "Civitai resources"
  list. They name versions, not files, so they belong to the whole workflow (see `attach`).
- `parameters_hints(text)`: A1111 infotext (`parameters` PNG chunk): "Model: x, Model hash: abc..." and
  "Lora hashes: "name: hash, ..."" -> file stem (lower case) -> hash hints for that reference.
"""

from __future__ import annotations

import json
import re

from ..models import ModelHint, ModelRef
from .budget import Budget

# `+<fileId>` picks one file of a version with several (2026).
AIR = re.compile(r"urn:air:(?P<base>[\w.-]+):(?P<type>[\w.-]+):civitai:(?P<model>\d+)@(?P<version>\d+)"
                 r"(?:\+(?P<file>\d+))?", re.I)
_AIR_MARK = re.compile("urn:air:", re.IGNORECASE)
MAX_CLUES = 200  # a hostile document cannot make the resolver ask for thousands of versions
_RESOURCES = re.compile(r"Civitai resources:\s*(\[.*?\])(?:,\s*[A-Z][\w ]+:|$)", re.S)
_MODEL = re.compile(r"(?:^|,\s*)Model:\s*([^,\n]+)")
_MODEL_HASH = re.compile(r"(?:^|,\s*)Model hash:\s*([0-9a-fA-F]{8,64})")
_LORA_HASHES = re.compile(r'Lora hashes:\s*"([^"]*)"')
_HEX = re.compile(r"^[0-9a-fA-F]{8,64}$")


def air_hints(doc: object, budget: Budget | None = None) -> list[ModelHint]:
    """The first MAX_CLUES distinct AIR URNs in `doc` (strings at any depth), as hints whose url is the URN.

    Linear in the document: a dict says what was seen, and no string is searched past the last clue kept."""
    found: dict[str, str] = {}  # URN -> its resource type
    stack = [doc]
    visited = 0
    while stack and len(found) < MAX_CLUES:
        x = stack.pop()
        visited += 1
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str) and _AIR_MARK.search(x):
            for m in AIR.finditer(x):
                found.setdefault(m.group(0), m.group("type").lower())
                if len(found) >= MAX_CLUES:
                    break
        if budget is not None and visited % 1024 == 0:
            budget.check()
    return [ModelHint(url=u, kind=kind) for u, kind in found.items()]


def parameters_hints(text: object) -> dict[str, list[ModelHint]]:
    """file stem (lower case) -> hints, and "*" -> hints for the whole image, from A1111 infotext (an image's
    text chunk: anything that is not text holds none)."""
    out: dict[str, list[ModelHint]] = {}
    text = text[:100_000] if isinstance(text, str) else ""
    model, model_hash = _MODEL.search(text), _MODEL_HASH.search(text)
    if model and model_hash:
        out.setdefault(model.group(1).strip().lower(), []).append(ModelHint(hash=model_hash.group(1).upper()))
    loras = _LORA_HASHES.search(text)
    for pair in (loras.group(1).split(",") if loras else []):
        name, _, h = pair.partition(":")
        if name.strip() and _HEX.match(h.strip()):
            out.setdefault(name.strip().lower(), []).append(ModelHint(hash=h.strip().upper()))
    resources = _RESOURCES.search(text)
    try:
        items = json.loads(resources.group(1)) if resources else []
    except ValueError:
        items = []
    for r in items[:MAX_CLUES] if isinstance(items, list) else []:
        vid = r.get("modelVersionId") if isinstance(r, dict) else None
        if isinstance(vid, int):
            kind = r.get("type") if isinstance(r.get("type"), str) else None
            out.setdefault("*", []).append(ModelHint(url=f"civitai:{vid}", kind=kind.lower() if kind else None))
    return out


# Civitai resource types (AIR `type`, a resource's "type") -> the model folders such files load from.
KIND_FOLDERS = {
    "checkpoint": ("checkpoints", "diffusion_models"), "unet": ("diffusion_models",),
    "lora": ("loras",), "locon": ("loras",), "lycoris": ("loras",), "dora": ("loras",),
    "embedding": ("embeddings",), "textualinversion": ("embeddings",), "hypernetwork": ("hypernetworks",),
    "vae": ("vae",), "controlnet": ("controlnet",), "upscaler": ("upscale_models",),
    "motionmodule": ("animatediff_models",), "clip": ("text_encoders",), "textencoder": ("text_encoders",),
}
MAX_PAIRED = 16  # each clue a reference carries costs the resolver one request for it


def attach(refs: list[ModelRef], named: dict[str, list[ModelHint]], whole: list[ModelHint]) -> None:
    """Give one workflow's references their clues.

    `named` (file stem or name, lower case -> hints: A1111 hashes) goes to the reference of that name.
    `whole` (AIR URNs, Civitai resources) names versions for the whole workflow. A version of the kind a
    reference's folder holds goes on it when it is the only such version for the only such reference (a
    pairing the resolver may trust even when the names differ), or when several such versions are there
    (then only a version whose files match the reference's name or hash counts). One version for several
    references of its folder is left off: the resolver would take it for each of them."""
    for ref in refs:
        base = ref.basename.lower()
        for h in named.get(base, []) + named.get(base.rsplit(".", 1)[0], []):
            if h not in ref.hints:
                ref.hints.append(h)
    # Grouped by folder, so the pairing is linear in references and clues (not their product).
    fitting: dict[str, list[ModelHint]] = {}
    for h in dict.fromkeys(whole):
        for folder in KIND_FOLDERS.get(h.kind or "", ()):
            fitting.setdefault(folder, []).append(h)
    refs_in: dict[str, int] = {}
    for ref in refs:
        if ref.folder in fitting:
            refs_in[ref.folder] = refs_in.get(ref.folder, 0) + 1
    for ref in refs:
        mine = fitting.get(ref.folder or "", [])[:MAX_PAIRED]
        if len(mine) == 1 and _takers(mine[0], refs_in) > 1:
            continue
        if ref.hints:
            known = set(ref.hints)
            ref.hints.extend(h for h in mine if h not in known)
        else:  # the common case: `mine` is already free of repeats
            ref.hints.extend(mine)


def _takers(hint: ModelHint, refs_in: dict[str, int]) -> int:
    """How many references sit in a folder that holds files of this clue's kind."""
    return sum(refs_in.get(f, 0) for f in KIND_FOLDERS.get(hint.kind or "", ()))

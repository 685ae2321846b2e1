"""Clues a workflow or an image carries about its models besides file names: Civitai AIR URNs and version
ids, and A1111-style hashes. The scan (extract) attaches them to references as ModelHint; the resolver's
sources read them (Civitai by hash, EmbeddedSource for AIR URNs).

- `air_hints(doc)`: every AIR URN (`urn:air:<base>:<type>:civitai:<model>@<version>`) anywhere in a JSON
  document (Civitai's generator writes them to `extra.airs`), plus the version ids of a "Civitai resources"
  list. They name versions, not files, so they belong to the whole workflow: attach them to each of its
  references; a version only counts for a reference whose name (or hash) its files match.
- `parameters_hints(text)`: A1111 infotext (`parameters` PNG chunk): "Model: x, Model hash: abc..." and
  "Lora hashes: "name: hash, ..."" -> file stem (lower case) -> hash hints for that reference.
"""

from __future__ import annotations

import json
import re

from ..models import ModelHint

AIR = re.compile(r"urn:air:(?P<base>[\w.-]+):(?P<type>[\w.-]+):civitai:(?P<model>\d+)@(?P<version>\d+)", re.I)
MAX_CLUES = 200  # a hostile document cannot make the resolver ask for thousands of versions
_RESOURCES = re.compile(r"Civitai resources:\s*(\[.*?\])(?:,\s*[A-Z][\w ]+:|$)", re.S)
_MODEL = re.compile(r"(?:^|,\s*)Model:\s*([^,\n]+)")
_MODEL_HASH = re.compile(r"(?:^|,\s*)Model hash:\s*([0-9a-fA-F]{8,64})")
_LORA_HASHES = re.compile(r'Lora hashes:\s*"([^"]*)"')
_HEX = re.compile(r"^[0-9a-fA-F]{8,64}$")


def air_hints(doc: object) -> list[ModelHint]:
    """AIR URNs anywhere in `doc` (strings at any depth), as hints whose url is the URN."""
    found: list[str] = []
    stack = [doc]
    while stack and len(found) < MAX_CLUES:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str) and "urn:air:" in x.lower():
            found.extend(m.group(0) for m in AIR.finditer(x) if m.group(0) not in found)
    return [ModelHint(url=u) for u in found[:MAX_CLUES]]


def parameters_hints(text: str) -> dict[str, list[ModelHint]]:
    """file stem (lower case) -> hints, and "*" -> hints for the whole image, from A1111 infotext."""
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
            out.setdefault("*", []).append(ModelHint(url=f"civitai:{vid}"))
    return out

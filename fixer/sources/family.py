"""Model families (base models): which one a chain of a workflow is built for, and which one a file is made for.

A LoRA, ControlNet or embedding made for SDXL does not work on an SD 1.5 chain, and the same file name exists
for SD 1.5, SDXL, Pony and Flux. A dependant takes the family of the anchor (checkpoint, diffusion model) of
its own chain (`Usage.anchors`, fixer.read.chains): what resolving the anchor revealed (Civitai baseModel,
an AIR's ecosystem), else the anchor's file name. A reference whose chain the graph does not tell falls back
to the workflow's family (`workflow_families`), known only when its clues agree. The family decides between
same-name candidates made for different bases and ranks near names; it never vetoes an exact, unique file
name (that is picked, the mismatch said). Pony and Illustrious are SDXL fine-tunes: their LoRAs load in each
other's workflows, so they are kin (preferred less than the same family, but usable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from ..models import Candidate, ModelRef, ScanReport

# Civitai baseModel values (an open set: docs/upstream.md) -> family; checked in order.
_BASE_MODEL_RULES: tuple[tuple[str, str | None], ...] = (
    (r"^sd 1", "SD 1.5"), (r"^sd 2", "SD 2"), (r"^pony", "Pony"), (r"^(illustrious|noobai)", "Illustrious"),
    (r"^sdxl", "SDXL"), (r"^sd 3", "SD 3"), (r"^flux\.2", "Flux.2"), (r"^flux", "Flux"), (r"^wan", "Wan"),
    (r"^qwen", "Qwen-Image"), (r"^hunyuan video", "HunyuanVideo"), (r"^ltxv", "LTXV"), (r"^chroma", "Chroma"),
    (r"^hidream", "HiDream"), (r"^(upscaler|other)$", None),
)
# Words of file names that tell the family (loose names: lower case, separators folded to "_").
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"pony", "Pony"), (r"illustrious|noobai|(^|_)wai(_|$)", "Illustrious"), (r"flux2|flux_2(_|$)", "Flux.2"),
    (r"flux|(^|_)f1d(_|$)", "Flux"), (r"(^|_)wan(2|_2|_?video|$|_)|umt5", "Wan"), (r"qwen_image|qwen_2_5_vl",
                                                                                   "Qwen-Image"),
    (r"hunyuan_?video", "HunyuanVideo"), (r"(^|_)ltx", "LTXV"), (r"chroma", "Chroma"), (r"hidream", "HiDream"),
    (r"(^|_)sd_?3|sd3_5", "SD 3"), (r"sd_?xl|(^|_)xl(_|$)|sdxl", "SDXL"),
    (r"sd_?1_?5|v1_5|(^|_)sd15|(^|_)sd_?1(_|$)", "SD 1.5"), (r"(^|_)sd_?2(_|$)|v2_1_768", "SD 2"),
)
# Node types that exist for one family only.
NODE_FAMILY = {
    "CLIPTextEncodeFlux": "Flux", "FluxGuidance": "Flux", "FluxKontextImageScale": "Flux",
    "CLIPTextEncodeSDXL": "SDXL", "CLIPTextEncodeSDXLRefiner": "SDXL",
    "WanImageToVideo": "Wan", "WanFirstLastFrameToVideo": "Wan", "WanVaceToVideo": "Wan",
    "Wan22ImageToVideoLatent": "Wan",
    "TextEncodeQwenImageEdit": "Qwen-Image",
    "EmptyLTXVLatentVideo": "LTXV", "LTXVConditioning": "LTXV", "CLIPTextEncodeHiDream": "HiDream",
}
# Node families of one model family: core Wan nodes (`Wan22FunControlToVideo`) and kijai's wrappers
# (`WanVideoSampler`, `HyVideoSampler`). Checked after NODE_FAMILY; API nodes (a cloud service's model,
# `...Api`, `...Node`) load nothing local and tell nothing. Not here, because the official templates reuse
# them for other models: `EmptyFlux2LatentImage` (Ernie, Moss, Ideogram), `QwenImageDiffsynthControlnet`
# (Z-Image), `TextEncodeQwenImageEditPlus` (Krea 2), `LTXVSeparateAVLatent` (MiniMax).
_NODE_PATTERN_RULES: tuple[tuple[str, str], ...] = (
    (r"^Wan(\d|[A-Z])", "Wan"), (r"^HyVideo|^EmptyHunyuanLatentVideo$", "HunyuanVideo"),
)
_API_NODE = re.compile(r"(Api|Node)$")
KIN = {"SDXL": "SDXL", "Pony": "SDXL", "Illustrious": "SDXL"}
ANCHOR_FOLDERS = ("checkpoints", "diffusion_models")  # what a workflow is built on; text encoders only back up
# An AIR's ecosystem (`urn:air:<ecosystem>:...`) -> family.
_AIR_ECOSYSTEM = {"sd1": "SD 1.5", "sd2": "SD 2", "sdxl": "SDXL", "pony": "Pony", "illustrious": "Illustrious",
                  "noobai": "Illustrious", "sd3": "SD 3", "flux1": "Flux", "flux": "Flux", "flux2": "Flux.2",
                  "wan": "Wan", "wanvideo": "Wan", "qwen": "Qwen-Image", "hidream": "HiDream", "chroma": "Chroma",
                  "ltxv": "LTXV", "hyv1": "HunyuanVideo"}
_SEP = re.compile(r"[\s\-.]+")


def family_of_base_model(base_model: str | None) -> str | None:
    b = (base_model or "").strip().lower()
    for pattern, fam in _BASE_MODEL_RULES:
        if re.search(pattern, b):
            return fam
    return None


def family_of_air(ecosystem: str | None) -> str | None:
    return _AIR_ECOSYSTEM.get((ecosystem or "").strip().lower())


def family_of_tags(tags: object) -> str | None:
    """The family a Hugging Face repo's tags say (`base_model:stabilityai/stable-diffusion-xl-base-1.0`,
    `stable-diffusion-xl`), when they agree; a repo's tags are a revealed fact, not a guess from its name."""
    if not isinstance(tags, list):
        return None
    words = [t.split(":", 1)[1].rsplit("/", 1)[-1] if t.startswith("base_model:") else t
             for t in tags[:200] if isinstance(t, str) and (t.startswith("base_model:") or "diffusion" in t
                                                              or t in ("flux", "sdxl", "sd-1.5", "pony"))]
    fams = {f for f in map(family_of_name, words) if f}
    return _pick(fams) if fams else None


def family_of_name(name: str) -> str | None:
    """The family a file name announces (`ponyDiffusionV6XL` -> Pony, `sd_xl_base_1.0` -> SDXL), if any."""
    low = _SEP.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1].lower())
    low = re.sub(r"_(safetensors|ckpt|pt|pth|bin|gguf|sft)$", "", low)
    for pattern, fam in _NAME_RULES:
        if re.search(pattern, low):
            return fam
    return None


@lru_cache(maxsize=4096)
def family_of_node_type(node_type: str) -> str | None:
    """The family a node type exists for only (`FluxGuidance` -> Flux, `WanVideoSampler` -> Wan), if any."""
    if node_type in NODE_FAMILY:
        return NODE_FAMILY[node_type]
    if _API_NODE.search(node_type):
        return None
    return next((fam for pattern, fam in _NODE_PATTERN_RULES if re.search(pattern, node_type)), None)


def _pick(fams: set[str]) -> str | None:
    """One family from several clues: a fine-tune beats its base (Pony over SDXL); disagreement is unknown."""
    if len(fams) == 1:
        return next(iter(fams))
    specific = {f for f in fams if f not in ("SDXL",)} if fams <= set(KIN) else fams
    return next(iter(specific)) if len(specific) == 1 else None


def workflow_families(refs: Iterable[ModelRef],
                      node_types: Mapping[str, Iterable[str]] | None = None) -> dict[str, str]:
    """workflow -> family, from the models it loads (missing and present alike: pass every ModelRef the scan
    found) and, when given, every node type it uses. Workflows whose clues disagree get none."""
    anchors: dict[str, set[str]] = {}
    backups: dict[str, set[str]] = {}
    for ref in refs:
        fam = family_of_name(ref.name)
        if not fam:
            continue
        bucket = anchors if ref.folder in ANCHOR_FOLDERS else backups if ref.folder == "text_encoders" else None
        if bucket is not None:
            for wf in ref.workflows:
                bucket.setdefault(wf, set()).add(fam)
    for ref in refs:
        for u in ref.usages:
            fam = family_of_node_type(u.node_type)
            if fam:
                backups.setdefault(u.workflow, set()).add(fam)
    for wf, types in (node_types or {}).items():
        fams = set(filter(None, map(family_of_node_type, types)))
        if fams:
            backups.setdefault(wf, set()).update(fams)
    out: dict[str, str] = {}
    for wf in set(anchors) | set(backups):
        fam = _pick(anchors.get(wf, set())) if anchors.get(wf) else _pick(backups.get(wf, set()))
        if fam:
            out[wf] = fam
    return out


def report_families(report: ScanReport) -> dict[str, str]:
    """workflow -> family from a whole scan: every model it found (present ones say it too) and node type."""
    return workflow_families([s.ref for s in report.models], report.node_types)


def ref_family(ref: ModelRef, families: Mapping[str, str]) -> str | None:
    """The family every workflow that uses `ref` is built for; None when unknown or they differ."""
    fams = {families[wf] for wf in ref.workflows if wf in families}
    return next(iter(fams)) if len(fams) == 1 else None


def chain_anchors(ref: ModelRef) -> set[tuple[str, str]]:
    """The anchors (ModelRef keys) of every chain that uses `ref`; empty for an anchor or an untraced chain."""
    return {a for u in ref.usages for a in u.anchors}


def combine(fams: Iterable[str | None]) -> str | None:
    """One family for a reference several chains use: known only when every chain's is known and they agree
    (a fine-tune over its base)."""
    fams = list(fams)
    if not fams or any(f is None for f in fams):
        return None
    return _pick({f for f in fams if f})


def revealed_family(ref: ModelRef, chosen: Candidate | None) -> str | None:
    """An anchor's family from what resolving it revealed (the chosen candidate's Civitai baseModel or AIR
    ecosystem, its repo's tags or name), else from its own file name."""
    ids = chosen.ids if chosen is not None else {}
    return (ids.get("family") or family_of_air(ids.get("air_ecosystem"))
            or family_of_name(str(ids.get("repo_id") or "").split("/")[-1]) or family_of_name(ref.name))


def fit(wanted: str | None, made_for: str | None) -> str:
    """"same", "kin" (SDXL fine-tunes), "other", or "unknown" when either side is not known."""
    if not wanted or not made_for:
        return "unknown"
    if wanted == made_for:
        return "same"
    if KIN.get(wanted) and KIN.get(wanted) == KIN.get(made_for):
        return "kin"
    return "other"


def mismatch_words(wanted: str, made_for: str) -> str:
    return f"made for {made_for}; this chain looks {wanted}"


def shared_words(families: tuple[str, ...]) -> str:
    """A name several model families ship a file under: the user chooses."""
    return f"this name exists for {' and '.join(families)}: choose the one your chain's base model needs"


FIT_RANK = {"same": 3, "unknown": 2, "kin": 1, "other": 0}  # the tie-break between equally sure candidates

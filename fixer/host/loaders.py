"""Which folder a node's model input reads from: the core loader table, then rules for custom nodes."""

from __future__ import annotations

import functools
import re
from typing import Any

# A core loader: (its widget inputs in order, input name -> the folder it reads)
CoreInputs = tuple[tuple[str, ...], dict[str, str]]
# Core loaders (docs/comfyui-facts.md): node type -> widget order, and the inputs that are model files.
# Widget order matters for UI JSON, whose widgets_values is a list in that order.
CORE_LOADERS: dict[str, CoreInputs] = {
    "CheckpointLoaderSimple": (("ckpt_name",), {"ckpt_name": "checkpoints"}),
    "CheckpointLoader": (("config_name", "ckpt_name"), {"config_name": "configs", "ckpt_name": "checkpoints"}),
    "unCLIPCheckpointLoader": (("ckpt_name",), {"ckpt_name": "checkpoints"}),
    "ImageOnlyCheckpointLoader": (("ckpt_name",), {"ckpt_name": "checkpoints"}),
    "LoraLoader": (("lora_name", "strength_model", "strength_clip"), {"lora_name": "loras"}),
    "LoraLoaderModelOnly": (("lora_name", "strength_model"), {"lora_name": "loras"}),
    "VAELoader": (("vae_name",), {"vae_name": "vae"}),
    "CLIPLoader": (("clip_name", "type", "device"), {"clip_name": "text_encoders"}),
    "DualCLIPLoader": (("clip_name1", "clip_name2", "type", "device"),
                       {"clip_name1": "text_encoders", "clip_name2": "text_encoders"}),
    "TripleCLIPLoader": (("clip_name1", "clip_name2", "clip_name3"),
                         {f"clip_name{i}": "text_encoders" for i in (1, 2, 3)}),
    "QuadrupleCLIPLoader": (("clip_name1", "clip_name2", "clip_name3", "clip_name4"),
                            {f"clip_name{i}": "text_encoders" for i in (1, 2, 3, 4)}),
    "UNETLoader": (("unet_name", "weight_dtype"), {"unet_name": "diffusion_models"}),
    "ControlNetLoader": (("control_net_name",), {"control_net_name": "controlnet"}),
    "T2IAdapterLoader": (("t2i_adapter_name",), {"t2i_adapter_name": "controlnet"}),
    "DiffControlNetLoader": (("control_net_name",), {"control_net_name": "controlnet"}),
    "CLIPVisionLoader": (("clip_name",), {"clip_name": "clip_vision"}),
    "StyleModelLoader": (("style_model_name",), {"style_model_name": "style_models"}),
    "GLIGENLoader": (("gligen_name",), {"gligen_name": "gligen"}),
    "HypernetworkLoader": (("hypernetwork_name", "strength"), {"hypernetwork_name": "hypernetworks"}),
    "UpscaleModelLoader": (("model_name",), {"model_name": "upscale_models"}),
    "PhotoMakerLoader": (("photomaker_model_name",), {"photomaker_model_name": "photomaker"}),
    "ModelPatchLoader": (("name",), {"name": "model_patches"}),
    "AudioEncoderLoader": (("audio_encoder_name",), {"audio_encoder_name": "audio_encoders"}),
    "CreateHookLora": (("lora_name", "strength_model", "strength_clip"), {"lora_name": "loras"}),
    "CreateHookLoraModelOnly": (("lora_name", "strength_model"), {"lora_name": "loras"}),
    "CreateHookModelAsLora": (("ckpt_name", "strength_model", "strength_clip"), {"ckpt_name": "checkpoints"}),
    "CreateHookModelAsLoraModelOnly": (("ckpt_name", "strength_model"), {"ckpt_name": "checkpoints"}),
    "TrainLoraNode": ((), {"existing_lora": "loras"}),
    "LatentUpscaleModelLoader": (("model_name",), {"model_name": "latent_upscale_models"}),
}

# Rules for custom nodes, most specific first. Each is (regex, folder), matched case-insensitively.
_INPUT_RULES = [
    (r"lora", "loras"), (r"ckpt|checkpoint", "checkpoints"), (r"^vae|vae_name", "vae"),
    (r"clip_vision|clipvision|image_encoder", "clip_vision"),
    (r"clip_name|text_encoder|t5|llm|umt5|clip\d?$", "text_encoders"),
    (r"unet|diffusion|transformer|dit_name", "diffusion_models"),
    (r"control_?net|cnet", "controlnet"), (r"upscale|esrgan|sr_model", "upscale_models"),
    (r"ipadapter|ip_adapter", "ipadapter"), (r"embedding", "embeddings"),
    (r"motion|animatediff", "animatediff_models"), (r"insightface|antelope", "insightface"),
]
_NODE_RULES = [
    (r"lora", "loras"), (r"checkpoint|ckpt", "checkpoints"), (r"clipvision|clip_vision", "clip_vision"),
    (r"ipadapter", "ipadapter"), (r"controlnet|control_net|t2iadapter", "controlnet"),
    (r"upscal", "upscale_models"), (r"animatediff|motion", "animatediff_models"),
    (r"vae", "vae"), (r"unet|diffusion|(^|[^a-z])dit([^a-z]|$)", "diffusion_models"),
    (r"clip|textencoder|t5", "text_encoders"), (r"ultralytics|yolo|bbox", "ultralytics"),
    (r"sam(model)?loader", "sams"),
    # A file format, not what is loaded: weaker than every word above (DualCLIPLoaderGGUF loads text encoders).
    (r"gguf", "diffusion_models"),
]
_FILE_RULES = [
    (r"(^|[_\-.])lora([_\-.]|$)|locon|lycoris", "loras"),
    (r"(^|[_\-.])vae([_\-.]|$)|^ae\.safetensors$|taesd", "vae"),
    (r"t5xxl|umt5|clip_[lg]\b|clip_[lg][_.]|qwen_?\d.*vl|text_?encoder|llava|gemma", "text_encoders"),
    (r"clip_vision|clipvision|image_encoder|siglip", "clip_vision"),
    (r"control[_-]?net|controlnet|t2i[_-]?adapter|control_v\d|control-lora", "controlnet"),
    (r"(^|[_\-])\d+x[_\-]|esrgan|swinir|ultrasharp|upscal", "upscale_models"),
    (r"ip[_-]?adapter", "ipadapter"),
    (r"mm_sd|mm-sd|motion|animatediff", "animatediff_models"),
]


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_RULES = {"input": _INPUT_RULES, "node": _NODE_RULES, "file": _FILE_RULES}


@functools.cache
def _compiled(kind: str) -> list[tuple[re.Pattern[str], str]]:
    """Compiled once: `re.search(pattern, ...)` looks each pattern up in re's cache on every call (a 5,000-node
    workflow made 36,000 such lookups); and on first use, not at import: a workflow of core loaders only (the
    official templates) never asks, and the 33 patterns cost ~1 ms of every command's start-up."""
    return [(re.compile(rx), folder) for rx, folder in _RULES[kind]]


def _words(text: str) -> str:
    """CamelCase and separators to spaced lower-case words, so "ConditioningLoader" never matches "dit"."""
    return _CAMEL.sub(" ", text).lower()


@functools.lru_cache(maxsize=4096)  # node types and input names repeat across a workflow's nodes
def _first(kind: str, text: str) -> str | None:
    low = _words(text)
    return next((folder for rx, folder in _compiled(kind) if rx.search(low)), None)


def core_inputs(node_type: str) -> CoreInputs | None:
    return CORE_LOADERS.get(node_type)


def guess_folder(node_type: str, input_name: str | None, filename: str) -> str | None:
    """Keyword rules for custom loaders: the input's name weighs first, then the node type's (what it loads
    before the format it loads), then the file name. None if nothing fits."""
    if input_name:
        found = _first("input", input_name)
        if found:
            return found
    return _first("node", node_type) or _first("file", filename.rsplit("/", 1)[-1])


def widget_names_from_def(node_def: dict[str, Any]) -> list[str]:
    """Widget order of a node from its /object_info entry (inputs that are widgets, with frontend extras)."""
    inputs = node_def.get("input") or {}
    order = node_def.get("input_order") or {}
    names: list[str] = []
    for section in ("required", "optional"):
        spec = inputs.get(section) or {}
        keys = order.get(section) or list(spec)
        for key in keys:
            entry = spec.get(key)
            if not isinstance(entry, (list, tuple)) or not entry:
                continue
            kind = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            if isinstance(kind, list) or kind in ("COMBO", "INT", "FLOAT", "STRING", "BOOLEAN"):
                if opts.get("forceInput"):
                    continue
                names.append(key)
                if kind == "INT" and (opts.get("control_after_generate") or key in ("seed", "noise_seed")):
                    names.append("control_after_generate")
    return names


def input_spec(node_def: dict[str, Any], input_name: str) -> list[Any] | tuple[Any, ...] | None:
    """An input's entry in a node definition: `(type or options, {config})`."""
    inputs = node_def.get("input") or {}
    for section in ("required", "optional"):
        spec = inputs.get(section)
        entry = spec.get(input_name) if isinstance(spec, dict) else None
        if isinstance(entry, (list, tuple)) and entry:
            return entry
    return None


def combo_options(node_def: dict[str, Any], input_name: str) -> list[str] | None:
    """The COMBO options of an input (V1 `[[...], {}]` or V3 `["COMBO", {"options": [...]}]`)."""
    entry = input_spec(node_def, input_name)
    if entry is None:
        return None
    if isinstance(entry[0], (list, tuple)):
        return [str(v) for v in entry[0]]
    if entry[0] == "COMBO" and len(entry) > 1 and isinstance(entry[1], dict):
        return [str(v) for v in entry[1].get("options") or []]
    return None

"""Every environment variable and default in one place, read once (as huggingface_hub does)."""

from __future__ import annotations

import os

# ComfyUI's folder_paths.supported_pt_extensions: what its model folders list by default.
COMFY_PT_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
# A model file to us: those, plus the formats custom loaders use (GGUF, ONNX, TensorRT engines).
MODEL_EXTENSIONS = COMFY_PT_EXTENSIONS | {".gguf", ".onnx", ".engine"}
# Formats that can execute code when loaded (pickle-based).
PICKLE_EXTENSIONS = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2"})


def is_pickle(name: str) -> bool:
    return os.path.splitext(name.lower())[1] in PICKLE_EXTENSIONS

# Folder keys ComfyUI knows by default (folder_paths.py), in canonical form.
CORE_FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders",
)
# Keys ComfyUI registers that hold no models (GET /experiment/models leaves them out): never a write location.
NON_MODEL_FOLDERS = frozenset({"custom_nodes", "configs"})
# Subfolder names under models/ for each key, first is the download default (as folder_paths registers them).
DEFAULT_FOLDER_DIRS: dict[str, tuple[str, ...]] = {
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("unet", "diffusion_models"),
    "controlnet": ("controlnet", "t2i_adapter"),
}
LEGACY_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders"}

# Node types the frontend owns: never "missing" on the server.
# PrimitiveInt, PrimitiveString, ... are not among them: they are server nodes (comfy_extras/nodes_primitive.py),
# which a ComfyUI older than them lacks (then they are missing node types: update ComfyUI).
FRONTEND_ONLY_NODE_TYPES = frozenset({"Reroute", "Note", "MarkdownNote", "PrimitiveNode", "Comfy.ImagePreview"})

# Sent by the panel (web/lib/api.js) and the CLI on every call to the pack's routes, which refuse requests
# without it: a page of another site cannot add a custom header (see fixer/comfy/web_guard.py).
CLIENT_HEADER = "X-ComfyFixer-Client"

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
CIVITAI_DEFAULT_BASE_URL = "https://civitai.com"


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read as huggingface_hub reads it: no request goes to the Hub."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in ("1", "ON", "YES", "TRUE")


def civitai_base_url() -> str:
    return os.environ.get("CIVITAI_BASE_URL", CIVITAI_DEFAULT_BASE_URL).rstrip("/")


def map_legacy(folder: str) -> str:
    return LEGACY_FOLDERS.get(folder, folder)

"""A folder_paths module with ComfyUI's semantics for the listing functions (folder_paths.py), over a
temporary tree: the probe's tests need the real call chain (get_filename_list -> get_filename_list_ through
the module's globals) and per-folder extension sets, which tests/fake_comfy.py does not model."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType

PT = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
LEGACY = {"unet": "diffusion_models", "clip": "text_encoders"}


def make(root: Path, extra: dict[str, tuple[list[str], set[str]]] | None = None) -> ModuleType:
    """Core keys plus `extra` (key -> (subdirs of models/, extensions)), as packs register them."""
    fp = ModuleType("folder_paths")
    models = root / "models"
    keys = {"checkpoints": ["checkpoints"], "loras": ["loras"], "vae": ["vae"], "clip_vision": ["clip_vision"],
            "text_encoders": ["text_encoders", "clip"], "diffusion_models": ["unet", "diffusion_models"],
            "embeddings": ["embeddings"], "controlnet": ["controlnet"], "upscale_models": ["upscale_models"]}
    fp.folder_names_and_paths = {k: ([str(models / d) for d in v], set(PT)) for k, v in keys.items()}
    for key, (dirs, exts) in (extra or {}).items():
        fp.folder_names_and_paths[key] = ([str(models / d) for d in dirs], set(exts))
    fp.models_dir = str(models)
    fp.map_legacy = lambda name: LEGACY.get(name, name)
    fp.get_temp_directory = lambda: str(root / "temp")

    def get_folder_paths(folder: str) -> list[str]:
        return list(fp.folder_names_and_paths[fp.map_legacy(folder)][0])

    def get_filename_list_(folder: str):
        paths, exts = fp.folder_names_and_paths[fp.map_legacy(folder)]
        out = set()
        for base in paths:
            for dirpath, _, files in os.walk(base):
                for f in files:
                    rel = os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/")
                    if not exts or os.path.splitext(f)[1].lower() in exts:
                        out.add(rel)
        return sorted(out), {}, time.perf_counter()

    def get_filename_list(folder: str) -> list[str]:
        return list(fp.get_filename_list_(folder)[0])  # through the module, as ComfyUI's globals are

    def get_full_path(folder: str, filename: str):
        for base in fp.get_folder_paths(folder):
            full = os.path.join(base, filename)
            if os.path.isfile(full):
                return full
        return None

    def get_full_path_or_raise(folder: str, filename: str) -> str:
        full = fp.get_full_path(folder, filename)
        if full is None:
            raise FileNotFoundError(f"Model in folder '{folder}' with filename '{filename}' not found.")
        return full

    fp.get_folder_paths = get_folder_paths
    fp.get_filename_list_ = get_filename_list_
    fp.get_filename_list = get_filename_list
    fp.get_full_path = get_full_path
    fp.get_full_path_or_raise = get_full_path_or_raise
    return fp

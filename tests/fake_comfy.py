"""Stand-ins for the ComfyUI modules the adapter touches (`server`, `folder_paths`, `nodes`, `comfy.utils`),
and a loader that imports the pack the way ComfyUI does (spec_from_file_location on __init__.py).

Only what the adapter uses is modelled, with ComfyUI's semantics (folder_paths.py, server.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web

PACK_DIR = Path(__file__).resolve().parent.parent
PT = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
LEGACY = {"unet": "diffusion_models", "clip": "text_encoders"}


class PromptQueue:
    """ComfyUI's execution.PromptQueue as far as the engine asks it: prompts queued and running."""

    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.queue: list[Any] = []
        self.currently_running: dict[int, Any] = {}

    def get_tasks_remaining(self) -> int:
        with self.mutex:
            return len(self.queue) + len(self.currently_running)


def make_server_module() -> ModuleType:
    mod = ModuleType("server")

    class PromptServer:
        instance: Any = None

        def __init__(self) -> None:
            PromptServer.instance = self
            self.routes = web.RouteTableDef()
            self.app = web.Application()
            self.address, self.port = "127.0.0.1", 8188
            self.sent: list[tuple[str, Any]] = []
            self.prompt_queue = PromptQueue()

        def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
            self.sent.append((event, data))

    mod.PromptServer = PromptServer
    PromptServer()
    return mod


def make_folder_paths(root: Path) -> ModuleType:
    """ComfyUI's folder_paths over `root` (models/<dir>, user/), default keys only."""
    fp = ModuleType("folder_paths")
    models = root / "models"
    dirs = {"checkpoints": ["checkpoints"], "loras": ["loras"], "vae": ["vae"],
            "text_encoders": ["text_encoders", "clip"], "diffusion_models": ["unet", "diffusion_models"],
            "embeddings": ["embeddings"], "upscale_models": ["upscale_models"], "controlnet": ["controlnet"]}
    fp.base_path = str(root)
    fp.models_dir = str(models)
    fp.folder_names_and_paths = {k: ([str(models / d) for d in v], set(PT)) for k, v in dirs.items()}
    fp.folder_names_and_paths["custom_nodes"] = ([str(root / "custom_nodes")], set())
    fp.filename_list_cache = {}
    fp.map_legacy = lambda name: LEGACY.get(name, name)
    fp.get_user_directory = lambda: str(root / "user")
    fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[fp.map_legacy(name)][0])

    def get_full_path(folder: str, filename: str) -> str | None:
        filename = os.path.relpath(os.path.join("/", filename), "/")
        for base in fp.get_folder_paths(folder):
            full = os.path.join(base, filename)
            if os.path.isfile(full):
                return full
        return None

    fp.get_full_path = get_full_path
    return fp


def make_nodes_module(types: tuple[str, ...] = ("CheckpointLoaderSimple", "LoraLoader", "KSampler")) -> ModuleType:
    mod = ModuleType("nodes")

    def node_class(name: str) -> type:
        return type(name, (), {"INPUT_TYPES": classmethod(lambda cls: {"required": {}})})

    mod.NODE_CLASS_MAPPINGS = {t: node_class(t) for t in types}
    return mod


def make_comfy_utils() -> tuple[ModuleType, ModuleType, list[tuple[int, int]]]:
    """`comfy` and `comfy.utils` with a ProgressBar that records (value, total)."""
    updates: list[tuple[int, int]] = []
    comfy, utils = ModuleType("comfy"), ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total: int, node_id: Any = None) -> None:
            self.total, self.current = total, 0

        def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
            self.total = total if total is not None else self.total
            self.current = min(value, self.total)
            updates.append((self.current, self.total))

    utils.ProgressBar = ProgressBar
    comfy.utils = utils
    return comfy, utils, updates


def install_comfy(monkeypatch: Any, root: Path) -> ModuleType:
    """Put fake `server`, `folder_paths`, `nodes` in sys.modules (undone by monkeypatch); the server module.

    The engine's record of the ComfyUI it serves (fixer.comfy.runtime) is restored afterwards too: the
    engine stays loaded between tests, as it does for the life of a ComfyUI process.
    """
    from fixer.comfy import runtime

    for name in ("_links", "_service", "_routes_on"):
        monkeypatch.setattr(runtime, name, None)
    server = make_server_module()
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.setitem(sys.modules, "folder_paths", make_folder_paths(root))
    monkeypatch.setitem(sys.modules, "nodes", make_nodes_module())
    return server


def load_pack(module_name: str, pack_dir: Path = PACK_DIR) -> ModuleType:
    """Import the pack as ComfyUI's load_custom_node does, under `module_name` (a package: __init__.py).

    A dotted name such as `custom_nodes.<folder>` gets a stand-in parent package, as ComfyUI's
    directory on sys.path provides one (relative imports below the pack need it).
    """
    parent = module_name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        stand_in = ModuleType(parent)
        stand_in.__path__ = [str(pack_dir.parent)]
        stand_in.stand_in = True
        sys.modules[parent] = stand_in
    spec = importlib.util.spec_from_file_location(module_name, pack_dir / "__init__.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def unload_pack(module_name: str) -> None:
    for key in [k for k in sys.modules if k == module_name or k.startswith(module_name + ".")]:
        del sys.modules[key]
    parent = module_name.rpartition(".")[0]
    if parent and getattr(sys.modules.get(parent), "stand_in", False):
        del sys.modules[parent]

"""The folder probe changes nothing observable: whatever a pack keeps of the listings it is
handed while probed (module global, lru_cache, base-class attribute, another module of the pack, a cache
filled at the first call only, nested dicts, a registry object, tuples) is put back, so no marker reaches
/object_info (every class's INPUT_TYPES()) or a prompt's validation, and the pack's caches hold its real
listings afterwards.

The pack is a real package in a custom_nodes folder, imported as ComfyUI does, over a folder_paths
with ComfyUI's listing semantics (tests/fake_folder_paths.py)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from fixer.host.folder_probe import is_marker, probe_for
from tests import fake_folder_paths

PACK = {
    "__init__.py": """
        import os, sys
        sys.path.append(os.path.dirname(__file__))  # some packs import their helpers as top-level modules
        from .nodes import NODE_CLASS_MAPPINGS
    """,
    "cachepack_helpers.py": """
        REGISTRY = {}
    """,
    "nodes.py": """
        import functools
        import folder_paths
        import cachepack_helpers

        _LORAS = None
        _SEEN = []
        STATE = {"lists": {}}
        TUPLES = {}


        class Registry:
            def __init__(self):
                self.items = {}


        REG = Registry()


        @functools.lru_cache(maxsize=None)
        def vae_names():
            return folder_paths.get_filename_list("vae")


        class GlobalCache:  # a module global filled at the first call only
            @classmethod
            def INPUT_TYPES(cls):
                global _LORAS
                if _LORAS is None:
                    _LORAS = folder_paths.get_filename_list("loras")
                return {"required": {"lora_name": (_LORAS,)}}


        class LruCache:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"vae_name": (vae_names(),)}}


        class Base:
            files = None


        class BaseClassCache(Base):  # kept on the base class, not the node's own
            @classmethod
            def INPUT_TYPES(cls):
                if Base.files is None:
                    Base.files = ["None"] + folder_paths.get_filename_list("checkpoints")
                return {"required": {"ckpt_name": (Base.files,)}}


        class OtherModuleCache:
            @classmethod
            def INPUT_TYPES(cls):
                names = cachepack_helpers.REGISTRY.setdefault("cn", folder_paths.get_filename_list("controlnet"))
                return {"required": {"control_net": (names,)}}


        class FirstNonEmpty:  # cached in place, once something was listed
            @classmethod
            def INPUT_TYPES(cls):
                if not _SEEN:
                    _SEEN.extend(folder_paths.get_filename_list("embeddings"))
                return {"required": {"embedding": (list(_SEEN),)}}


        class NestedCache:
            @classmethod
            def INPUT_TYPES(cls):
                lists = STATE["lists"]
                if "up" not in lists:
                    lists["up"] = ["x4/" + n for n in folder_paths.get_filename_list("upscale_models")]
                return {"required": {"model_name": (lists["up"],)}}


        class RegistryObject:
            @classmethod
            def INPUT_TYPES(cls):
                if "clip" not in REG.items:
                    REG.items["clip"] = folder_paths.get_filename_list("clip_vision")
                return {"required": {"clip_name": (REG.items["clip"],)}}


        class TupleCache:
            @classmethod
            def INPUT_TYPES(cls):
                if "d" not in TUPLES:
                    TUPLES["d"] = (tuple(folder_paths.get_filename_list("diffusion_models")), "x")
                return {"required": {"unet_name": (list(TUPLES["d"][0]),)}}


        class StaticLru:
            @staticmethod
            @functools.lru_cache(maxsize=4)
            def names():
                return tuple(folder_paths.get_filename_list("text_encoders"))

            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"clip_name": (list(cls.names()),)}}


        NODE_CLASS_MAPPINGS = {c.__name__: c for c in (GlobalCache, LruCache, BaseClassCache, OtherModuleCache,
                               FirstNonEmpty, NestedCache, RegistryObject, TupleCache, StaticLru)}
    """,
}

EXPECTED = {"GlobalCache": ("lora_name", "loras"), "LruCache": ("vae_name", "vae"),
            "BaseClassCache": ("ckpt_name", "checkpoints"), "OtherModuleCache": ("control_net", "controlnet"),
            "FirstNonEmpty": ("embedding", "embeddings"), "NestedCache": ("model_name", "upscale_models"),
            "RegistryObject": ("clip_name", "clip_vision"), "TupleCache": ("unet_name", "diffusion_models"),
            "StaticLru": ("clip_name", "text_encoders")}
REAL = {"loras": "real_lora.safetensors", "vae": "real_vae.safetensors", "checkpoints": "real_ckpt.safetensors",
        "controlnet": "real_cn.safetensors", "upscale_models": "real_up.pth", "clip_vision": "real_cv.safetensors",
        "diffusion_models": "real_unet.safetensors", "text_encoders": "real_te.safetensors"}


def _holds_marker(value) -> bool:
    if is_marker(value):
        return True
    if isinstance(value, dict):
        return any(_holds_marker(k) or _holds_marker(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_marker(v) for v in value)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return _holds_marker(vars(value))
    return False


@pytest.fixture
def pack(tmp_path: Path, monkeypatch):
    fp = fake_folder_paths.make(tmp_path)
    models = tmp_path / "models"
    for folder, name in REAL.items():  # the embeddings folder stays empty (a fresh install)
        d = models / {"diffusion_models": "unet", "text_encoders": "text_encoders"}.get(folder, folder)
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(b"x")
    root = tmp_path / "custom_nodes" / "cachepack"
    root.mkdir(parents=True)
    for name, text in PACK.items():
        (root / name).write_text(textwrap.dedent(text))
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(root))
    spec = importlib.util.spec_from_file_location("cachepack", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cachepack"] = module
    spec.loader.exec_module(module)
    yield fp, module
    for name in set(sys.modules) - before:
        del sys.modules[name]


def state(module):
    nodes, helpers = sys.modules["cachepack.nodes"], sys.modules["cachepack_helpers"]
    return {"_LORAS": nodes._LORAS, "_SEEN": list(nodes._SEEN), "STATE": repr(nodes.STATE),
            "TUPLES": repr(nodes.TUPLES), "REG": repr(nodes.REG.items), "Base.files": nodes.Base.files,
            "REGISTRY": repr(helpers.REGISTRY), "lru": nodes.vae_names.cache_info().currsize,
            "static_lru": nodes.StaticLru.names.cache_info().currsize}


def test_the_probe_learns_every_folder_and_leaves_every_cache_as_it_was(pack):
    fp, module = pack
    before = state(module)
    probe = probe_for(fp)
    for node_type, cls in module.NODE_CLASS_MAPPINGS.items():
        input_name, folder = EXPECTED[node_type]
        fm = probe.probe(cls)
        value = "x4/missing.pth" if node_type == "NestedCache" else "missing.safetensors"
        assert fm.locate(input_name, value)[0] == folder, node_type
    assert state(module) == before  # nothing the probe handed out is kept anywhere


def test_no_marker_reaches_object_info_or_validation_and_caches_fill_with_real_names(pack):
    fp, module = pack
    probe = probe_for(fp)
    for cls in module.NODE_CLASS_MAPPINGS.values():
        probe.probe(cls)
    # /object_info and a prompt's validation both call INPUT_TYPES() of every class, in any thread.
    answers = {t: cls.INPUT_TYPES() for t, cls in module.NODE_CLASS_MAPPINGS.items()}
    assert not _holds_marker(answers)
    assert answers["GlobalCache"]["required"]["lora_name"][0] == ["real_lora.safetensors"]
    assert answers["BaseClassCache"]["required"]["ckpt_name"][0] == ["None", "real_ckpt.safetensors"]
    assert answers["NestedCache"]["required"]["model_name"][0] == ["x4/real_up.pth"]
    assert answers["FirstNonEmpty"]["required"]["embedding"][0] == []
    nodes = sys.modules["cachepack.nodes"]
    for kept in (vars(nodes), vars(sys.modules["cachepack_helpers"]), vars(nodes.Base)):
        assert not _holds_marker(dict(kept))


def test_a_cache_filled_before_the_probe_keeps_its_real_names(pack):
    fp, module = pack
    answers = {t: cls.INPUT_TYPES() for t, cls in module.NODE_CLASS_MAPPINGS.items()}  # /object_info first
    before = state(module)
    probe = probe_for(fp)
    for cls in module.NODE_CLASS_MAPPINGS.values():
        probe.probe(cls)
    assert state(module) == before
    assert {t: cls.INPUT_TYPES() for t, cls in module.NODE_CLASS_MAPPINGS.items()} == answers


def test_the_marker_folder_for_packs_that_list_directories_is_removed(tmp_path):
    fp = fake_folder_paths.make(tmp_path, {"LLM": (["LLM"], set())})
    import os

    class Florence2Like:
        @classmethod
        def INPUT_TYPES(cls):
            names = [d for p in fp.get_folder_paths("LLM") if os.path.isdir(p) for d in os.listdir(p)]
            return {"required": {"model": (names,)}}

    assert probe_for(fp).probe(Florence2Like).locate("model", "Florence-2-large")[0] == "LLM"
    assert not any((tmp_path / "temp" / "comfyfixer_probe").iterdir())


def test_object_info_on_comfyuis_loop_never_runs_while_a_pack_holds_markers(pack):
    """ComfyUI answers /object_info and validates prompts on its event loop's thread; a scan runs in a
    worker thread. The probe runs on the loop's thread (FolderPathsHost.confine), so a request there
    cannot read a pack's cache in the moment it holds markers, before they are put back."""
    import asyncio
    import threading
    import time

    from fixer.comfy.runtime import on_loop
    from fixer.host.host import FolderPathsHost

    fp, module = pack
    nodes = sys.modules["cachepack.nodes"]

    class SlowCache:  # keeps the listing in a module global, then takes a while before returning
        @classmethod
        def INPUT_TYPES(cls):
            nodes.SLOW = folder_paths_listing = fp.get_filename_list("loras")
            time.sleep(0.2)
            return {"required": {"lora_name": (folder_paths_listing,)}}

    SlowCache.__module__ = "cachepack.nodes"
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    seen: list[object] = []
    stop = threading.Event()

    async def object_info_requests() -> None:  # what ComfyUI's /object_info handler reads, on the loop
        while not stop.is_set():
            seen.append(getattr(nodes, "SLOW", None))
            await asyncio.sleep(0.005)

    polling = asyncio.run_coroutine_threadsafe(object_info_requests(), loop)
    try:
        host = FolderPathsHost(fp, node_classes=lambda: {"SlowCache": SlowCache}, confine=on_loop(loop))
        assert host.node_defs()["SlowCache"] is not None
    finally:
        stop.set()
        polling.result(5)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
    assert len(seen) > 2 and not _holds_marker(seen)

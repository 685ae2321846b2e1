"""Asking a node which folder each input lists: INPUT_TYPES() run while folder_paths answers with markers.

The node classes imitate patterns seen in real packs (IPAdapter, Impact Subpack, GGUF, Florence2,
Frame-Interpolation) without their code.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from fixer.host.folder_probe import FolderMap, FolderProbe, Listing, probe_for
from tests import fake_folder_paths


@pytest.fixture
def fp(tmp_path: Path):
    return fake_folder_paths.make(tmp_path, {
        "ipadapter": (["ipadapter"], fake_folder_paths.PT),
        "ultralytics_bbox": (["ultralytics/bbox"], fake_folder_paths.PT),
        "ultralytics_segm": (["ultralytics/segm"], fake_folder_paths.PT),
        "clip_gguf": (["text_encoders", "clip"], {".gguf"}),
        "LLM": (["LLM"], set()),
    })


def test_each_input_gets_the_folder_it_lists_even_when_empty(fp):
    class IPAdapterModelLoader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ipadapter_file": (fp.get_filename_list("ipadapter"),),
                                 "clip_name": (fp.get_filename_list("clip_vision"),),
                                 "weight": ("FLOAT", {"default": 1.0})}}

    fm = probe_for(fp).probe(IPAdapterModelLoader)
    assert fm.source == "probe"
    assert fm.locate("ipadapter_file", "ip-adapter_sd15.safetensors") == ("ipadapter", "ip-adapter_sd15.safetensors")
    assert fm.locate("clip_name", "CLIP-ViT-H-14.safetensors") == ("clip_vision", "CLIP-ViT-H-14.safetensors")
    assert fm.locate("weight", "x.safetensors") is None


def test_prefixed_listing_names_its_folder_and_the_rest_is_the_file(fp):
    class UltralyticsDetectorProvider:
        @classmethod
        def INPUT_TYPES(cls):
            bboxs = ["bbox/" + x for x in fp.get_filename_list("ultralytics_bbox")]
            segms = ["segm/" + x for x in fp.get_filename_list("ultralytics_segm")]
            return {"required": {"model_name": (bboxs + segms,)}}

    fm = probe_for(fp).probe(UltralyticsDetectorProvider)
    assert fm.locate("model_name", "bbox/face_yolov8m.pt") == ("ultralytics_bbox", "face_yolov8m.pt")
    assert fm.locate("model_name", "segm/person_yolov8m-seg.pt") == ("ultralytics_segm", "person_yolov8m-seg.pt")


def test_an_input_listing_two_folders_takes_the_one_accepting_the_extension(fp):
    class CLIPLoaderGGUF:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"clip_name": (fp.get_filename_list("clip") + fp.get_filename_list("clip_gguf"),)}}

    fm = probe_for(fp).probe(CLIPLoaderGGUF)
    assert fm.locate("clip_name", "t5-v1_1-xxl-encoder-Q5_K_M.gguf")[0] == "clip_gguf"
    assert fm.locate("clip_name", "clip_l.safetensors")[0] == "text_encoders"  # legacy "clip" is canonical
    assert fm.accepts_extension("clip_name", "x.gguf") and not fm.accepts_extension("clip_name", "x.patch")


def test_a_pack_listing_get_folder_paths_itself_is_probed_too(fp):
    class Florence2ModelLoader:
        @classmethod
        def INPUT_TYPES(cls):
            cls.model_paths = {d: os.path.join(p, d) for p in fp.get_folder_paths("LLM") if os.path.isdir(p)
                               for d in os.listdir(p) if os.path.isdir(os.path.join(p, d))}
            return {"required": {"model": ([*cls.model_paths],), "precision": (["fp16", "bf16"],)}}

    Florence2ModelLoader.model_paths = {"real": "/models/LLM/real"}
    fm = probe_for(fp).probe(Florence2ModelLoader)
    assert fm.locate("model", "Florence-2-large")[0] == "LLM"
    assert Florence2ModelLoader.model_paths == {"real": "/models/LLM/real"}  # the pack's cache is its own again


def test_fixed_options_of_an_input_that_reads_no_folder(fp):
    class RIFE_VFI:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ckpt_name": (["rife47.pth", "rife49.pth"], {"default": "rife47.pth"})}}

    fm = probe_for(fp).probe(RIFE_VFI)
    assert fm.complete and fm.reads_no_folder("ckpt_name")


def test_a_folder_asked_but_listed_in_no_input_withholds_reads_no_folder(fp):
    cached = ["old.safetensors"]

    class CachedLister:
        @classmethod
        def INPUT_TYPES(cls):
            fp.get_full_path("loras", "x.safetensors")
            return {"required": {"lora": (cached,)}}

    assert not probe_for(fp).probe(CachedLister).reads_no_folder("lora")


def test_without_a_probe_running_the_wrappers_pass_through(fp, tmp_path):
    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "models" / "loras" / "a.safetensors").write_bytes(b"x")
    probe_for(fp)
    assert fp.get_filename_list("loras") == ["a.safetensors"]
    assert fp.get_folder_paths("loras") == [str(tmp_path / "models" / "loras")]
    assert fp.get_full_path("loras", "a.safetensors") == str(tmp_path / "models" / "loras" / "a.safetensors")


def test_a_concurrent_thread_never_sees_a_marker(fp, tmp_path):
    """An /object_info request or a running prompt, while a scan is inside INPUT_TYPES()."""
    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "models" / "loras" / "a.safetensors").write_bytes(b"x")
    inside, release = threading.Event(), threading.Event()
    probing = threading.local()

    class LoraLoaderPlus:
        @classmethod
        def INPUT_TYPES(cls):
            names = fp.get_filename_list("loras")
            if getattr(probing, "scan", False):
                inside.set()
                release.wait(10)
            return {"required": {"lora_name": (names,)}}

    seen: dict[str, object] = {}

    def scan() -> None:
        probing.scan = True
        seen["probe"] = probe_for(fp).probe(LoraLoaderPlus)

    scanner = threading.Thread(target=scan)
    scanner.start()
    assert inside.wait(10)
    try:
        seen["object_info"] = LoraLoaderPlus.INPUT_TYPES()
        seen["listing"] = fp.get_filename_list("loras")
        seen["paths"] = fp.get_folder_paths("loras")
    finally:
        release.set()
        scanner.join(10)
    assert seen["object_info"] == {"required": {"lora_name": (["a.safetensors"],)}}
    assert seen["listing"] == ["a.safetensors"]
    assert seen["paths"] == [str(tmp_path / "models" / "loras")]
    assert seen["probe"].locate("lora_name", "b.safetensors") == ("loras", "b.safetensors")


def test_input_types_raising_leaves_everything_as_it_was(fp, tmp_path):
    class Broken:
        @classmethod
        def INPUT_TYPES(cls):
            cls.state = fp.get_filename_list("loras")
            raise RuntimeError("pack bug")

    assert probe_for(fp).probe(Broken) is None
    assert not hasattr(Broken, "state")
    assert fp.get_filename_list("loras") == []  # recording ended with the failure


def test_each_class_is_probed_once(fp):
    calls = []

    class Loader:
        @classmethod
        def INPUT_TYPES(cls):
            calls.append(1)
            return {"required": {"m": (fp.get_filename_list("vae"),)}}

    probe = probe_for(fp)
    probe.probe(Loader)
    first = len(calls)  # the probed call, and the plain one that checks nothing was left behind
    probe.probe(Loader)
    assert first == 2 and len(calls) == first


def test_the_wrappers_are_installed_once(fp):
    assert probe_for(fp) is probe_for(fp)
    wrapped = fp.get_filename_list
    FolderProbe(fp)  # a second probe (the pack reloaded) does not wrap the wrapper
    assert fp.get_filename_list is wrapped and wrapped.__wrapped__.__name__ == "get_filename_list"


def test_a_v3_combo_is_read_like_a_v1_one(fp):
    class InpaintLoader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"head": ("COMBO", {"options": fp.get_filename_list("ipadapter")})}}

    assert probe_for(fp).probe(InpaintLoader).locate("head", "h.pth")[0] == "ipadapter"


def test_a_folder_map_from_a_server_keeps_only_well_formed_listings():
    data = {"source": "probe", "complete": True,
            "inputs": {"a": [{"folder": "inpaint", "prefix": "", "extensions": [".PATCH"]}, {"folder": 3}],
                       "b": "nonsense", "c": [{"folder": "clip"}]}}
    fm = FolderMap.from_json(data, "server")
    assert fm.source == "server" and fm.complete
    assert fm.inputs == {"a": (Listing("inpaint", "", frozenset({".patch"})),),
                         "c": (Listing("text_encoders"),)}
    assert FolderMap.from_json(fm.to_json(), "server") == fm
    assert FolderMap.from_json(["x"], "server") is None


def test_a_second_copy_of_the_pack_records_through_the_installed_wrappers(fp, monkeypatch):
    """ComfyUI may import the pack under two names (docs/comfyui-facts.md): both probe the same folder_paths."""
    import importlib.util

    import fixer.host.folder_probe as first

    spec = importlib.util.spec_from_file_location("fixer.host.copy_of_folder_probe", first.__file__)
    second = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, second)
    spec.loader.exec_module(second)

    class Loader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"vae_name": (fp.get_filename_list("vae"),)}}

    first.probe_for(fp)
    fm = second.FolderProbe(fp).probe(Loader)
    assert fm.locate("vae_name", "ae.safetensors") == ("vae", "ae.safetensors")


def test_a_definitions_folder_map_survives_json_as_a_worker_process_gets_it(fp):
    import json

    from fixer.host.folder_probe import folder_map_of, with_folder_map

    class IPAdapterModelLoader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ipadapter_file": (fp.get_filename_list("ipadapter"),)}}

    definition = with_folder_map({"input": IPAdapterModelLoader.INPUT_TYPES()},
                                 probe_for(fp).probe(IPAdapterModelLoader))
    copied = json.loads(json.dumps(definition, default=repr))
    assert folder_map_of(copied) == folder_map_of(definition)
    assert folder_map_of(copied).locate("ipadapter_file", "a.bin") == ("ipadapter", "a.bin")

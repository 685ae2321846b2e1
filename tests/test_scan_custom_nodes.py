"""Scanning workflows of custom node packs inside ComfyUI (a FolderPathsHost over a fake folder_paths):
each reference gets the folder the node itself lists, with empty model folders as on a fresh install."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixer.host.host import FolderPathsHost
from fixer.read.scan import scan_workflow_data
from tests import fake_folder_paths
from tests.conftest import make_workflow, node


@pytest.fixture
def fp(tmp_path: Path):
    return fake_folder_paths.make(tmp_path, {
        "xlabs_controlnets": (["xlabs/controlnets"], fake_folder_paths.PT),
        "inpaint": (["inpaint"], fake_folder_paths.PT | {".patch"}),
        "unet_gguf": (["unet", "diffusion_models"], {".gguf"}),
    })


def host(fp, *classes: type) -> FolderPathsHost:
    mapping = {c.__name__: c for c in classes}
    return FolderPathsHost(fp, node_classes=lambda: mapping)


def refs(report):
    return {(s.ref.folder, s.ref.name): (s.state, s.ref.folder_source) for s in report.models}


def test_a_packs_own_folder_beats_the_keyword(fp):
    class LoadFluxControlNet:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"model_name": (["flux-dev", "flux-schnell"],),
                                 "controlnet_path": (fp.get_filename_list("xlabs_controlnets"),)}}

    wf = make_workflow([node(1, "LoadFluxControlNet", ["flux-dev", "flux-canny-controlnet-v3.safetensors"])])
    report = scan_workflow_data(wf, "wf", host(fp, LoadFluxControlNet))
    assert refs(report) == {("xlabs_controlnets", "flux-canny-controlnet-v3.safetensors"): ("missing", "probe")}


def test_a_value_with_the_folders_own_extension_is_a_model_file(fp):
    class LoadFooocusInpaint:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"head": (fp.get_filename_list("inpaint"),),
                                 "patch": (fp.get_filename_list("inpaint"),)}}

    wf = make_workflow([node(1, "LoadFooocusInpaint", ["fooocus_inpaint_head.pth", "inpaint_v26.fooocus.patch"])])
    report = scan_workflow_data(wf, "wf", host(fp, LoadFooocusInpaint))
    assert set(refs(report)) == {("inpaint", "fooocus_inpaint_head.pth"), ("inpaint", "inpaint_v26.fooocus.patch")}


def test_an_extension_no_listed_folder_takes_is_no_file(fp):
    class Styler:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"style": (fp.get_filename_list("inpaint"),), "name": ("STRING", {})}}

    wf = make_workflow([node(1, "Styler", ["notes.txt", "readme.patch"])])
    assert scan_workflow_data(wf, "wf", host(fp, Styler)).models == []


def test_a_gguf_loader_reads_its_own_folder(fp):
    class UnetLoaderGGUF:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"unet_name": (fp.get_filename_list("unet_gguf"),)}}

    wf = make_workflow([node(1, "UnetLoaderGGUF", ["flux1-dev-Q4_K_S.gguf"])])
    assert refs(scan_workflow_data(wf, "wf", host(fp, UnetLoaderGGUF))) == {
        ("unet_gguf", "flux1-dev-Q4_K_S.gguf"): ("missing", "probe")}


def test_weights_the_node_downloads_itself_are_not_missing(fp):
    class RIFE_VFI:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ckpt_name": (["rife47.pth", "rife49.pth"],), "multiplier": ("INT", {"default": 2})}}

    wf = make_workflow([node(1, "RIFE_VFI", ["rife47.pth", 2])])
    report = scan_workflow_data(wf, "wf", host(fp, RIFE_VFI))
    (s,) = report.models
    assert s.state == "by_node" and s.ref.name == "rife47.pth"
    assert report.by_state("missing") == []


def test_an_older_version_of_a_fixed_option_is_not_queued_either(fp):
    class RIFE_VFI:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ckpt_name": (["rife47.pth", "rife49.pth"],)}}

    wf = make_workflow([node(1, "RIFE_VFI", ["rife46.pth"])])
    (s,) = scan_workflow_data(wf, "wf", host(fp, RIFE_VFI)).models
    assert s.state == "by_node"


def test_a_file_path_typed_into_a_string_input_is_still_a_reference(fp):
    class PathLoader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"model_path": ("STRING", {"default": ""})}}

    wf = make_workflow([node(1, "PathLoader", ["my_lora.safetensors"])])
    (s,) = scan_workflow_data(wf, "wf", host(fp, PathLoader)).models
    assert s.state == "missing"


def test_multi_word_text_in_a_string_input_is_never_a_file(fp):
    class PromptBox:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"multiline": True})}}

    wf = make_workflow([node(1, "PromptBox", ["portrait photo of a woman model.safetensors"])])
    assert scan_workflow_data(wf, "wf", host(fp, PromptBox)).models == []


def test_probe_markers_never_reach_the_report(fp):
    class LoraLoaderPlus:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"lora_name": (fp.get_filename_list("loras"),)}}

    wf = make_workflow([node(1, "LoraLoaderPlus", ["detail.safetensors"])])
    report = scan_workflow_data(wf, "wf", host(fp, LoraLoaderPlus))
    assert refs(report) == {("loras", "detail.safetensors"): ("missing", "probe")}
    assert fp.get_filename_list("loras") == []


def test_a_file_name_with_spaces_and_brackets_is_still_a_file(tmp_path, host_for):
    from tests.conftest import make_comfy_root

    wf = make_workflow([node(1, "CheckpointLoaderSimple", ["SDXL/Juggernaut XL v9 (RunDiffusion Photo).safetensors"]),
                        node(2, "SomeCustomLoader", ["my model (1).safetensors"]),
                        node(3, "SomePromptNode", ["masterpiece, best quality, model.safetensors"])])
    report = scan_workflow_data(wf, "wf", host_for(make_comfy_root(tmp_path)))
    assert {s.ref.name for s in report.models} == {"SDXL/Juggernaut XL v9 (RunDiffusion Photo).safetensors",
                                                  "my model (1).safetensors"}


def test_a_core_loader_is_not_asked_for_its_inputs(fp):
    asked = []

    class CheckpointLoaderSimple:
        @classmethod
        def INPUT_TYPES(cls):
            asked.append(1)
            return {"required": {"ckpt_name": (fp.get_filename_list("checkpoints"),)}}

    wf = make_workflow([node(1, "CheckpointLoaderSimple", ["sd_xl_base_1.0.safetensors"])])
    assert refs(scan_workflow_data(wf, "wf", host(fp, CheckpointLoaderSimple))) == {
        ("checkpoints", "sd_xl_base_1.0.safetensors"): ("missing", "node_table")}
    assert asked == []


def test_an_image_value_asks_no_node_definition(fp):
    asked = []

    class LoadImage:
        @classmethod
        def INPUT_TYPES(cls):
            asked.append(1)  # lists the whole input folder in a real ComfyUI
            return {"required": {"image": (["photo.png"],)}}

    wf = make_workflow([node(1, "LoadImage", ["photo.png", "image"])])
    assert scan_workflow_data(wf, "wf", host(fp, LoadImage)).models == [] and asked == []

"""Reading a pack's sources (never importing them) for which folder each input lists: the CLI with a
ComfyUI folder and no running ComfyUI. The packs here are hand-made, imitating patterns of real ones."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from fixer.host.folder_probe import folder_map_of
from fixer.host.host import StandaloneHost
from fixer.host.loaders import widget_names_from_def
from fixer.host.static_folders import read_pack
from fixer.read.scan import scan_workflow_data
from tests.conftest import make_comfy_root, make_workflow, node
from tests.test_cli_scan import run_cli


def write_pack(root: Path, name: str, files: dict[str, str]) -> Path:
    pack = root / "custom_nodes" / name
    for rel, text in files.items():
        (pack / rel).parent.mkdir(parents=True, exist_ok=True)
        (pack / rel).write_text(textwrap.dedent(text))
    return pack


DETECTOR = """
    import folder_paths
    raise SystemExit("importing this pack would stop the scan")

    class UltralyticsDetectorProvider:
        @classmethod
        def INPUT_TYPES(s):
            bboxs = ["bbox/" + x for x in folder_paths.get_filename_list("ultralytics_bbox")]
            segms = ["segm/" + x for x in folder_paths.get_filename_list("ultralytics_segm")]
            return {"required": {"model_name": (bboxs + segms, )}}

    NODE_CLASS_MAPPINGS = {"UltralyticsDetectorProvider": UltralyticsDetectorProvider}
"""


def test_prefixed_listings_are_read_without_importing_the_pack(tmp_path):
    defs = read_pack(write_pack(tmp_path, "subpack", {"__init__.py": DETECTOR}))
    fm = folder_map_of(defs["UltralyticsDetectorProvider"])
    assert fm.source == "static"
    assert fm.locate("model_name", "bbox/face_yolov8m.pt") == ("ultralytics_bbox", "face_yolov8m.pt")
    assert fm.locate("model_name", "segm/person_yolov8m-seg.pt") == ("ultralytics_segm", "person_yolov8m-seg.pt")
    assert "subpack" not in sys.modules


def test_a_helper_method_listing_two_folders_and_the_registered_extensions(tmp_path):
    pack = write_pack(tmp_path, "gguf", {"nodes.py": """
        import folder_paths
        folder_paths.folder_names_and_paths["clip_gguf"] = (["x"], {".gguf"})

        class CLIPLoaderGGUF:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"clip_name": (s.get_filename_list(),), "type": (["sd3", "flux"],)}}

            @classmethod
            def get_filename_list(s):
                files = []
                files += folder_paths.get_filename_list("clip")
                files += folder_paths.get_filename_list("clip_gguf")
                return sorted(files)

        NODE_CLASS_MAPPINGS = {"CLIPLoaderGGUF": CLIPLoaderGGUF}
    """})
    fm = folder_map_of(read_pack(pack)["CLIPLoaderGGUF"])
    assert fm.locate("clip_name", "t5-xxl-Q5_K_M.gguf")[0] == "clip_gguf"
    assert fm.locate("clip_name", "clip_l.safetensors")[0] == "text_encoders"


def test_a_folder_named_by_a_class_constant_through_a_helper_in_another_module(tmp_path):
    pack = write_pack(tmp_path, "animatediff", {
        "utils_model.py": """
            import folder_paths
            class Folders:
                ANIMATEDIFF_MODELS = "animatediff_models"
            def get_available_motion_models():
                return folder_paths.get_filename_list(Folders.ANIMATEDIFF_MODELS)
        """,
        "nodes.py": """
            from .utils_model import get_available_motion_models
            class ADE_LoadAnimateDiffModel:
                @classmethod
                def INPUT_TYPES(s):
                    return {"required": {"model_name": (get_available_motion_models(),)}}
            NODE_CLASS_MAPPINGS = {"ADE_LoadAnimateDiffModel": ADE_LoadAnimateDiffModel}
        """})
    fm = folder_map_of(read_pack(pack)["ADE_LoadAnimateDiffModel"])
    assert fm.locate("model_name", "mm_sd_v15_v2.ckpt") == ("animatediff_models", "mm_sd_v15_v2.ckpt")


def test_node_types_named_through_a_helper_are_the_mapping_keys(tmp_path):
    pack = write_pack(tmp_path, "rg", {
        "py/constants.py": """
            NAMESPACE = 'rgthree'
            def get_name(name):
                return '{} ({})'.format(name, NAMESPACE)
        """,
        "py/lora_stack.py": """
            import folder_paths
            from .constants import get_name
            NODE_NAME = get_name('Lora Loader Stack')
            class RgthreeLoraLoaderStack:
                NAME = NODE_NAME
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"model": ("MODEL",), "lora_01": (['None'] + folder_paths.get_filename_list('loras'),),
                                         "strength_01": ("FLOAT", {"default": 1.0})}}
        """,
        "__init__.py": """
            from .py.lora_stack import RgthreeLoraLoaderStack
            NODE_CLASS_MAPPINGS = {RgthreeLoraLoaderStack.NAME: RgthreeLoraLoaderStack}
        """})
    defs = read_pack(pack)
    assert list(defs) == ["Lora Loader Stack (rgthree)"]
    assert widget_names_from_def(defs["Lora Loader Stack (rgthree)"]) == ["lora_01", "strength_01"]


INPAINT = {
    "__init__.py": """
        import folder_paths, os
        def _add_folder_path(folder_name, extensions_to_register):
            folder_paths.folder_names_and_paths[folder_name] = ([os.path.join(folder_paths.models_dir, folder_name)],
                                                                set(extensions_to_register))
        _add_folder_path("inpaint", [".pt", ".pth", ".safetensors", ".patch"])
        from . import nodes
    """,
    "nodes.py": """
        import folder_paths
        from comfy_api.latest import io
        class LoadFooocusInpaint(io.ComfyNode):
            @classmethod
            def define_schema(cls):
                return io.Schema(node_id="INPAINT_LoadFooocusInpaint", category="inpaint",
                                 inputs=[io.Combo.Input("head", folder_paths.get_filename_list("inpaint")),
                                         io.Combo.Input("patch", folder_paths.get_filename_list("inpaint"))],
                                 outputs=[])
    """}


def test_a_v3_schema_and_a_registered_extension_make_a_patch_file_a_reference(tmp_path, host_for):
    root = make_comfy_root(tmp_path)
    write_pack(root, "comfyui-inpaint-nodes", INPAINT)
    host = host_for(root)
    host.custom_nodes = root / "custom_nodes"
    wf = make_workflow([node(1, "INPAINT_LoadFooocusInpaint", ["fooocus_inpaint_head.pth",
                                                               "inpaint_v26.fooocus.patch"])])
    report = scan_workflow_data(wf, "wf", host)
    assert {(s.ref.folder, s.ref.name, s.ref.folder_source) for s in report.models} == {
        ("inpaint", "fooocus_inpaint_head.pth", "static"), ("inpaint", "inpaint_v26.fooocus.patch", "static")}


def test_a_folder_map_from_object_info_is_completed_by_the_static_one(tmp_path, object_info):
    root = make_comfy_root(tmp_path)
    write_pack(root, "subpack", {"__init__.py": DETECTOR})
    info = {**object_info, "UltralyticsDetectorProvider": {"input": {"required": {"model_name": [[], {}]}},
                                                           "input_order": {"required": ["model_name"]}}}
    host = StandaloneHost.from_root(root).with_object_info(info, "object_info")
    host.custom_nodes = root / "custom_nodes"
    wf = make_workflow([node(1, "UltralyticsDetectorProvider", ["bbox/face_yolov8m.pt"])])
    (s,) = scan_workflow_data(wf, "wf", host).models
    assert (s.ref.folder, s.ref.name, s.ref.folder_source) == ("ultralytics_bbox", "face_yolov8m.pt", "static")
    assert host.node_types() == set(info)  # the read packs never count as node types ComfyUI has


def test_the_cli_reads_the_packs_in_the_comfyui_folder(tmp_path):
    root = make_comfy_root(tmp_path)
    write_pack(root, "subpack", {"__init__.py": DETECTOR})
    wf = root / "user/default/workflows/a.json"
    wf.write_text(json.dumps(make_workflow([node(1, "UltralyticsDetectorProvider", ["bbox/face_yolov8m.pt"])])))
    r = run_cli("--scan", "--json", "--comfyui-root", str(root), "--state-dir", str(tmp_path / "state"))
    models = json.loads((tmp_path / "state/output/missing_models.json").read_text())
    assert [(m["expected_type"], m["filename"], m["folder_source"]) for m in models] == [
        ("ultralytics_bbox", "face_yolov8m.pt", "static")], r.stderr


def test_options_written_in_the_source_are_the_nodes_own_downloads(tmp_path, host_for):
    root = make_comfy_root(tmp_path)
    write_pack(root, "frame-interpolation", {
        "vfi_models/rife/__init__.py": """
            CKPT_NAME_VER_DICT = {"rife47.pth": "4.7", "rife49.pth": "4.7"}
            class RIFE_VFI:
                @classmethod
                def INPUT_TYPES(s):
                    return {"required": {"ckpt_name": (sorted(list(CKPT_NAME_VER_DICT.keys())),),
                                         "multiplier": ("INT", {"default": 2})}}
        """,
        "vfi_models/amt/__init__.py": """
            CKPT_NAME_VER_DICT = {"amt-s.pth": "1"}
        """,
        "__init__.py": """
            from .vfi_models.rife import RIFE_VFI
            NODE_CLASS_MAPPINGS = {"RIFE VFI": RIFE_VFI}
        """})
    host = host_for(root)
    host.custom_nodes = root / "custom_nodes"
    wf = make_workflow([node(1, "RIFE VFI", ["rife49.pth", 2])])
    (s,) = scan_workflow_data(wf, "wf", host).models
    assert s.state == "by_node"


def test_the_folders_packs_register_get_their_place_under_models(tmp_path):
    from fixer.host.static_folders import add_pack_folders

    root = make_comfy_root(tmp_path)
    write_pack(root, "x-flux", {"nodes.py": """
        import os, folder_paths
        dir_xlabs = os.path.join(folder_paths.models_dir, "xlabs")
        dir_xlabs_controlnets = os.path.join(dir_xlabs, "controlnets")
        folder_paths.folder_names_and_paths["xlabs_controlnets"] = ([dir_xlabs_controlnets], folder_paths.supported_pt_extensions)
        folder_paths.folder_names_and_paths["escape"] = ([os.path.join(folder_paths.models_dir, "..", "venv")], set())
        NODE_CLASS_MAPPINGS = {}
    """})
    write_pack(root, "subpack", {"modules/subpack_nodes.py": """
        import os, folder_paths
        from . import utils
        def update_model_paths(model_path):
            utils.add_folder_path_and_extensions("ultralytics_bbox", [os.path.join(model_path, "ultralytics", "bbox")], folder_paths.supported_pt_extensions)
        update_model_paths(folder_paths.models_dir)
        NODE_CLASS_MAPPINGS = {}
    """})
    host = StandaloneHost.from_root(root)
    add_pack_folders(host, root)
    folders = host.folders()
    assert folders["xlabs_controlnets"] == [str(root / "models" / "xlabs" / "controlnets")]
    assert folders["ultralytics_bbox"] == [str(root / "models" / "ultralytics" / "bbox")]
    assert "escape" not in folders and folders["loras"][0] == str(root / "models" / "loras")


def test_a_pack_that_did_not_change_is_not_parsed_again(tmp_path, monkeypatch):
    from fixer.host import static_folders
    from fixer.host.static_folders import read_custom_nodes

    root = make_comfy_root(tmp_path)
    pack = write_pack(root, "subpack", {"__init__.py": DETECTOR})
    cache = tmp_path / "state" / "cache" / "custom_nodes.json"
    first = read_custom_nodes(root / "custom_nodes", cache)
    monkeypatch.setattr(static_folders, "_read_pack", lambda d: (_ for _ in ()).throw(AssertionError("parsed")))
    again = read_custom_nodes(root / "custom_nodes", cache)
    assert again.defs == json.loads(json.dumps(first.defs))
    (pack / "__init__.py").write_text(DETECTOR.replace("ultralytics_segm", "other_segm") + "\n# changed\n")
    with pytest.raises(AssertionError, match="parsed"):
        read_custom_nodes(root / "custom_nodes", cache)


def test_inputs_built_by_helpers_are_read_too(tmp_path, host_for):
    root = make_comfy_root(tmp_path)
    write_pack(root, "controlnet-aux", {
        "utils.py": """
            from enum import Enum
            def define_preprocessor_inputs(**arguments):
                return dict(required=dict(image=INPUT.IMAGE()), optional=arguments)
            class INPUT(Enum):
                def IMAGE():
                    return ("IMAGE",)
                def RESOLUTION(default=512):
                    return ("INT", dict(default=default))
                def COMBO(values, default=None):
                    return (values, dict(default=values[0] if default is None else default))
        """,
        "node_wrappers/depth.py": """
            from ..utils import define_preprocessor_inputs, INPUT
            class Depth_Anything_V2_Preprocessor:
                @classmethod
                def INPUT_TYPES(s):
                    return define_preprocessor_inputs(
                        ckpt_name=INPUT.COMBO(["depth_anything_v2_vitl.pth", "depth_anything_v2_vits.pth"]),
                        resolution=INPUT.RESOLUTION())
            NODE_CLASS_MAPPINGS = {"DepthAnythingV2Preprocessor": Depth_Anything_V2_Preprocessor}
        """})
    host = host_for(root)
    host.custom_nodes = root / "custom_nodes"
    wf = make_workflow([node(1, "DepthAnythingV2Preprocessor", ["depth_anything_v2_vitl.pth", 512])])
    (s,) = scan_workflow_data(wf, "wf", host).models
    assert (s.state, s.ref.usages[0].input_name) == ("by_node", "ckpt_name")

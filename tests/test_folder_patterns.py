"""Custom-node folder handling that generalizes, one minimal synthetic pack per pattern seen in
real packs: a pack filtering the listing it gets, folders registered through helpers and loops, a list
built once at import, node classes generated at import, node names with a format word, and a pack that
fails to import. Inside ComfyUI = a FolderPathsHost over a fake folder_paths with the pack imported as
ComfyUI does; the CLI = the static reader over the same sources."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from fixer.host.folder_probe import folder_map_of, probe_for
from fixer.host.host import FolderPathsHost, StandaloneHost
from fixer.host.static_folders import add_pack_folders, read_custom_nodes, read_pack
from fixer.read.scan import scan_workflow_data
from tests import fake_folder_paths
from tests.conftest import make_comfy_root, make_workflow, node


def write_pack(custom_nodes: Path, name: str, files: dict[str, str]) -> Path:
    pack = custom_nodes / name
    for rel, text in files.items():
        (pack / rel).parent.mkdir(parents=True, exist_ok=True)
        (pack / rel).write_text(textwrap.dedent(text))
    return pack


@pytest.fixture
def comfy(tmp_path: Path, monkeypatch):
    """A fake folder_paths whose custom_nodes folder is real, and an importer for packs in it."""
    fp = fake_folder_paths.make(tmp_path, {"LLM": (["LLM"], set())})
    custom_nodes = tmp_path / "custom_nodes"
    custom_nodes.mkdir()
    fp.folder_names_and_paths["custom_nodes"] = ([str(custom_nodes)], set())
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    before = set(sys.modules)
    classes: dict[str, type] = {}

    def load(name: str, files: dict[str, str]) -> Path:
        pack = write_pack(custom_nodes, name, files)
        spec = importlib.util.spec_from_file_location(name, pack / "__init__.py",
                                                      submodule_search_locations=[str(pack)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        classes.update(module.NODE_CLASS_MAPPINGS)
        return pack

    yield fp, custom_nodes, load, classes
    for name in set(sys.modules) - before:
        del sys.modules[name]


def refs(report):
    return {(s.ref.folder, s.ref.name): (s.state, s.ref.folder_source) for s in report.models}


# --- 1. a pack filters the listing it gets --------------------------------------------------------------

def test_a_pack_keeping_only_safetensors_still_shows_its_folder(comfy):
    fp, _, _, _ = comfy

    class ChatGLM3Loader:  # Kolors-MZ: LLM registered without extensions, the loader keeps *.safetensors
        @classmethod
        def INPUT_TYPES(cls):
            names = [m for m in fp.get_filename_list("LLM") if m.endswith("safetensors")]
            return {"required": {"chatglm3_checkpoint": (names,)}}

    assert probe_for(fp).probe(ChatGLM3Loader).locate("chatglm3_checkpoint", "chatglm3-4bit.safetensors") \
        == ("LLM", "chatglm3-4bit.safetensors")


def test_options_filtered_to_nothing_take_the_one_folder_asked(comfy):
    fp, _, _, _ = comfy

    class NamedFilter:  # a filter on names no marker can pass
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"model": ([m for m in fp.get_filename_list("LLM") if "chatglm" in m],),
                                 "precision": (["fp16", "bf16"],)}}

    fm = probe_for(fp).probe(NamedFilter)
    assert fm.locate("model", "chatglm3-8bit.safetensors") == ("LLM", "chatglm3-8bit.safetensors")
    assert fm.locate("precision", "fp16") is None


# --- 2. folders registered through helpers, loops and edits ---------------------------------------------

REGISTERING = """
    import os
    import folder_paths

    def _add_folder_path(folder_name, extensions_to_register):
        path = os.path.join(folder_paths.models_dir, folder_name)
        folders, extensions = folder_paths.folder_names_and_paths.get(folder_name, ([], set()))
        if path not in folders:
            folders.append(path)
        extensions.update(extensions_to_register)
        folder_paths.folder_names_and_paths[folder_name] = (folders, extensions)

    _add_folder_path("inpaint", [".pt", ".pth", ".safetensors", ".patch"])

    for name in ["depth_models", "pose_models"]:
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))

    for key, sub in {"face_parsing": "facexlib/parsing"}.items():
        folder_paths.folder_names_and_paths[key] = ([os.path.join(folder_paths.models_dir, sub)], {".pth"})

    MODELS_DIR = os.path.join(folder_paths.models_dir, "instantid")
    if "instantid" not in folder_paths.folder_names_and_paths:
        current_paths = [MODELS_DIR]
    else:
        current_paths, _ = folder_paths.folder_names_and_paths["instantid"]
    folder_paths.folder_names_and_paths["instantid"] = (current_paths, folder_paths.supported_pt_extensions)

    folder_paths.folder_names_and_paths.update({"pulid": ([os.path.join(folder_paths.models_dir, "pulid")], {".bin"})})
    folder_paths.add_model_folder_path("embeds_out", os.path.join(folder_paths.get_output_directory(), "embeds"))

    class LoadInpaint:
        @classmethod
        def INPUT_TYPES(s):
            return {"required": {"head": (folder_paths.get_filename_list("inpaint"),),
                                 "patch": (folder_paths.get_filename_list("inpaint"),)}}

    NODE_CLASS_MAPPINGS = {"LoadInpaint": LoadInpaint}
"""


def test_registrations_through_helpers_loops_and_edits_are_read(tmp_path):
    reading = read_custom_nodes(write_pack(tmp_path / "custom_nodes", "reg", {"__init__.py": REGISTERING}).parent)
    assert reading.folders == {"inpaint": ["inpaint"], "depth_models": ["depth_models"],
                               "pose_models": ["pose_models"], "face_parsing": ["facexlib/parsing"],
                               "instantid": ["instantid"], "pulid": ["pulid"]}
    assert len(reading.unread) == 1 and "embeds_out" in reading.unread[0] and reading.unread[0].startswith("reg/")
    fm = folder_map_of(read_pack(tmp_path / "custom_nodes" / "reg")["LoadInpaint"])
    assert fm.accepts_extension("patch", "inpaint_v26.fooocus.patch")


def test_the_cli_reports_a_patch_file_in_the_helper_registered_folder(tmp_path):
    root = make_comfy_root(tmp_path)
    write_pack(root / "custom_nodes", "reg", {"__init__.py": REGISTERING})
    host = StandaloneHost.from_root(root)
    host.custom_nodes = root / "custom_nodes"
    add_pack_folders(host, root)
    assert host.folders()["inpaint"] == [str(root / "models" / "inpaint")]  # a place to download it to
    wf = make_workflow([node(1, "LoadInpaint", ["fooocus_inpaint_head.pth", "inpaint_v26.fooocus.patch"])])
    assert refs(scan_workflow_data(wf, "wf", host)) == {
        ("inpaint", "fooocus_inpaint_head.pth"): ("missing", "static"),
        ("inpaint", "inpaint_v26.fooocus.patch"): ("missing", "static")}


# --- 3. a list built once, at import ---------------------------------------------------------------------

def test_a_list_built_at_import_takes_the_static_answer_not_downloaded_by_the_node(comfy):
    fp, _, load, classes = comfy
    load("upscaler", {"__init__.py": """
        import folder_paths
        UPSCALE_MODELS = folder_paths.get_filename_list("upscale_models") + ["None"]

        class UltimateUpscale:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"upscale_model": (UPSCALE_MODELS,), "mode": (["Linear", "Chess"],)}}

        NODE_CLASS_MAPPINGS = {"UltimateUpscale": UltimateUpscale}
    """})
    host = FolderPathsHost(fp, node_classes=lambda: classes)
    wf = make_workflow([node(1, "UltimateUpscale", ["4x-UltraSharp.pth", "Linear"])])
    assert refs(scan_workflow_data(wf, "wf", host)) == {("upscale_models", "4x-UltraSharp.pth"): ("missing", "static")}


def test_by_node_needs_weights_named_in_the_options(comfy):
    fp, _, load, classes = comfy
    load("interp", {"__init__.py": """
        class RIFE:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"ckpt_name": (["rife47.pth", "rife49.pth"],)}}

        NODE_CLASS_MAPPINGS = {"RIFE": RIFE}
    """})
    host = FolderPathsHost(fp, node_classes=lambda: classes)
    report = scan_workflow_data(make_workflow([node(1, "RIFE", ["rife47.pth"])]), "wf", host)
    assert refs(report) == {(None, "rife47.pth"): ("by_node", "probe")}


# --- 4. node classes generated at import -------------------------------------------------------------------

GENERATED = """
    import folder_paths

    class BaseLoader:
        FOLDER = "checkpoints"

        @classmethod
        def INPUT_TYPES(s):
            return {"required": {"model_name": (folder_paths.get_filename_list(s.FOLDER),), "strength": ("FLOAT", {})}}

    LOADERS = {"LoraLoaderX": "loras", "VAELoaderX": "vae"}

    def make_loader(folder, input_name="file"):
        class Loader:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {input_name: (folder_paths.get_filename_list(folder),)}}
        return Loader

    NODE_CLASS_MAPPINGS = {}
    for name, folder in LOADERS.items():
        NODE_CLASS_MAPPINGS[name] = type(name, (BaseLoader,), {"FOLDER": folder})
    for folder in ["controlnet", "clip_vision"]:
        cls = make_loader(folder, input_name=folder + "_name")
        NODE_CLASS_MAPPINGS["Load_" + folder] = cls
"""


def test_classes_generated_in_loops_are_read(tmp_path):
    defs = read_pack(write_pack(tmp_path / "custom_nodes", "gen", {"__init__.py": GENERATED}))
    found = {t: {k: [x.folder for x in v] for k, v in folder_map_of(d).inputs.items()} for t, d in defs.items()}
    assert found == {"LoraLoaderX": {"model_name": ["loras"]}, "VAELoaderX": {"model_name": ["vae"]},
                     "Load_controlnet": {"controlnet_name": ["controlnet"]},
                     "Load_clip_vision": {"clip_vision_name": ["clip_vision"]}}
    assert defs["LoraLoaderX"]["input_order"]["required"] == ["model_name", "strength"]


# --- 5. keyword rules: what the node loads before the format --------------------------------------------------

def test_a_gguf_clip_loader_without_definitions_reads_text_encoders(tmp_path):
    host = StandaloneHost.from_root(make_comfy_root(tmp_path))
    wf = make_workflow([node(1, "DualCLIPLoaderGGUF", ["t5-v1_1-xxl-encoder-Q8_0.gguf", "clip_l.safetensors", "flux"])])
    folders = {name: folder for (folder, name) in refs(scan_workflow_data(wf, "wf", host))}
    assert folders["t5-v1_1-xxl-encoder-Q8_0.gguf"] == "text_encoders"


# --- 6. a pack that failed to import ------------------------------------------------------------------------

BROKEN = """
    import folder_paths
    from transformers.processing_utils import _validate_images_text_input_order  # gone in a newer transformers

    folder_paths.add_model_folder_path("hyvid", folder_paths.models_dir + "/hyvid")

    class HyVideoModelLoader:
        @classmethod
        def INPUT_TYPES(s):
            return {"required": {"model": (folder_paths.get_filename_list("diffusion_models"),),
                                 "base_precision": (["fp32", "bf16"],)}}

    NODE_CLASS_MAPPINGS = {"HyVideoModelLoader": HyVideoModelLoader}
"""


def test_a_pack_that_failed_to_import_is_read_from_its_source_and_named_in_the_report(comfy):
    fp, custom_nodes, load, classes = comfy
    broken = write_pack(custom_nodes, "HunyuanVideoWrapper", {"__init__.py": BROKEN})
    load("fine", {"__init__.py": """
        NODE_CLASS_MAPPINGS = {}
    """})
    reason = "cannot import name '_validate_images_text_input_order' from 'transformers.processing_utils'"
    host = FolderPathsHost(fp, node_classes=lambda: classes,
                           import_failures=lambda: {str(broken.resolve()): reason})
    wf = make_workflow([node(1, "HyVideoModelLoader", ["hunyuan_video_720_fp8.safetensors", "bf16"])])
    report = scan_workflow_data(wf, "wf", host)
    assert refs(report) == {("diffusion_models", "hunyuan_video_720_fp8.safetensors"): ("missing", "static")}
    assert [n.node_type for n in report.missing_nodes] == ["HyVideoModelLoader"]
    assert [(p.name, p.reason, p.node_types) for p in report.failed_packs] == [
        ("HunyuanVideoWrapper", reason, ["HyVideoModelLoader"])]


def test_comfyuis_import_failure_line_is_parsed():
    from fixer.host.failed_packs import ImportFailureLog, failures_in

    line = "Cannot import /x/custom_nodes/Broken module for custom nodes: No module named 'insightface'"
    assert failures_in([{"t": 1, "m": line + "\n"}, "unrelated"]) == {
        "/x/custom_nodes/Broken": "No module named 'insightface'"}
    handler = ImportFailureLog()
    import logging
    handler.emit(logging.LogRecord("root", logging.WARNING, "", 0, line, None, None))
    assert handler.failures == {"/x/custom_nodes/Broken": "No module named 'insightface'"}


def test_a_pack_source_the_reader_trips_on_never_breaks_the_scan(comfy, monkeypatch):
    from fixer.host.static_folders import PackSources

    fp, _, load, classes = comfy
    load("plain", {"__init__.py": """
        import folder_paths

        class LoraPick:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"lora": (folder_paths.get_filename_list("loras"),)}}

        NODE_CLASS_MAPPINGS = {"LoraPick": LoraPick}
    """})

    def broken(self, root):
        raise SystemError("AST constructor recursion depth mismatch (before=78, after=62)")

    monkeypatch.setattr(PackSources, "pack", broken)
    host = FolderPathsHost(fp, node_classes=lambda: classes)
    report = scan_workflow_data(make_workflow([node(1, "LoraPick", ["a.safetensors"]), node(2, "Gone", ["b.pt"])]),
                                "wf", host)
    assert refs(report)[("loras", "a.safetensors")] == ("missing", "probe")
    assert report.failed_packs == []


def test_a_parse_that_meets_cpythons_concurrent_ast_bug_is_tried_again(monkeypatch):
    import ast

    from fixer.host import static_folders

    real, calls = ast.parse, []

    def flaky(text, filename="<unknown>"):
        calls.append(filename)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=78, after=62)")
        return real(text, filename=filename)

    monkeypatch.setattr(static_folders.ast, "parse", flaky)
    assert isinstance(static_folders.parse("x = 1\n", "a.py"), ast.Module) and len(calls) == 2

"""Patterns met in the third real-pack corpus (tests/data/real_packs_3), each as a minimal pack or node.

Each test reproduces one way a pack builds its inputs or reads text that the scan got wrong there.
"""

from __future__ import annotations

import os

from fixer.host.folder_probe import apply_server_maps, folder_map_of, probe_for
from fixer.host.host import FolderPathsHost
from fixer.host.loaders import widget_names_from_def
from fixer.host.static_folders import read_pack
from fixer.read.scan import scan_workflow_data
from tests import fake_folder_paths
from tests.conftest import make_comfy_root, make_workflow, node
from tests.test_static_folders import write_pack

CLASS_ATTRIBUTE_CHOICES = {"__init__.py": """
    import folder_paths

    class PlotLoraInput:
        modes = ["by weight", "by strength"]

        @classmethod
        def INPUT_TYPES(cls):
            loras = ["None"] + folder_paths.get_filename_list("loras")
            return {"required": {"input_mode": (cls.modes,),
                                 "lora_name": (loras,),
                                 "strength": ("FLOAT", {"default": 1.0})}}

    NODE_CLASS_MAPPINGS = {"PlotLoraInput": PlotLoraInput}
"""}


def test_choices_kept_in_a_class_attribute_are_a_widget(tmp_path, host_for):
    """`(cls.modes,)` is a COMBO widget: read as a link, it shifted every widget after it by one."""
    root = make_comfy_root(tmp_path)
    write_pack(root, "plot-nodes", CLASS_ATTRIBUTE_CHOICES)
    host = host_for(root)
    host.custom_nodes = root / "custom_nodes"
    wf = make_workflow([node(1, "PlotLoraInput", ["by strength", "detail_tweaker.safetensors", 0.8])])
    (s,) = scan_workflow_data(wf, "wf", host).models
    assert (s.ref.folder, s.ref.folder_source, s.ref.usages[0].input_name) == ("loras", "static", "lora_name")


SELF_ENCODING_LOADER = {"__init__.py": """
    import folder_paths

    class PromptedCheckpoint:
        @classmethod
        def INPUT_TYPES(s):
            return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),),
                                 "positive": ("STRING", {"multiline": True}),
                                 "negative": ("STRING", {"multiline": True})}}

        RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "VAE")

    NODE_CLASS_MAPPINGS = {"PromptedCheckpoint": PromptedCheckpoint}
"""}
PROMPTED = ["base.safetensors", "a castle at dusk", "embedding:EasyNegative.pt, lowres"]


def _found(report) -> set[tuple[str | None, str, str | None]]:
    return {(s.ref.folder, s.ref.name, s.ref.folder_source) for s in report.models}


def test_a_loader_that_encodes_its_own_prompts_reads_their_embeddings_from_the_packs_sources(tmp_path, host_for):
    """No CLIP input, but CONDITIONING out of no conditioning: its text reaches a tokenizer (CLI, static)."""
    root = make_comfy_root(tmp_path)
    write_pack(root, "prompted", SELF_ENCODING_LOADER)
    host = host_for(root)
    host.custom_nodes = root / "custom_nodes"
    report = scan_workflow_data(make_workflow([node(1, "PromptedCheckpoint", PROMPTED)]), "wf", host)
    assert _found(report) == {("checkpoints", "base.safetensors", "static"),
                              ("embeddings", "EasyNegative.pt", "prompt")}


def test_a_loader_that_encodes_its_own_prompts_reads_their_embeddings_from_object_info(tmp_path, host_for):
    spec = {"ckpt_name": [["base.safetensors"]], "positive": ["STRING", {"multiline": True}],
            "negative": ["STRING", {"multiline": True}]}
    made = {"input": {"required": spec}, "input_order": {"required": list(spec)},
            "output": ["MODEL", "CONDITIONING", "CONDITIONING", "VAE"]}
    # Taking CONDITIONING in (a node that edits conditioning) is no sign of encoding text.
    edits = {"input": {"required": {"conditioning": ["CONDITIONING"], "note": ["STRING", {"multiline": True}]}},
             "input_order": {"required": ["conditioning", "note"]}, "output": ["CONDITIONING"]}
    host = host_for(make_comfy_root(tmp_path), {"PromptedCheckpoint": made, "ConditioningNote": edits})
    wf = make_workflow([node(1, "PromptedCheckpoint", PROMPTED),
                        node(2, "ConditioningNote", ["see embedding:other.pt"])])
    assert ("embeddings", "EasyNegative.pt", "prompt") in _found(scan_workflow_data(wf, "wf", host))
    assert not any(s.ref.name == "other.pt" for s in scan_workflow_data(wf, "wf", host).models)


def test_inputs_a_loop_adds_to_the_returned_dict_are_read_in_order(tmp_path):
    defs = read_pack(write_pack(tmp_path, "stacker", {"__init__.py": """
        import folder_paths
        SLOTS = 3

        class LoraStack:
            @classmethod
            def INPUT_TYPES(cls):
                loras = ["None"] + folder_paths.get_filename_list("loras")
                inputs = {"required": {"count": ("INT", {"default": 2})}}
                for i in range(1, SLOTS + 1):
                    inputs["required"][f"lora_{i}"] = (loras,)
                    inputs["required"][f"weight_{i}"] = ("FLOAT", {"default": 1.0})
                inputs["optional"] = {"stack": ("LORA_STACK",), "vae": (folder_paths.get_filename_list("vae"),)}
                return inputs

        NODE_CLASS_MAPPINGS = {"LoraStack": LoraStack}
    """}))
    d = defs["LoraStack"]
    assert widget_names_from_def(d) == ["count", "lora_1", "weight_1", "lora_2", "weight_2", "lora_3", "weight_3",
                                        "vae"]
    fm = folder_map_of(d)
    assert fm is not None
    assert [fm.locate(f"lora_{i}", "x.safetensors") for i in (1, 3)] == [("loras", "x.safetensors")] * 2
    assert fm.locate("vae", "y.safetensors") == ("vae", "y.safetensors")


def test_node_types_merged_into_the_mappings_by_name_are_read(tmp_path):
    """`NODE_CLASS_MAPPINGS.update(IMAGE_CLASS_MAPPINGS)` and `{**A}`: the keys of dicts other modules hold."""
    defs = read_pack(write_pack(tmp_path, "essentials", {
        "image.py": """
            import folder_paths
            class ApplyLut:
                @classmethod
                def INPUT_TYPES(s):
                    return {"required": {"lut_file": (folder_paths.get_filename_list("luts"),)}}
            IMAGE_CLASS_MAPPINGS = {"ApplyLut+": ApplyLut}
        """,
        "mask.py": """
            import folder_paths
            class MaskModel:
                @classmethod
                def INPUT_TYPES(s):
                    return {"required": {"model": (folder_paths.get_filename_list("sams"),)}}
            MASK_CLASS_MAPPINGS = {"MaskModel+": MaskModel}
        """,
        "__init__.py": """
            from .image import IMAGE_CLASS_MAPPINGS
            from .mask import MASK_CLASS_MAPPINGS
            NODE_CLASS_MAPPINGS = {**MASK_CLASS_MAPPINGS}
            NODE_CLASS_MAPPINGS.update(IMAGE_CLASS_MAPPINGS)
        """}))
    assert {t: folder_map_of(d).locate(next(iter(d["input"]["required"])), "a.pt")
            for t, d in defs.items()} == {"ApplyLut+": ("luts", "a.pt"), "MaskModel+": ("sams", "a.pt")}


def test_a_helper_that_lists_the_folder_it_is_given_names_that_folder(tmp_path):
    """`self.files = helper("clip")` then `[f for f in self.files]`: the helper returns a dict built from the
    files of the folder named by its argument, not the listing call itself."""
    defs = read_pack(write_pack(tmp_path, "inpaint-pack", {"nodes.py": """
        import os
        import folder_paths

        def files_in(folder_name, extensions=(".safetensors",)):
            try:
                dirs = folder_paths.get_folder_paths(folder_name)
            except KeyError:
                dirs = [os.path.join(folder_paths.models_dir, folder_name)]
            found = {}
            for d in dirs:
                for f in os.listdir(d):
                    found[f] = d
            return found

        class PaintLoader:
            @classmethod
            def INPUT_TYPES(self):
                self.clip_files = files_in("clip")
                self.paint_files = files_in("inpaint", [".bin"])
                return {"required": {"base": ([f for f in self.clip_files],),
                                     "paint": ([f for f in self.paint_files],)}}

        NODE_CLASS_MAPPINGS = {"PaintLoader": PaintLoader}
    """}))
    fm = folder_map_of(defs["PaintLoader"])
    assert fm is not None
    assert (fm.locate("base", "a.safetensors"), fm.locate("paint", "p/b.bin")) == (
        ("text_encoders", "a.safetensors"), ("inpaint", "p/b.bin"))


def test_a_core_loaders_file_written_without_its_extension_is_a_reference(tmp_path, host_for):
    """ComfyUI lists only files with a model extension: the node needs the name with one."""
    host = host_for(make_comfy_root(tmp_path))
    wf = make_workflow([node(1, "LoraLoaderModelOnly", ["detailer-13B-0.9.8", 1.0]),
                        node(2, "CheckpointLoaderSimple", ["urn:air:sdxl:checkpoint:civitai:1@2"]),
                        node(3, "LoraLoaderModelOnly", ["None", 1.0])])
    (s,) = scan_workflow_data(wf, "wf", host).models
    assert (s.ref.folder, s.ref.name, s.state) == ("loras", "detailer-13B-0.9.8.safetensors", "missing")
    assert "detailer-13B-0.9.8.ckpt" in s.ref.alternatives


def test_a_loader_that_encodes_its_own_prompts_reads_their_embeddings_inside_comfyui(tmp_path):
    fp = fake_folder_paths.make(tmp_path, {})

    class PromptedCheckpoint:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ckpt_name": (fp.get_filename_list("checkpoints"),),
                                 "positive": ("STRING", {"multiline": True}),
                                 "negative": ("STRING", {"multiline": True})}}

        RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "VAE")

    host = FolderPathsHost(fp, node_classes=lambda: {"PromptedCheckpoint": PromptedCheckpoint})
    report = scan_workflow_data(make_workflow([node(1, "PromptedCheckpoint", PROMPTED)]), "wf", host)
    assert ("embeddings", "EasyNegative.pt", "prompt") in _found(report)


def _files_in(fp, folder: str) -> list[str]:
    """A pack's own listing (BrushNet's get_files_with_extension): the folder's paths, else models/<folder>."""
    try:
        dirs = fp.get_folder_paths(folder)
    except KeyError:
        dirs = [os.path.join(fp.models_dir, folder)]
    return sorted(f for d in dirs if os.path.isdir(d) for f in os.listdir(d))


def test_an_input_listing_a_folder_comfyui_does_not_have_is_not_put_down_to_another_folder(tmp_path):
    """Two folders asked, one unregistered (its listing comes back empty): the empty input is not the other's."""
    fp = fake_folder_paths.make(tmp_path, {})

    class PaintClipLoader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"base": (_files_in(fp, "text_encoders"),), "paint": (_files_in(fp, "inpaint"),)}}

    class PaintLoader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"paint": (_files_in(fp, "inpaint"),)}}

    probe = probe_for(fp)
    both = probe.probe(PaintClipLoader)
    assert both is not None
    assert (both.locate("base", "clip_l.safetensors"), both.locate("paint", "p/model.bin")) == (
        ("text_encoders", "clip_l.safetensors"), None)
    alone = probe.probe(PaintLoader)  # the only folder asked: its empty input is that folder's
    assert alone is not None and alone.locate("paint", "p/model.bin") == ("inpaint", "p/model.bin")


def test_a_class_a_pack_decorator_registers_under_a_written_name_is_read(tmp_path):
    defs = read_pack(write_pack(tmp_path, "video-pack", {
        "registry.py": """
            NODE_CLASS_MAPPINGS = {}

            def register(node_class, name):
                NODE_CLASS_MAPPINGS[name] = node_class

            def video_node(node_class=None, name=None):
                def decorator(node_class):
                    register(node_class, name or node_class.__name__)
                    return node_class
                return decorator if node_class is None else decorator(node_class)
        """,
        "upsampler.py": """
            import folder_paths
            from .registry import video_node

            @video_node(name="VideoLatentUpsamplerLoader")
            class UpsamplerLoader:
                @classmethod
                def INPUT_TYPES(s):
                    return {"required": {"upscale_model": (folder_paths.get_filename_list("upscale_models"),)}}
        """,
        "__init__.py": """
            from .registry import NODE_CLASS_MAPPINGS as RUNTIME
            NODE_CLASS_MAPPINGS = {}
            NODE_CLASS_MAPPINGS.update(RUNTIME)
        """}))
    fm = folder_map_of(defs["VideoLatentUpsamplerLoader"])
    assert fm is not None and fm.locate("upscale_model", "x2.safetensors") == ("upscale_models", "x2.safetensors")


def test_a_servers_map_that_missed_a_folder_is_completed_by_the_packs_sources(tmp_path, host_for):
    """--server: the running pack could not list models/inpaint (not registered), the sources name it."""
    root = make_comfy_root(tmp_path)
    write_pack(root, "inpaint-pack", {"nodes.py": """
        import folder_paths

        class PaintLoader:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"base": (folder_paths.get_filename_list("text_encoders"),),
                                     "paint": (folder_paths.get_filename_list("inpaint"),)}}

        NODE_CLASS_MAPPINGS = {"PaintLoader": PaintLoader}
    """})
    info = {"PaintLoader": {"input": {"required": {"base": [[]], "paint": [[]]}},
                            "input_order": {"required": ["base", "paint"]}}}
    assert apply_server_maps(info, {"PaintLoader": {"complete": False, "inputs": {
        "base": [{"folder": "text_encoders", "prefix": "", "extensions": []}]}}}) == 1
    host = host_for(root, info)
    host.custom_nodes = root / "custom_nodes"
    wf = make_workflow([node(1, "PaintLoader", ["clip_l.safetensors", "powerpaint/pytorch_model.bin"])])
    assert {(s.ref.folder, s.ref.name, s.ref.folder_source) for s in scan_workflow_data(wf, "wf", host).models} == {
        ("text_encoders", "clip_l.safetensors", "server"), ("inpaint", "powerpaint/pytorch_model.bin", "static")}


def test_a_loop_over_a_huge_range_adds_a_bounded_number_of_inputs(tmp_path):
    """A pack's source is untrusted: `range(10000000)` in INPUT_TYPES is not run ten million times."""
    defs = read_pack(write_pack(tmp_path, "huge", {"__init__.py": """
        import folder_paths

        class Huge:
            @classmethod
            def INPUT_TYPES(cls):
                inputs = {"required": {}}
                for i in range(10000000):
                    for j in range(10000000):
                        inputs["required"][f"lora_{i}_{j}"] = (folder_paths.get_filename_list("loras"),)
                return inputs

        NODE_CLASS_MAPPINGS = {"Huge": Huge}
    """}))
    assert 0 < len(defs["Huge"]["input"]["required"]) <= 256

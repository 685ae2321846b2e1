"""Patterns met in the third real-pack corpus (tests/data/real_packs_3), each as a minimal pack or node.

Each test reproduces one way a pack builds its inputs or reads text that the scan got wrong there.
"""

from __future__ import annotations

from fixer.read.scan import scan_workflow_data
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

"""Model files named inside prompt text: `embedding:<name>` and `<lora:name:weight>`."""

from __future__ import annotations

from fixer.read.prompt_refs import embeddings_in, lora_tags_in, prompt_refs
from fixer.read.scan import scan_workflow_data
from tests.conftest import make_comfy_root, make_workflow, node


def names(refs):
    return [(r.folder, r.name) for r in refs]


def test_embedding_names_with_weights_commas_and_extensions():
    text = "masterpiece, (embedding:EasyNegative:1.2), embedding:bad-image-v2-39000.pt, embedding:sub/neg,"
    assert names(embeddings_in(text)) == [("embeddings", "EasyNegative.safetensors"),
                                          ("embeddings", "bad-image-v2-39000.pt"),
                                          ("embeddings", "sub/neg.safetensors")]


def test_embedding_syntax_counts_only_where_comfyui_s_tokenizer_reads_it():
    # sd1_clip.tokenize_with_weights: a word starting it (after a space or a line break), or a weighted
    # segment starting it (after a bracket); inside a word it is text
    text = "photo,embedding:glued my_embedding:inside\nembedding:a (b)embedding:c (embedding:d:0.8)"
    assert [r.written for r in embeddings_in(text)] == ["a", "c", "d"]
    assert [r.written for r in embeddings_in("embedding:first words")] == ["first"]


def test_an_embedding_without_extension_accepts_the_files_comfyui_tries():
    (ref,) = embeddings_in("embedding:EasyNegative")
    assert ref.alternatives == ("EasyNegative.pt", "EasyNegative.bin")


def test_lora_tags_name_the_lora_before_its_weights():
    text = "a cat <lora:add_detail:0.8> <LORA:styles/ink.safetensors:1:0.5> <lora:add_detail:1>"
    assert names(lora_tags_in(text)) == [("loras", "add_detail.safetensors"), ("loras", "styles/ink.safetensors")]


def test_lora_tags_count_only_in_nodes_that_parse_them():
    text = "a cat <lora:add_detail:0.8>"
    assert names(prompt_refs("ImpactWildcardEncode", "wildcard_text", None,
                             text)) == [("loras", "add_detail.safetensors")]
    assert names(prompt_refs("FaceDetailer", "wildcard", None, text)) == [("loras", "add_detail.safetensors")]
    assert names(prompt_refs("Lora Loader (LoraManager)", "text", None, text)) == [("loras", "add_detail.safetensors")]
    assert prompt_refs("CLIPTextEncode", "text", None, text) == []
    assert prompt_refs("Prompt (LoraManager)", "text", None, text) == []  # encodes the text as it is


def test_embeddings_count_in_custom_text_encoders_taking_a_clip():
    node_def = {"input": {"required": {"clip": ("CLIP",), "prompt": ("STRING", {"multiline": True})}}}
    assert names(prompt_refs("MyPromptNode", "prompt", node_def, "embedding:neg")) == [("embeddings",
                                                                                        "neg.safetensors")]
    assert prompt_refs("ShowText", "text", {"input": {"required": {"text": ("STRING", {})}}}, "embedding:neg") == []


def test_prompt_references_are_reported_and_the_text_is_no_file(tmp_path, host_for):
    root = make_comfy_root(tmp_path, {"models/embeddings/EasyNegative.pt": ""})
    text = "photo, (embedding:EasyNegative:1.2), embedding:bad-image-v2-39000.pt"
    wf = make_workflow([node(1, "CLIPTextEncode", [text]),
                        node(2, "ImpactWildcardEncode", ["<lora:add_detail:0.7> cat", "", "Select the LoRA", "", 0])])
    report = scan_workflow_data(wf, "wf", host_for(root))
    got = {(s.ref.folder, s.ref.name): (s.state, s.ref.folder_source) for s in report.models}
    assert got == {("embeddings", "EasyNegative.safetensors"): ("present", "prompt"),
                   ("embeddings", "bad-image-v2-39000.pt"): ("missing", "prompt"),
                   ("loras", "add_detail.safetensors"): ("missing", "prompt")}

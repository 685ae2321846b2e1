"""Every workflow format a user has is read, and every model reference in it is found."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from fixer.read.scan import scan_paths, scan_workflow_data
from tests.conftest import make_workflow, node, write_json


def names(report, state="missing"):
    return sorted((s.ref.folder, s.ref.name) for s in report.models if s.state == state)


def test_ui_list_widgets_core_loaders_map_to_canonical_folders(comfy_root, host_for):
    wf = make_workflow([
        node(1, "CheckpointLoaderSimple", ["sd_xl_base_1.0.safetensors"]),
        node(2, "DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"]),
        node(3, "UNETLoader", ["flux1-dev.safetensors", "default"]),
        node(4, "LoraLoader", ["detail.safetensors", 1.0, 1.0]),
    ])
    report = scan_workflow_data(wf, "wf.json", host_for(comfy_root))
    assert names(report) == [
        ("checkpoints", "sd_xl_base_1.0.safetensors"), ("diffusion_models", "flux1-dev.safetensors"),
        ("loras", "detail.safetensors"), ("text_encoders", "clip_l.safetensors"),
        ("text_encoders", "t5xxl_fp16.safetensors")]


def test_dict_widgets_values_are_read_by_input_name(comfy_root, host_for):
    wf = make_workflow([node(1, "LoraLoader", {"lora_name": "style.safetensors", "strength_model": 1})])
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    assert names(report) == [("loras", "style.safetensors")]
    assert report.models[0].ref.usages[0].input_name == "lora_name"


def test_properties_models_give_hints_and_top_level_models_too(comfy_root, host_for):
    entry = {"name": "ae.safetensors", "url": "https://huggingface.co/a/b/resolve/main/ae.safetensors",
             "hash": "ab" * 32, "hash_type": "sha256", "directory": "vae"}
    wf = make_workflow([node(1, "VAELoader", ["ae.safetensors"], models=[entry])],
                       models=[{"name": "unused.safetensors", "url": "https://x/unused.safetensors",
                                "directory": "loras"}])
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    (missing,) = report.by_state("missing")
    assert missing.ref.hint("url") == entry["url"] and missing.ref.hint("hash") == entry["hash"]
    assert names(report, "unused") == [("loras", "unused.safetensors")]


def test_subgraphs_inside_subgraphs_are_walked_with_their_path(comfy_root, host_for):
    inner = {"id": "sg-inner", "name": "Inner", "nodes": [node(7, "LoraLoaderModelOnly", ["deep.safetensors", 1])]}
    outer = {"id": "sg-outer", "name": "Outer", "nodes": [node(5, "sg-inner"), node(6, "VAELoader", ["v.safetensors"])]}
    wf = make_workflow([node(1, "sg-outer")], definitions={"subgraphs": [outer, inner]})
    report = scan_workflow_data(wf, "wf", host_for(comfy_root, {}))
    deep = next(s for s in report.models if s.ref.name == "deep.safetensors")
    assert deep.ref.folder == "loras"
    assert deep.ref.usages[0].subgraph_path == ("Outer#1", "Inner#5")
    assert "sg-inner" not in {n.node_type for n in report.missing_nodes}


def test_a_subgraph_that_contains_itself_does_not_hang(comfy_root, host_for):
    loop = {"id": "sg", "name": "Loop", "nodes": [node(2, "sg"), node(3, "VAELoader", ["v.safetensors"])]}
    wf = make_workflow([node(1, "sg")], definitions={"subgraphs": [loop]})
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    assert names(report) == [("vae", "v.safetensors")]


def test_legacy_group_nodes_are_scanned_and_not_reported_as_missing_types(comfy_root, host_for, object_info):
    groups = {"MyGroup": {"nodes": [{"type": "CheckpointLoaderSimple", "index": 0,
                                     "widgets_values": ["grouped.safetensors"]}], "links": [], "external": []}}
    wf = make_workflow([node(1, "workflow>MyGroup", ["grouped.safetensors"])], extra={"groupNodes": groups})
    report = scan_workflow_data(wf, "wf", host_for(comfy_root, object_info))
    assert names(report) == [("checkpoints", "grouped.safetensors")]
    assert report.missing_nodes == []


def test_a_group_node_instance_s_own_values_are_read_for_the_nodes_it_holds(comfy_root, host_for, object_info):
    """As ComfyUI_examples' sdxl_edit_model.png: the definition keeps the values the group was made with,
    the instance the ones the user set since (and those are what the API form runs)."""
    groups = {"Loaders": {"nodes": [
        {"index": 0, "type": "CheckpointLoaderSimple", "widgets_values": ["made_with.safetensors"]},
        {"index": 1, "type": "LoraLoader", "widgets_values": ["old_style.safetensors", 1, 1]},
        {"index": 2, "type": "KSampler", "widgets_values": [1, "fixed", 20, 8, "euler", "normal", 1]}]}}
    values = ["my_vae_baked.safetensors", "new_style.safetensors", 0.8, 1, 5, "randomize", 30, 7, "euler", "karras", 1]
    wf = make_workflow([node(1, "workflow>Loaders", values, mode=4)], extra={"groupNodes": groups})
    report = scan_workflow_data(wf, "wf", host_for(comfy_root, object_info))
    assert {(s.ref.folder, s.ref.name) for s in report.models} == {
        ("checkpoints", "my_vae_baked.safetensors"), ("loras", "new_style.safetensors")}
    assert {(u.node_id, u.node_type, u.input_name, u.optional) for s in report.models for u in s.ref.usages} == {
        ("1:0", "CheckpointLoaderSimple", "ckpt_name", True), ("1:1", "LoraLoader", "lora_name", True)}
    assert report.missing_nodes == []


def test_a_group_node_instance_whose_values_do_not_fit_its_nodes_falls_back_to_the_definition(comfy_root, host_for):
    groups = {"G": {"nodes": [{"index": 0, "type": "VAELoader", "widgets_values": ["defined.safetensors"]}]}}
    wf = make_workflow([node(1, "workflow/G", ["a", "b"])], extra={"groupNodes": groups})
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    assert names(report) == [("vae", "defined.safetensors")]


def test_bypassed_and_muted_nodes_are_reported_but_optional(comfy_root, host_for):
    wf = make_workflow([node(1, "LoraLoader", ["a.safetensors", 1, 1], mode=4),
                        node(2, "LoraLoader", ["b.safetensors", 1, 1], mode=2),
                        node(3, "LoraLoader", ["c.safetensors", 1, 1], mode=0)])
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    optional = {s.ref.name: s.ref.optional for s in report.models}
    assert optional == {"a.safetensors": True, "b.safetensors": True, "c.safetensors": False}


def test_api_format_and_wrapped_files(tmp_path, comfy_root, host_for):
    api = {"3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "api.safetensors"}},
           "4": {"class_type": "KSampler", "inputs": {"model": ["3", 0], "seed": 1}}}
    write_json(tmp_path / "wfs" / "api.json", api)
    write_json(tmp_path / "wfs" / "both.json",
               {"workflow": make_workflow([node(1, "VAELoader", ["wrapped.safetensors"])]), "prompt": api})
    report = scan_paths([str(tmp_path / "wfs")], host_for(comfy_root))
    assert names(report) == [("checkpoints", "api.safetensors"), ("vae", "wrapped.safetensors")]
    assert report.problems == []


def _png_with(texts: dict[str, str]) -> bytes:
    info = PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_png_with_embedded_workflow_and_prompt(tmp_path, comfy_root, host_for):
    wf = make_workflow([node(1, "UpscaleModelLoader", ["4x-UltraSharp.pth"])])
    (tmp_path / "img.png").write_bytes(_png_with({"workflow": json.dumps(wf), "prompt": "{}"}))
    report = scan_paths([str(tmp_path / "img.png")], host_for(comfy_root))
    assert names(report) == [("upscale_models", "4x-UltraSharp.pth")]


def test_png_without_metadata_is_a_clear_per_file_error(tmp_path, comfy_root, host_for):
    (tmp_path / "plain.png").write_bytes(_png_with({}))
    report = scan_paths([str(tmp_path / "plain.png")], host_for(comfy_root))
    assert report.models == []
    assert "no ComfyUI workflow is embedded" in report.problems[0].error


def test_animated_png_comf_chunk(tmp_path, comfy_root, host_for):
    png = _png_with({})
    wf = json.dumps(make_workflow([node(1, "VAELoader", ["anim.safetensors"])])).encode()
    body = b"workflow\x00" + wf
    chunk = struct.pack(">I", len(body)) + b"comf" + body + struct.pack(">I", zlib.crc32(b"comf" + body))
    iend = png.rindex(b"IEND") - 4
    (tmp_path / "anim.png").write_bytes(png[:iend] + chunk + png[iend:])
    report = scan_paths([str(tmp_path / "anim.png")], host_for(comfy_root))
    assert names(report) == [("vae", "anim.safetensors")]


def test_webp_exif_workflow(tmp_path, comfy_root, host_for):
    wf = json.dumps(make_workflow([node(1, "CLIPVisionLoader", ["clip_vision_h.safetensors"])]))
    exif = Image.Exif()
    exif[0x010F] = "workflow:" + wf
    exif[0x0110] = "prompt:{}"
    Image.new("RGB", (4, 4)).save(tmp_path / "img.webp", "WEBP", exif=exif)
    report = scan_paths([str(tmp_path / "img.webp")], host_for(comfy_root))
    assert names(report) == [("clip_vision", "clip_vision_h.safetensors")]


def test_folders_are_scanned_recursively(tmp_path, comfy_root, host_for):
    write_json(tmp_path / "w" / "a" / "b" / "deep.json", make_workflow([node(1, "VAELoader", ["d.safetensors"])]))
    report = scan_paths([str(tmp_path / "w")], host_for(comfy_root))
    assert report.workflows == [str(Path("a/b/deep.json"))]

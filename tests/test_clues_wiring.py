"""The scan hands the resolver what a workflow or image says besides file names: AIR URNs, Civitai
resources and A1111 hashes on the references they name, and every node type for the model family."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelRef, ScanReport
from fixer.read.scan import scan_paths
from fixer.sources.family import report_families
from tests.conftest import make_comfy_root, make_workflow, node, write_json

TINY_LORA_AIR = "urn:air:sd1:lora:civitai:9000101@9100101"  # the fake's fixture_tiny_lora.safetensors
TINY_LORA_AUTOV2 = "918A1A96CD"
ADD_DETAIL_AIR = "urn:air:sd1:lora:civitai:58390@62833"
CHECKPOINT_AIR = "urn:air:sdxl:checkpoint:civitai:101055@128078"


def scan(tmp_path: Path, host_for, path: Path) -> ScanReport:
    return scan_paths([str(path)], host_for(make_comfy_root(tmp_path)))


def ref(report: ScanReport, name: str) -> ModelRef:
    return next(s.ref for s in report.models if s.ref.name == name)


async def resolve(r: ModelRef):
    ctx = ResolveContext(config=SearchConfig(use_catalogs=False, huggingface=False, retries=1), secrets={},
                         inventory=None, state_dir=None, comfyui_root=None)
    return [x async for x in Resolver(ctx).resolve([r])][0]


def lora_workflow(*loras: str, airs: list[str]) -> dict:
    nodes = [node(1, "CheckpointLoaderSimple", ["sd_xl_base_1.0.safetensors"])]
    nodes += [node(2 + i, "LoraLoader", [name, 1.0, 1.0]) for i, name in enumerate(loras)]
    return make_workflow(nodes, extra={"airs": airs})


async def test_an_air_only_reference_whose_name_exists_nowhere_is_found_by_the_workflows_version_id(
        tmp_path, host_for, upstream):
    wf = write_json(tmp_path / "wf.json", lora_workflow("downloaded_glow_q7.safetensors",
                                                        airs=[CHECKPOINT_AIR, TINY_LORA_AIR]))
    report = scan(tmp_path, host_for, wf)
    lora = ref(report, "downloaded_glow_q7.safetensors")
    assert [h.url for h in lora.hints] == [TINY_LORA_AIR]
    assert [h.url for h in ref(report, "sd_xl_base_1.0.safetensors").hints] == [CHECKPOINT_AIR]
    r = await resolve(lora)
    assert r.chosen.ids["version_id"] == 9100101 and r.chosen.filename == "downloaded_glow_q7.safetensors"


def test_one_version_for_several_references_of_its_kind_goes_on_none_several_go_on_each(tmp_path, host_for):
    lone = scan(tmp_path, host_for, write_json(tmp_path / "a.json", lora_workflow(
        "first_q7.safetensors", "second_q7.safetensors", airs=[TINY_LORA_AIR])))
    assert not ref(lone, "first_q7.safetensors").hints and not ref(lone, "second_q7.safetensors").hints
    many = scan(tmp_path, host_for, write_json(tmp_path / "b.json", lora_workflow(
        "first_q7.safetensors", "second_q7.safetensors", airs=[TINY_LORA_AIR, ADD_DETAIL_AIR])))
    for name in ("first_q7.safetensors", "second_q7.safetensors"):
        assert sorted(h.url for h in ref(many, name).hints) == sorted([TINY_LORA_AIR, ADD_DETAIL_AIR])


def test_an_air_in_an_api_prompts_node_input_goes_on_the_reference_of_its_kind(tmp_path, host_for):
    prompt = {"1": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "renamed_q7.safetensors",
                                                                     "strength_model": 1.0, "model": ["3", 0]}},
              "2": {"class_type": "CivitaiResourceTag", "inputs": {"air": TINY_LORA_AIR}},
              "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base_q7.safetensors"}}}
    report = scan(tmp_path, host_for, write_json(tmp_path / "api.json", prompt))
    assert [h.url for h in ref(report, "renamed_q7.safetensors").hints] == [TINY_LORA_AIR]
    assert not ref(report, "base_q7.safetensors").hints


async def test_a_pngs_a1111_lora_hash_finds_the_renamed_lora_on_civitai(tmp_path, host_for, upstream):
    wf = lora_workflow("my_glow_q7.safetensors", airs=[])
    info = PngInfo()
    info.add_text("workflow", json.dumps(wf))
    info.add_text("parameters",
                  f'a cat\nSteps: 20, Model: sd_xl_base_1.0, Lora hashes: "my_glow_q7: {TINY_LORA_AUTOV2}"')
    png = tmp_path / "image.png"
    Image.new("RGB", (4, 4)).save(png, pnginfo=info)
    lora = ref(scan(tmp_path, host_for, png), "my_glow_q7.safetensors")
    assert lora.hint("hash") == TINY_LORA_AUTOV2
    r = await resolve(lora)
    assert r.chosen.source == "civitai" and r.chosen.ids["version_id"] == 9100101


def test_a_webps_exif_user_comment_gives_the_a1111_hashes_and_civitai_resources(tmp_path, host_for):
    exif = Image.Exif()
    exif[0x010F] = "workflow:" + json.dumps(lora_workflow("my_glow_q7.safetensors", "other_q7.safetensors", airs=[]))
    text = ('a cat\nSteps: 20, Lora hashes: "my_glow_q7: 1A2B3C4D5E", '
            'Civitai resources: [{"type":"checkpoint","modelVersionId":128078}], Version: v1')
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    webp = tmp_path / "image.webp"
    Image.new("RGB", (4, 4)).save(webp, "WEBP", exif=exif)
    report = scan(tmp_path, host_for, webp)
    assert ref(report, "my_glow_q7.safetensors").hint("hash") == "1A2B3C4D5E"
    assert not ref(report, "other_q7.safetensors").hints
    assert [h.url for h in ref(report, "sd_xl_base_1.0.safetensors").hints] == ["civitai:128078"]


def test_a_workflow_whose_only_family_clue_is_its_node_types_gets_that_family(tmp_path, host_for):
    wan = make_workflow([node(1, "UNETLoader", ["model_q7.safetensors", "default"]),
                         node(2, "WanVideoSampler", [30, 6.0])])
    cloud = make_workflow([node(1, "LoraLoader", ["glow_q7.safetensors", 1.0, 1.0]),
                           node(2, "Wan2TextToVideoApi", ["a cat"])])  # a cloud model's node tells nothing
    write_json(tmp_path / "flows" / "wan.json", wan)
    write_json(tmp_path / "flows" / "cloud.json", cloud)
    report = scan(tmp_path, host_for, tmp_path / "flows")
    assert "WanVideoSampler" in report.node_types["wan.json"]
    assert report_families(report) == {"wan.json": "Wan"}

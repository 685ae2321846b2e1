"""Hugging Face by kind: what the folder tells (SAM, YOLO ...) and the model family's publishers are searched
too, since the Hub searches repo ids only and these files sit in repos named after neither."""

from __future__ import annotations

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelRef, Usage
from fixer.sources.huggingface import KIND_BUDGET, kind_queries
from tests.fake_upstream.api_routes import add_hf_repo, crowd_searches


async def hf_only(refs: list[ModelRef], families: dict[str, str] | None = None):
    ctx = ResolveContext(config=SearchConfig(civitai=False, use_catalogs=False, retries=1), secrets={},
                         inventory=None, state_dir=None, comfyui_root=None, families=families)
    return {r.name: r async for r in Resolver(ctx).resolve(refs)}


async def test_a_sam_file_is_found_in_a_segment_anything_repo(upstream):
    add_hf_repo(upstream, "ybelkada/segment-anything", {"checkpoints/sam_vit_b_01ec64.pth": (375_042_383, "1a" * 32)},
                downloads=5000)
    r = (await hf_only([ModelRef("sam_vit_b_01ec64.pth", "sams")]))["sam_vit_b_01ec64.pth"]
    assert r.chosen and r.chosen.ids["repo_id"] == "ybelkada/segment-anything" and r.chosen.folder == "sams"


async def test_a_yolo_detector_is_found_in_an_adetailer_repo_behind_crowded_yolo_pages(upstream):
    crowd_searches(upstream, hf_words=["yolo"], per_word=80)
    add_hf_repo(upstream, "Bingsu/adetailer", {"face_yolov8m.pt": (52_026_019, "2b" * 32)}, downloads=900_000)
    r = (await hf_only([ModelRef("face_yolov8m.pt", "ultralytics_bbox")]))["face_yolov8m.pt"]
    assert r.chosen and r.chosen.ids["repo_id"] == "Bingsu/adetailer"


async def test_the_workflows_family_publishers_are_listed(upstream):
    add_hf_repo(upstream, "XLabs-AI/flux-furry-lora", {"qx7_weights_final.safetensors": (9_000, "3c" * 32)},
                downloads=800)
    ref = ModelRef("qx7_weights_final.safetensors", "loras", usages=[Usage("flux.json", "3", "LoraLoader")])
    r = (await hf_only([ref], families={"flux.json": "Flux"}))["qx7_weights_final.safetensors"]
    assert r.chosen and r.chosen.ids["repo_id"] == "XLabs-AI/flux-furry-lora"


def test_kind_searches_stay_within_the_budget():
    assert kind_queries("upscale_models", None) == [{"search": "esrgan"}, {"search": "upscale"}]
    assert kind_queries("controlnet", "Flux") == [{"search": "controlnet"}, {"author": "black-forest-labs"},
                                                  {"author": "XLabs-AI"}]
    assert len(kind_queries("sams", "Wan")) == KIND_BUDGET and kind_queries("loras", None) == []


async def test_a_repo_named_for_another_family_ranks_below_the_chains_one_and_alone_is_picked_with_a_note(upstream):
    add_hf_repo(upstream, "artist/pixel-art-xl", {"pixel_art_q.safetensors": (1_000, "4d" * 32)}, downloads=90_000)
    add_hf_repo(upstream, "artist2/pixel-art-sd15", {"pixel_art_q.safetensors": (1_001, "5e" * 32)}, downloads=300)
    add_hf_repo(upstream, "artist/glyph-xl", {"glyph_q.safetensors": (1_002, "6f" * 32)}, downloads=10)
    refs = [ModelRef(n, "loras", usages=[Usage("sd15.json", "1", "LoraLoader")])
            for n in ("pixel_art_q.safetensors", "glyph_q.safetensors")]
    r = await hf_only(refs, families={"sd15.json": "SD 1.5"})
    assert r["pixel_art_q.safetensors"].chosen.ids["repo_id"] == "artist2/pixel-art-sd15"
    glyph = r["glyph_q.safetensors"]
    # the only repo holding the name: its id's family is a guess that never vetoes the exact name
    assert glyph.chosen.ids["repo_id"] == "artist/glyph-xl"
    assert glyph.chosen.reason.startswith("made for SDXL; this chain looks SD 1.5")

"""Civitai as it really is: NSFW-rated models, the exact-file-name query, renamed downloads, model families."""

from __future__ import annotations

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelRef, Usage
from fixer.sources.civitai import download_name_key, file_matches, name_queries
from fixer.sources.family import family_of_base_model, family_of_name, fit, workflow_families
from tests.fake_upstream.api_routes import add_civitai_model, crowd_searches


def civitai(mid: int, name: str, files: list[tuple[str, str]], mtype: str = "LORA", base: str = "SD 1.5",
            nsfw: bool = False, version: str = "v1", downloads: int = 10) -> dict:
    return {"id": mid, "name": name, "type": mtype, "nsfw": nsfw, "creator": {"username": "maker"},
            "stats": {"downloadCount": downloads},
            "modelVersions": [{"id": mid * 10, "name": version, "baseModel": base, "trainedWords": [],
                               "files": [{"id": mid * 10 + i, "name": fname, "sizeKB": 1.0, "type": "Model",
                                          "metadata": {"format": "SafeTensor"}, "primary": i == 0,
                                          "hashes": {"SHA256": sha.upper()},
                                          "downloadUrl": f"https://civitai.com/api/download/models/{mid * 10}"}
                                         for i, (fname, sha) in enumerate(files)]}]}


def used_in(workflow: str, node_type: str = "LoraLoader") -> list[Usage]:
    return [Usage(workflow, "1", node_type)]


async def resolve(refs: list[ModelRef], families: dict[str, str] | None = None):
    ctx = ResolveContext(config=SearchConfig(huggingface=False, use_catalogs=False, retries=2), secrets={},
                         inventory=None, state_dir=None, comfyui_root=None, families=families)
    return {r.name: r async for r in Resolver(ctx).resolve(refs)}


def test_queries_go_from_the_exact_file_name_to_its_words_without_marks():
    assert name_queries("fp16_glowStyle_v2.safetensors") == ["fp16_glowStyle_v2.safetensors", "fp16 glow Style v2",
                                                             "glow Style"]


def test_download_name_follows_civitais_model_version_rule():
    assert download_name_key("majicMIX realistic 麦橘写实", "v7") == "majicmixrealisticv7"
    assert download_name_key("DreamShaper", "DreamShaper 8") == "dreamshaper8"


def test_file_matches_through_each_renaming_rule_and_not_otherwise():
    model, version = {"name": "Crimson Ink Style"}, {"name": "v2"}
    assert file_matches("ink.a1b2.safetensors", model, version, {"name": "ink.safetensors"})
    assert file_matches("Ink-Style.safetensors", model, version, {"name": "ink_style.safetensors"})
    assert file_matches("crimsonInkStyle_v2.safetensors", model, version, {"name": "upload.safetensors"})
    assert file_matches("ink.safetensors", model, version, {"name": "ink.ckpt"}) is None
    assert file_matches("ink_v3.safetensors", model, version, {"name": "ink_v2.safetensors"}) is None


async def test_nsfw_rated_model_is_found_because_nsfw_true_is_sent(upstream):
    add_civitai_model(upstream, civitai(6101, "Velvet Noir Realism", [("velvetNoir_v3.safetensors", "a1" * 32)],
                                        mtype="Checkpoint", nsfw=True, version="v3"))
    r = (await resolve([ModelRef("velvetNoir_v3.safetensors", "checkpoints")]))["velvetNoir_v3.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 6101
    assert all("nsfw=true" in x.path_qs for x in upstream.requests if x.path_qs.startswith("/api/v1/models?"))


async def test_a_name_whose_words_name_no_model_is_found_by_the_exact_file_name_query(upstream):
    add_civitai_model(upstream, civitai(6102, "Detail Slider", [("qx_addon_d7.safetensors", "b2" * 32)]))
    r = (await resolve([ModelRef("qx_addon_d7.safetensors", "loras")]))["qx_addon_d7.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 6102 and "exact file name" in r.chosen.reason


async def test_checkpoint_under_civitais_download_name_is_found(upstream):
    add_civitai_model(upstream, civitai(6103, "Tin Soldier Mix", [("tin_upload_final.safetensors", "c3" * 32)],
                                        mtype="Checkpoint", version="v4.5"))
    r = (await resolve([ModelRef("tinSoldierMix_v45.safetensors", "checkpoints")]))["tinSoldierMix_v45.safetensors"]
    assert r.chosen and r.chosen.ids["version_id"] == 61030 and "download name" in r.chosen.reason


async def test_lora_with_a_random_download_suffix_is_found(upstream):
    add_civitai_model(upstream, civitai(6104, "Paper Lantern Glow", [("paper_lantern_glow.safetensors", "d4" * 32)]))
    r = (await resolve([ModelRef("paper_lantern_glow.k3x9.safetensors", "loras")]))
    c = r["paper_lantern_glow.k3x9.safetensors"].chosen
    assert c and c.ids["model_id"] == 6104 and "random download suffix" in c.reason


async def test_a_model_behind_a_page_full_of_popular_matches_is_found(upstream):
    crowd_searches(upstream, civitai_words=["ink"], per_word=40)
    add_civitai_model(upstream, civitai(6105, "Ink Wash Painting", [("ink_wash.safetensors", "e5" * 32)]))
    r = (await resolve([ModelRef("ink_wash.safetensors", "loras")]))["ink_wash.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 6105


async def test_same_name_for_two_base_models_picks_the_workflows_family(upstream):
    add_civitai_model(upstream, civitai(6106, "Moss Glow", [("moss_glow.safetensors", "f6" * 32)], base="SDXL 1.0",
                                        downloads=500))
    add_civitai_model(upstream, civitai(6107, "Moss Glow SD15", [("moss_glow.safetensors", "a7" * 32)]))
    ref = ModelRef("moss_glow.safetensors", "loras", usages=used_in("portrait.json"))
    r = (await resolve([ref], families={"portrait.json": "SD 1.5"}))["moss_glow.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 6107
    assert any("made for SDXL; this chain looks SD 1.5" in c.reason for c in r.candidates)


async def test_an_exact_unique_name_of_another_family_is_picked_with_the_mismatch_said(upstream):
    add_civitai_model(upstream, civitai(6108, "Lone Flux Glow", [("lone_flux_glow.safetensors", "b8" * 32)],
                                        base="Flux.1 D"))
    ref = ModelRef("lone_flux_glow.safetensors", "loras", usages=used_in("sdxl.json"))
    r = (await resolve([ref], families={"sdxl.json": "SDXL"}))["lone_flux_glow.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 6108
    assert r.chosen.reason.startswith("made for Flux; this chain looks SDXL")


def test_families_come_from_base_models_names_and_node_types():
    assert family_of_base_model("SDXL 1.0") == "SDXL" and family_of_base_model("Pony") == "Pony"
    assert family_of_base_model("Flux.1 D") == "Flux" and family_of_base_model("SD 1.5 Hyper") == "SD 1.5"
    assert family_of_name("ponyDiffusionV6XL_v6.safetensors") == "Pony"
    assert family_of_name("sd_xl_base_1.0.safetensors") == "SDXL"
    assert family_of_name("v1-5-pruned-emaonly.safetensors") == "SD 1.5"
    assert family_of_name("wan2.1_t2v_1.3B_fp16.safetensors") == "Wan"
    assert fit("Pony", "SDXL") == "kin" and fit("SD 1.5", "SDXL") == "other" and fit(None, "SDXL") == "unknown"
    refs = [ModelRef("v1-5-pruned-emaonly.safetensors", "checkpoints",
                     usages=used_in("a.json", "CheckpointLoaderSimple")),
            ModelRef("any_lora.safetensors", "loras", usages=used_in("a.json")),
            ModelRef("mystery.safetensors", "diffusion_models", usages=used_in("b.json", "UNETLoader"))]
    assert workflow_families(refs, {"b.json": ["FluxGuidance", "KSampler"]}) == {"a.json": "SD 1.5", "b.json": "Flux"}


async def test_an_sdxl_lora_in_a_pony_workflow_loses_to_the_pony_one_and_alone_is_picked(upstream):
    add_civitai_model(upstream, civitai(6109, "Dune Glow", [("dune_glow.safetensors", "c9" * 32)], base="SDXL 1.0",
                                        downloads=90_000))
    add_civitai_model(upstream, civitai(6110, "Dune Glow Pony", [("dune_glow.safetensors", "d0" * 32)], base="Pony"))
    add_civitai_model(upstream, civitai(6111, "Kelp Glow", [("kelp_glow.safetensors", "e1" * 32)], base="SDXL 1.0"))
    refs = [ModelRef(n, "loras", usages=used_in("pony.json")) for n in ("dune_glow.safetensors",
                                                                        "kelp_glow.safetensors")]
    r = await resolve(refs, families={"pony.json": "Pony"})
    assert r["dune_glow.safetensors"].chosen.ids["model_id"] == 6110
    kelp = r["kelp_glow.safetensors"]
    assert kelp.chosen.ids["model_id"] == 6111 and kelp.chosen.reason.startswith("made for SDXL; this chain looks Pony")
    dune = r["dune_glow.safetensors"].candidates[0]
    assert dune.ids["model_id"] == 6109 and dune.confidence < 0.7


async def test_a_one_word_name_behind_a_full_first_page_is_found_on_the_next(upstream):
    crowd_searches(upstream, civitai_words=["quill"], per_word=70)
    add_civitai_model(upstream, civitai(6112, "Quill", [("quill.safetensors", "f2" * 32)], downloads=3))
    r = (await resolve([ModelRef("quill.b7c1.safetensors", "loras")]))["quill.b7c1.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 6112
    assert any("cursor=" in x.path_qs for x in upstream.requests if x.path_qs.startswith("/api/v1/models?"))


async def test_resolving_goes_on_through_both_services_rate_limits(upstream):
    civ = upstream.rate_limit("civitai", every=1, retry_after=0.05, times=2)
    hf = upstream.rate_limit("huggingface", every=2, retry_after=0.05)
    add_civitai_model(upstream, civitai(6113, "Garnet Veil", [("garnet_veil.safetensors", "a3" * 32)], nsfw=True))
    ctx = ResolveContext(config=SearchConfig(use_catalogs=False), secrets={}, inventory=None, state_dir=None,
                         comfyui_root=None)
    r = [x async for x in Resolver(ctx).resolve([ModelRef("garnet_veil.safetensors", "loras")])][0]
    assert r.chosen and r.chosen.ids["model_id"] == 6113 and civ.hits >= 1 and hf.hits >= 1


async def test_same_name_for_two_base_models_with_the_family_unknown_is_left_to_the_user(upstream):
    add_civitai_model(upstream, civitai(6114, "Fern Glow XL", [("fern_glow.safetensors", "")], base="SDXL 1.0",
                                        downloads=90_000))  # no hashes published: bytes cannot be compared
    add_civitai_model(upstream, civitai(6115, "Fern Glow", [("fern_glow.safetensors", "")]))
    r = (await resolve([ModelRef("fern_glow.safetensors", "loras")]))["fern_glow.safetensors"]
    assert r.chosen is None and "exists for SD 1.5 and SDXL" in r.candidates[0].reason
    assert r.why == "This name exists for SD 1.5 and SDXL: choose the one your chain's base model needs."

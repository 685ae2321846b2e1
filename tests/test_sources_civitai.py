"""Civitai source and the fake's Civitai semantics: by-hash, name search, folders, errors."""

from __future__ import annotations

import aiohttp

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelHint, ModelRef
from fixer.sources.civitai import file_folder, query_words
from tests.fake_upstream import Fault
from tests.fake_upstream.api_routes import add_civitai_model

TINY_LORA_SHA = "918A1A96CDFFF4248358C71D9CC53F8A02342C59326B341923C83DCEFE224EA1"


async def civitai_only(ref: ModelRef, secrets: dict | None = None):
    ctx = ResolveContext(config=SearchConfig(huggingface=False, use_catalogs=False, retries=2),
                         secrets=secrets or {}, inventory=None, state_dir=None, comfyui_root=None)
    return [r async for r in Resolver(ctx).resolve([ref])][0]


def model(mid: int, name: str, mtype: str, files: list[dict], username: str = "someone") -> dict:
    return {"id": mid, "name": name, "type": mtype, "creator": {"username": username}, "stats": {"downloadCount": 1},
            "modelVersions": [{"id": mid * 10, "name": "v1", "baseModel": "SDXL 1.0", "trainedWords": [],
                               "files": files, "downloadUrl": f"https://civitai.com/api/download/models/{mid * 10}"}]}


def cfile(name: str, sha: str, kind: str = "Model", fmt: str = "SafeTensor") -> dict:
    return {"id": 1, "name": name, "sizeKB": 2.0, "type": kind, "metadata": {"format": fmt},
            "hashes": {"SHA256": sha.upper(), "AutoV2": sha[:10].upper()}, "primary": True,
            "downloadUrl": "https://civitai.com/api/download/models/1"}


def test_query_is_the_file_stem_in_words():
    assert query_words("add_detail-v2.safetensors") == "add detail v2"
    assert query_words("majicmixRealistic_v7.safetensors") == "majicmix Realistic v7"


async def test_camel_case_file_name_finds_the_model_named_in_words(upstream):
    r = await civitai_only(ModelRef("majicmixRealistic_v7.safetensors", "checkpoints"))
    assert r.chosen.ids["version_id"] == 176425


def test_file_type_decides_the_folder_before_the_model_type():
    assert file_folder("Checkpoint", {"type": "VAE"}) == "vae"
    assert file_folder("LoCon", {"type": "Model"}) == "loras"
    assert file_folder("Poses", {"type": "Model"}) is None


async def test_sha256_hint_resolves_by_hash_case_insensitively(upstream):
    ref = ModelRef("renamed.safetensors", "loras", hints=[ModelHint(hash=TINY_LORA_SHA.lower(), hash_type="sha256")])
    r = await civitai_only(ref)
    assert r.chosen.source == "civitai" and r.chosen.confidence >= 0.98
    assert r.chosen.sha256 == TINY_LORA_SHA.lower() and r.chosen.size == round(1172.015625 * 1024)
    assert r.chosen.url == f"{upstream.base}/api/download/models/9100101"  # origin rewritten to the fake


async def test_autov2_hint_resolves_by_hash(upstream):
    r = await civitai_only(ModelRef("x.safetensors", "loras", hints=[ModelHint(hash="918a1a96cd")]))
    assert r.chosen.ids["version_id"] == 9100101


async def test_unknown_hash_falls_back_to_name_search(upstream):
    r = await civitai_only(ModelRef("fixture_tiny_lora.safetensors", "loras", hints=[ModelHint(hash="DEADBEEF00")]))
    assert r.chosen.ids["version_id"] == 9100101 and r.chosen.confidence == 0.85
    assert any("Model not found" in t for t in r.tried)


async def test_name_search_finds_model_whose_name_holds_the_words(upstream):
    add_civitai_model(upstream, model(777, "Glowy Neon Style", "LORA", [cfile("glowy_neon.safetensors", "ab" * 32)]))
    r = await civitai_only(ModelRef("glowy_neon.safetensors", "loras"))
    assert r.chosen.ids == {**r.chosen.ids, "model_id": 777, "version_id": 7770}
    assert r.chosen.folder == "loras" and r.chosen.sha256 == "ab" * 32


async def test_words_of_file_names_are_not_searched_only_the_exact_name(upstream):
    # add_detail.safetensors is the file of "Detail Tweaker LoRA": its words are not in the model's name;
    # Civitai answers only the query that is exactly the file name (civitai/civitai#933).
    r = await civitai_only(ModelRef("add_detail.safetensors", "loras"))
    assert r.chosen.ids["version_id"] == 62833
    searches = [x.path_qs for x in upstream.requests if x.path_qs.startswith("/api/v1/models?")]
    assert len(searches) == 1 and "query=add_detail.safetensors" in searches[0]


async def test_search_drops_words_from_the_end_until_something_matches(upstream):
    add_civitai_model(upstream, model(778, "Glowy Neon Style", "LORA", [cfile("glowy_neon_xl_v2.safetensors",
                                                                              "cd" * 32)]))
    r = await civitai_only(ModelRef("glowy_neon_xl_v2.safetensors", "loras"))
    assert r.chosen.ids["model_id"] == 778


async def test_civitai_folder_wins_over_a_keyword_guess(upstream):
    add_civitai_model(upstream, model(781, "Quill Vae", "Checkpoint", [cfile("quill_vae.safetensors", "ab" * 32,
                                                                             "VAE")]))
    r = await civitai_only(ModelRef("quill_vae.safetensors", "checkpoints", folder_source="keyword"))
    assert r.chosen.folder == "vae" and r.chosen.confidence >= 0.85
    assert "Civitai files it as vae (the workflow's node does not say)" in r.chosen.reason


async def test_file_filed_under_another_folder_is_not_chosen(upstream):
    add_civitai_model(upstream, model(779, "Quirk Vae", "Checkpoint", [cfile("quirk_vae.safetensors", "ef" * 32,
                                                                             "VAE")]))
    ctx = ResolveContext(config=SearchConfig(huggingface=False, use_catalogs=False), secrets={}, inventory=None,
                         state_dir=None, comfyui_root=None)
    ref = ModelRef("quirk_vae.safetensors", "checkpoints")
    r = [x async for x in Resolver(ctx).resolve([ref])][0]
    assert r.chosen is None and r.candidates[0].confidence < 0.7 and "Civitai files it as vae" in r.candidates[0].reason


async def test_503_overload_with_retry_after_is_retried(upstream):
    upstream.add_fault(Fault(path=r"^/api/v1/models\?", status=503, headers={"Retry-After": "0.1"},
                             body={"error": "Model search is temporarily overloaded — please retry."}, times=1))
    r = await civitai_only(ModelRef("fixture_tiny_lora.safetensors", "loras"))
    assert r.chosen.ids["version_id"] == 9100101


async def test_api_key_goes_to_civitai_as_bearer(upstream):
    await civitai_only(ModelRef("fixture_tiny_lora.safetensors", "loras"), secrets={"CIVITAI_API_KEY": "civ"})
    calls = [r for r in upstream.requests if r.path_qs.startswith("/api/v1/")]
    assert calls and all(r.headers.get("Authorization") == "Bearer civ" for r in calls)


async def test_fake_refuses_page_with_query_and_deep_pages(upstream):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{upstream.base}/api/v1/models", params={"query": "x", "page": "2"}) as r:
            assert r.status == 400 and "cursor-based" in (await r.json())["error"]
        async with s.get(f"{upstream.base}/api/v1/models", params={"page": "11", "limit": "100"}) as r:
            assert r.status == 429


async def test_fake_canned_search_answers_as_recorded(upstream):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{upstream.base}/api/v1/models", params={"query": "fixture", "limit": "5"}) as r:
            body = await r.json()
    assert body["metadata"]["nextCursor"] == "1|9000102"


async def test_fake_batch_by_hash_returns_version_bodies(upstream):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{upstream.base}/api/v1/model-versions/by-hash", json=[TINY_LORA_SHA.lower()]) as r:
            body = await r.json()
    assert [v["id"] for v in body] == [9100101]
    assert body[0]["downloadUrl"].startswith(upstream.base)


async def test_two_models_with_different_bytes_under_one_name_leave_the_choice_to_the_user(upstream):
    add_civitai_model(upstream, model(780, "Moss Style", "LORA", [cfile("moss_style.safetensors", "12" * 32)]))
    add_civitai_model(upstream, model(781, "Moss Style XL", "LORA", [cfile("moss_style.safetensors", "34" * 32)]))
    r = await civitai_only(ModelRef("moss_style.safetensors", "loras"))
    assert r.chosen is None and len(r.candidates) == 2
    assert all("different files under this name" in c.reason for c in r.candidates)

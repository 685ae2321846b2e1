"""Hugging Face source against the fake Hub: search semantics, exact names in subfolders, decoys, gated, errors."""

from __future__ import annotations

import aiohttp
import pytest

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelHint, ModelRef
from fixer.sources.huggingface import folder_from_path, parse_hf_url, search_terms, standing
from tests.fake_upstream import Fault
from tests.fake_upstream.api_routes import add_hf_repo

SHA = {k: k * 64 for k in "abcdef"}


async def hf_only(ref: ModelRef, secrets: dict | None = None, tmp_path=None):
    ctx = ResolveContext(config=SearchConfig(civitai=False, use_catalogs=False, retries=2), secrets=secrets or {},
                         inventory=None, state_dir=tmp_path, comfyui_root=None)
    return [r async for r in Resolver(ctx).resolve([ref])][0]


def test_search_terms_come_from_the_words_of_the_file_name():
    assert search_terms("clip_l_hidream.safetensors") == (["hidream"], ["clip_l_hidream", "clip_l", "clip-l"])
    assert search_terms("wan2.1_t2v_14B_fp16.safetensors")[0] == ["wan2.1", "wan"]


def test_folder_comes_from_repackaged_path():
    assert folder_from_path("split_files/vae/wan_2.1_vae.safetensors") == "vae"
    assert folder_from_path("split_files/unet/x.safetensors") == "diffusion_models"
    assert folder_from_path("x.safetensors") is None


def test_parse_hf_url_reads_repo_revision_and_subfolder_path():
    url = "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors?download=true"
    assert parse_hf_url(url, "http://x") == ("Comfy-Org/flux2-dev", "main", "split_files/vae/flux2-vae.safetensors")


async def test_file_in_a_subfolder_of_a_repo_found_by_a_word_of_its_name(upstream):
    r = await hf_only(ModelRef("mistral_3_small_flux2_fp8.safetensors", "text_encoders"))
    assert r.source == "huggingface"
    assert r.chosen.ids["repo_id"] == "Comfy-Org/flux2-dev"
    assert r.chosen.url.endswith("/Comfy-Org/flux2-dev/resolve/main/split_files/text_encoders/"
                                 "mistral_3_small_flux2_fp8.safetensors")
    assert r.chosen.sha256 and len(r.chosen.sha256) == 64 and r.chosen.size > 0


async def test_fake_search_matches_repo_ids_never_file_names(upstream):
    # "t5xxl" is in file names of comfyanonymous/flux_text_encoders but in no repo id.
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{upstream.base}/api/models", params={"search": "t5xxl"}) as r:
            assert await r.json() == []
        async with s.get(f"{upstream.base}/api/models", params={"search": "TEXT_enc", "full": "true"}) as r:
            [item] = await r.json()
    assert item["id"] == "comfyanonymous/flux_text_encoders" and {"rfilename": "clip_l.safetensors"} in item["siblings"]


async def test_file_no_repo_id_hints_at_is_found_in_comfyui_org_listings(upstream):
    r = await hf_only(ModelRef("t5xxl_fp16.safetensors", "text_encoders"))
    assert r.chosen.ids["repo_id"] == "comfyanonymous/flux_text_encoders" and r.chosen.confidence == 0.9
    assert any("all of comfyanonymous" in t for t in r.tried)


async def test_fake_lists_pages_with_link_headers(upstream):
    for i in range(3):
        add_hf_repo(upstream, f"pager/repo-{i}", {"f.safetensors": (1, SHA["e"])})
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{upstream.base}/api/models", params={"author": "pager", "limit": "2"}) as r:
            first, link = await r.json(), r.headers["Link"]
        async with s.get(link.split(";")[0].strip("<>")) as r:
            second = await r.json()
        async with s.get(f"{upstream.base}/api/models/pager/repo-0/tree/main") as r:
            tree = await r.json()
        async with s.post(f"{upstream.base}/api/models/pager/repo-0/paths-info/main",
                          data=[("paths", "f.safetensors"), ("paths", "nope"), ("expand", "false")]) as r:
            info = await r.json()
    assert len(first) == 2 and len(second) == 1 and 'rel="next"' in link
    assert [e["path"] for e in tree] == ["f.safetensors"] and [e["lfs"]["oid"] for e in info] == [SHA["e"]]


async def test_re_upload_named_after_the_file_alone_is_listed_not_chosen(upstream):
    add_hf_repo(upstream, "someone/glimmer_vae", {"glimmer_vae.safetensors": (100, SHA["f"])}, downloads=10**6)
    r = await hf_only(ModelRef("glimmer_vae.safetensors", "vae"))
    assert r.chosen is None and r.candidates[0].confidence == 0.65 and "re-upload" in r.candidates[0].reason


async def test_publisher_folder_wins_over_a_keyword_guess(upstream):
    add_hf_repo(upstream, "Comfy-Org/Depthy", {"geometry_estimation/depthy_large.safetensors": (100, SHA["a"])})
    ref = ModelRef("depthy_large.safetensors", "controlnet", folder_source="keyword")
    r = await hf_only(ref)
    assert r.chosen.folder == "geometry_estimation" and "filed under geometry_estimation" in r.chosen.reason


async def test_official_repo_wins_over_a_decoy_named_like_the_file(upstream):
    add_hf_repo(upstream, "Comfy-Org/Zed_ComfyUI_repackaged", {"split_files/vae/zed_vae.safetensors": (100, SHA["a"])},
                downloads=500)
    add_hf_repo(upstream, "randomuser/zed_vae", {"zed_vae.safetensors": (90, SHA["b"])}, downloads=5000)
    r = await hf_only(ModelRef("zed_vae.safetensors", "vae"))
    assert r.chosen.ids["repo_id"] == "Comfy-Org/Zed_ComfyUI_repackaged" and r.chosen.confidence >= 0.7
    assert any(c.ids.get("repo_id") == "randomuser/zed_vae" and c.confidence < 0.7 for c in r.candidates)


async def test_re_uploads_with_different_bytes_leave_the_choice_to_the_user(upstream):
    add_hf_repo(upstream, "alice/quux_style", {"quux_style.safetensors": (100, SHA["c"])}, downloads=100)
    add_hf_repo(upstream, "bob/quux_style_mirror", {"quux_style.safetensors": (120, SHA["d"])}, downloads=150)
    r = await hf_only(ModelRef("quux_style.safetensors", "loras"))
    assert r.chosen is None and len(r.candidates) == 2 and all(c.confidence < 0.7 for c in r.candidates)


async def test_publishers_of_equal_standing_with_different_bytes_leave_the_choice_to_the_user(upstream):
    # Two ordinary publishers (neither official nor a re-upload named after the file), similar use.
    add_hf_repo(upstream, "alice/style-collection", {"quux_style.safetensors": (100, SHA["c"])}, downloads=100)
    add_hf_repo(upstream, "bob/quux-pack", {"quux_style.safetensors": (120, SHA["d"])}, downloads=150)
    r = await hf_only(ModelRef("quux_style.safetensors", "loras"))
    assert r.chosen is None and [c.ids["repo_id"] for c in r.candidates] == ["bob/quux-pack", "alice/style-collection"]
    assert "repos of equal standing hold different bytes" in r.candidates[0].reason


async def test_a_publisher_used_ten_times_more_than_its_equals_is_chosen(upstream):
    add_hf_repo(upstream, "alice/style-collection", {"quux_style.safetensors": (100, SHA["c"])}, downloads=100)
    add_hf_repo(upstream, "bob/quux-pack", {"quux_style.safetensors": (120, SHA["d"])}, downloads=1000)
    r = await hf_only(ModelRef("quux_style.safetensors", "loras"))
    assert r.chosen.ids["repo_id"] == "bob/quux-pack" and "the most used by far" in r.chosen.reason


# The publishers whose repos are the origin of what ComfyUI workflows name (a copy: removing one must fail here).
TRUSTED = ("Comfy-Org", "comfyanonymous", "black-forest-labs", "stabilityai", "Lightricks", "Kijai", "lightx2v",
           "Wan-AI", "Qwen", "tencent", "city96", "lllyasviel", "h94", "xinsir", "madebyollin", "openai", "google",
           "laion", "runwayml", "stable-diffusion-v1-5", "Kwai-Kolors", "alibaba-pai", "ByteDance", "InstantX",
           "Shakker-Labs", "XLabs-AI", "guoyww", "THUDM", "hunyuanvideo-community", "microsoft", "facebook", "nvidia",
           "deepseek-ai", "ostris", "lodestones", "kandinskylab", "DiffSynth-Studio", "FastVideo", "VAST-AI",
           "Tencent-Hunyuan")


@pytest.mark.parametrize("org", TRUSTED)
def test_every_trusted_publisher_has_official_standing_in_any_case(org):
    assert standing(f"{org}/some-model", "x.safetensors") == 3
    assert standing(f"{org.lower()}/some-model", "x.safetensors") == 3
    assert standing(f"{org.upper()}/some-model", "x.safetensors") == 3


@pytest.mark.parametrize("repo_id", ["Comfy-0rg/some-model", "comfyanonymous-fan/some-model", "someone/Comfy-Org",
                                     "stabilityai-community/some-model", "openai_/some-model"])
def test_a_lookalike_of_a_trusted_publisher_has_no_official_standing(repo_id):
    assert standing(repo_id, "x.safetensors") == 2


async def test_a_trusted_publisher_beyond_comfy_org_wins_over_a_busier_stranger(upstream):
    add_hf_repo(upstream, "Lightricks/Zed-Video", {"zed_video_vae.safetensors": (100, SHA["a"])}, downloads=50)
    add_hf_repo(upstream, "stranger/video-pack", {"zed_video_vae.safetensors": (90, SHA["b"])}, downloads=50_000)
    r = await hf_only(ModelRef("zed_video_vae.safetensors", "vae"))
    assert r.chosen.ids["repo_id"] == "Lightricks/Zed-Video" and "official publisher" in r.chosen.reason


async def test_the_workflow_hash_picks_the_repo_with_those_bytes(upstream):
    add_hf_repo(upstream, "alice/quux_style", {"quux_style.safetensors": (100, SHA["c"])}, downloads=100)
    add_hf_repo(upstream, "bob/quux_style_mirror", {"quux_style.safetensors": (120, SHA["d"])}, downloads=150)
    ref = ModelRef("quux_style.safetensors", "loras", hints=[ModelHint(hash=SHA["c"], hash_type="sha256")])
    r = await hf_only(ref)
    assert r.chosen.ids["repo_id"] == "alice/quux_style" and r.chosen.confidence >= 0.99


async def test_gated_repo_is_flagged_with_what_to_do(upstream):
    r = await hf_only(ModelRef("flux2-dev.safetensors", "diffusion_models"))
    assert r.chosen.ids["repo_id"] == "black-forest-labs/FLUX.2-dev"
    assert r.chosen.gated and r.chosen.needs_token == "HF_TOKEN"
    assert "needs HF_TOKEN and the license accepted at" in r.chosen.reason
    assert r.chosen.reason.endswith("/black-forest-labs/FLUX.2-dev")


async def test_same_bytes_in_a_gated_and_an_open_repo_prefers_the_open_one_without_token(upstream):
    r = await hf_only(ModelRef("fixture_hf_model.safetensors", "checkpoints"))
    assert r.chosen.ids["repo_id"] == "comfy-fixer-fixtures/tiny-model" and not r.chosen.gated


async def test_token_is_sent_to_hugging_face(upstream):
    await hf_only(ModelRef("flux2-vae.safetensors", "vae"), secrets={"HF_TOKEN": "hf_secret"})
    api = [r for r in upstream.requests if r.path_qs.startswith("/api/models")]
    assert api and all(r.headers.get("Authorization") == "Bearer hf_secret" for r in api)


async def test_429_with_retry_after_is_waited_out_and_retried(upstream):
    upstream.add_fault(Fault(path=r"^/api/models\?", status=429, headers={"Retry-After": "0.2"}, times=1))
    r = await hf_only(ModelRef("flux2-vae.safetensors", "vae"))
    assert r.source == "huggingface"


async def test_503_backs_off_and_retries(upstream):
    upstream.add_fault(Fault(path=r"^/api/models\?", status=503, times=2))
    r = await hf_only(ModelRef("flux2-vae.safetensors", "vae"))
    assert r.source == "huggingface"


async def test_persistent_429_reports_the_failure(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"^/api/models\?", status=429, headers={"Retry-After": "0"}, times=None,
                             body={"error": "rate limited"}))
    r = await hf_only(ModelRef("flux2-vae.safetensors", "vae"), tmp_path=tmp_path)
    assert r.source == "not_found"
    assert "HTTP 429" in (tmp_path / "log" / "search_history.log").read_text()
    assert r.why == "Not found: Hugging Face could not be searched right now (try again later)."
    assert any("for the search 'flux2'; try again later or add a token (HF_TOKEN)" in t for t in r.tried)


async def test_paths_info_401_for_a_match_is_reported_and_the_match_kept_without_hash(upstream):
    upstream.add_fault(Fault(path=r"/paths-info/", status=401, headers={"X-Error-Code": "RepoNotFound"}, times=None))
    r = await hf_only(ModelRef("flux2-vae.safetensors", "vae"))
    assert r.chosen.ids["repo_id"] == "Comfy-Org/flux2-dev" and r.chosen.sha256 is None
    assert any("Comfy-Org/flux2-dev is private or does not exist; check the URL, and if it is private set HF_TOKEN"
               in t and "(RepoNotFound)" in t for t in r.tried)


async def test_search_answers_without_file_lists_fall_back_to_tree_listings(upstream):
    add_hf_repo(upstream, "Comfy-Org/Plinth_repackaged", {"split_files/vae/plinth_vae.safetensors": (7, SHA["b"])})
    upstream.add_fault(Fault(path=r"^/api/models\?.*search=plinth", status=200, times=None,
                             body=[{"id": "Comfy-Org/Plinth_repackaged", "downloads": 3}]))
    upstream.add_fault(Fault(path=r"^/api/models\?.*author=", status=200, times=None, body=[]))
    r = await hf_only(ModelRef("plinth_vae.safetensors", "vae"))
    assert r.chosen.ids["path"] == "split_files/vae/plinth_vae.safetensors"
    assert any("/tree/main" in q.path_qs for q in upstream.requests)



async def test_refused_token_is_reported_with_what_to_do(upstream):
    upstream.add_fault(Fault(path=r"^/api/models\?", status=401, times=None,
                             headers={"X-Error-Message": "Invalid credentials in Authorization header"}))
    r = await hf_only(ModelRef("flux2-vae.safetensors", "vae"), secrets={"HF_TOKEN": "hf_bad"})
    assert r.source == "not_found"
    assert any("HF_TOKEN was rejected (Invalid credentials in Authorization header); create a new read token at "
               "huggingface.co/settings/tokens" in t for t in r.tried)


async def test_hf_hub_offline_sends_nothing_to_the_hub_and_says_so(upstream, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = await hf_only(ModelRef("flux2-vae.safetensors", "vae"))
    assert r.source == "not_found" and r.why.endswith(" HF_HUB_OFFLINE is set: Hugging Face not searched.")
    assert not any("no repo" in t for t in r.tried)
    assert not any(q.path_qs.startswith("/api/models") for q in upstream.requests)

"""Name normalisation and the fuzzy scale: only case/separator variants reach the default threshold."""

from __future__ import annotations

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelRef
from fixer.sources.fuzzy import likeness, loose, without_precision, without_version
from tests.fake_upstream.api_routes import add_hf_repo


def test_loose_folds_case_and_separators():
    assert loose("Wan2_1-VAE.safetensors") == loose("wan2.1 vae.safetensors") == "wan2_1_vae"


def test_precision_tags_and_versions_are_stripped():
    assert without_precision("t5xxl_fp8_e4m3fn_scaled.safetensors") == "t5xxl"
    assert without_version("detail_slider_v2.safetensors") == "detail_slider"


def test_scale_keeps_different_files_below_the_default_threshold():
    assert likeness("Foo-Bar.safetensors", "foo_bar.safetensors").score >= 0.7
    assert likeness("t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors").score < 0.7
    assert likeness("slider_v1.safetensors", "slider_v2.safetensors").score < 0.7
    assert likeness("foo.safetensors", "foo.ckpt").score < 0.7
    assert likeness("wan_2.1_vae.safetensors", "wan_2.2_vae.safetensors").score < 0.7


async def test_case_variant_on_hf_is_found_through_fuzzy_above_threshold(upstream):
    add_hf_repo(upstream, "Comfy-Org/Blorp_repackaged", {"split_files/vae/Blorp-VAE.safetensors": (5, "9" * 64)})
    ctx = ResolveContext(config=SearchConfig(civitai=False, use_catalogs=False), secrets={}, inventory=None,
                         state_dir=None, comfyui_root=None)
    r = [x async for x in Resolver(ctx).resolve([ModelRef("blorp_vae.safetensors", "vae")])][0]
    assert r.chosen.source == "fuzzy" and r.chosen.confidence == 0.8
    assert r.chosen.filename == "blorp_vae.safetensors" and r.chosen.ids["matched_name"] == "Blorp-VAE.safetensors"


async def test_other_precision_is_listed_not_downloaded(upstream):
    add_hf_repo(upstream, "Comfy-Org/Blorp_repackaged",
                {"split_files/text_encoders/blorp_te_fp16.safetensors": (5, "8" * 64)})
    ctx = ResolveContext(config=SearchConfig(civitai=False, use_catalogs=False), secrets={}, inventory=None,
                         state_dir=None, comfyui_root=None)
    r = [x async for x in Resolver(ctx).resolve([ModelRef("blorp_te_fp8_e4m3fn.safetensors", "text_encoders")])][0]
    assert r.chosen is None and r.candidates[0].source == "fuzzy" and "precision" in r.candidates[0].reason


async def test_local_file_differing_in_separators_is_offered_through_fuzzy(tmp_path):
    from fixer.host.host import StandaloneHost
    from fixer.read.inventory import build_inventory
    from tests.conftest import make_comfy_root

    root = make_comfy_root(tmp_path, {"models/loras/My-Style.safetensors": b"1"})
    ctx = ResolveContext(config=SearchConfig(civitai=False, huggingface=False, use_catalogs=False), secrets={},
                         inventory=build_inventory(StandaloneHost.from_root(root)), state_dir=None, comfyui_root=root)
    r = [x async for x in Resolver(ctx).resolve([ModelRef("my_style.safetensors", "loras")])][0]
    assert r.chosen.source == "fuzzy" and r.chosen.local_path.endswith("My-Style.safetensors")
    assert r.chosen.ids["rewrite_to"] == "My-Style.safetensors"


async def test_catalog_name_differing_in_separators_is_offered_through_fuzzy(upstream):
    ctx = ResolveContext(config=SearchConfig(civitai=False, huggingface=False), secrets={}, inventory=None,
                         state_dir=None, comfyui_root=None)
    r = [x async for x in Resolver(ctx).resolve([ModelRef("Qwen-Image-VAE.safetensors", "vae")])][0]
    assert r.chosen.source == "fuzzy" and r.chosen.ids["matched_name"] == "qwen_image_vae.safetensors"

"""The long tail: well-known files in repositories not named after them, found through what the catalogs on
this machine say (ComfyUI-Manager's list, other packs' lists) about where a folder's files live."""

from __future__ import annotations

import json

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelRef
from tests.conftest import make_comfy_root
from tests.fake_upstream.api_routes import add_hf_repo


async def resolve(refs: list[ModelRef], root=None) -> dict:
    ctx = ResolveContext(config=SearchConfig(civitai=False, retries=1), secrets={}, comfyui_root=root)
    return {r.name: r async for r in Resolver(ctx).resolve(refs)}


async def test_an_upscaler_kept_in_an_annotator_bundle_is_found_by_listing_it(upstream):
    add_hf_repo(upstream, "lllyasviel/Annotators", {"RealESRGAN_x4plus.pth": (64_000, "5a" * 32),
                                                    "body_pose_model.pth": (1000, "5b" * 32)}, downloads=500_000)
    r = (await resolve([ModelRef("RealESRGAN_x4plus.pth", "upscale_models")]))["RealESRGAN_x4plus.pth"]
    assert r.chosen and r.chosen.ids["repo_id"] == "lllyasviel/Annotators" and r.chosen.sha256 == "5a" * 32
    assert "where the catalogs take upscale_models files from" in r.chosen.reason


async def test_another_packs_model_list_is_a_catalog_and_tells_where_its_folder_lives(tmp_path, upstream):
    root = make_comfy_root(tmp_path)
    pack = root / "custom_nodes" / "ComfyUI-Acme"
    pack.mkdir(parents=True)
    (pack / "model-list.json").write_text(json.dumps({"models": [{
        "name": "acme encoder", "type": "clip", "save_path": "default", "filename": "qx_listed_enc.safetensors",
        "url": "https://huggingface.co/acme-labs/encoders/resolve/main/qx_listed_enc.safetensors"}]}))
    add_hf_repo(upstream, "acme-labs/encoders", {"qx_listed_enc.safetensors": (2000, "6a" * 32),
                                                 "extra/qx_unlisted_enc.safetensors": (3000, "6b" * 32)})
    res = await resolve([ModelRef("qx_listed_enc.safetensors", "text_encoders"),
                         ModelRef("qx_unlisted_enc.safetensors", "text_encoders")], root)
    listed, unlisted = res["qx_listed_enc.safetensors"].chosen, res["qx_unlisted_enc.safetensors"].chosen
    assert listed.source == "catalog" and "the ComfyUI-Acme pack's model-list.json" in listed.reason
    assert listed.size == 2000 and listed.sha256 == "6a" * 32  # the Hub's facts: the review can count them
    assert unlisted.ids["path"] == "extra/qx_unlisted_enc.safetensors" and unlisted.sha256 == "6b" * 32


async def test_publishers_that_disagree_on_the_bytes_leave_the_choice_to_the_user(upstream):
    add_hf_repo(upstream, "lllyasviel/Annotators", {"qx_guide_q.pth": (10, "7a" * 32)})
    add_hf_repo(upstream, "TencentARC/T2I-Adapter", {"models/qx_guide_q.pth": (11, "7b" * 32)})
    r = (await resolve([ModelRef("qx_guide_q.pth", "controlnet")]))["qx_guide_q.pth"]
    assert r.chosen is None and {c.ids.get("repo_id") for c in r.candidates} >= {"lllyasviel/Annotators",
                                                                                 "TencentARC/T2I-Adapter"}


async def test_a_catalog_file_whose_repo_is_gone_is_found_again_among_re_uploads_by_its_bytes(tmp_path, upstream):
    """A pack's list records the official home and sha256 of a checkpoint whose repo was deleted (as SD 2.1's
    was): the re-upload holding the same bytes is taken, not the more downloaded one with other bytes."""
    official = "8c" * 32
    root = make_comfy_root(tmp_path)
    pack = root / "custom_nodes" / "ComfyUI-Legacy"
    pack.mkdir(parents=True)
    (pack / "model-list.json").write_text(json.dumps({"models": [{
        "name": "sd 2.1", "type": "checkpoint", "save_path": "default", "sha256": official,
        "filename": "v2-1_768-ema-pruned_q.safetensors",
        "url": "https://huggingface.co/stabilityai/sd-21-gone/resolve/main/v2-1_768-ema-pruned_q.safetensors"}]}))
    add_hf_repo(upstream, "someone/v2-1_768-ema-pruned_q", {"v2-1_768-ema-pruned_q.safetensors": (900, "8d" * 32)},
                downloads=50_000)
    add_hf_repo(upstream, "archivist/v2-1_768-ema-pruned_q-mirror",
                {"v2-1_768-ema-pruned_q.safetensors": (900, official)}, downloads=10)
    ctx = ResolveContext(config=SearchConfig(civitai=False, retries=1), secrets={"HF_TOKEN": "hf_x"}, comfyui_root=root)
    r = [x async for x in Resolver(ctx).resolve([ModelRef("v2-1_768-ema-pruned_q.safetensors", "checkpoints")])][0]
    assert r.chosen.ids["repo_id"] == "archivist/v2-1_768-ema-pruned_q-mirror" and r.chosen.sha256 == official
    assert "as ComfyUI's catalogs record it" in r.chosen.reason
    assert any("stabilityai/sd-21-gone, which no longer has it" in t for t in r.tried)

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
    assert unlisted.ids["path"] == "extra/qx_unlisted_enc.safetensors" and unlisted.sha256 == "6b" * 32


async def test_publishers_that_disagree_on_the_bytes_leave_the_choice_to_the_user(upstream):
    add_hf_repo(upstream, "lllyasviel/Annotators", {"qx_guide_q.pth": (10, "7a" * 32)})
    add_hf_repo(upstream, "TencentARC/T2I-Adapter", {"models/qx_guide_q.pth": (11, "7b" * 32)})
    r = (await resolve([ModelRef("qx_guide_q.pth", "controlnet")]))["qx_guide_q.pth"]
    assert r.chosen is None and {c.ids.get("repo_id") for c in r.candidates} >= {"lllyasviel/Annotators",
                                                                                 "TencentARC/T2I-Adapter"}

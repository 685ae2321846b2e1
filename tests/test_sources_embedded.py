"""The workflow's own hints: checked against the service they point to, dead links fall through."""

from __future__ import annotations

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelHint, ModelRef


async def resolve_one(ref: ModelRef, **cfg):
    ctx = ResolveContext(config=SearchConfig(**cfg), secrets={}, inventory=None, state_dir=None, comfyui_root=None)
    return [r async for r in Resolver(ctx).resolve([ref])][0]


HF = "https://huggingface.co/Kijai/flux-fp8/resolve/main/flux1-dev-fp8.safetensors"


async def test_hf_hint_is_checked_and_carries_size_and_sha256(upstream):
    r = await resolve_one(ModelRef("flux1-dev-fp8.safetensors", "diffusion_models", hints=[ModelHint(url=HF)]))
    c = r.chosen
    assert c.source == "embedded" and c.confidence == 0.95
    assert c.url == f"{upstream.base}/Kijai/flux-fp8/resolve/main/flux1-dev-fp8.safetensors"  # HF_ENDPOINT honoured
    assert c.size == 11901525888 and c.sha256.startswith("1be96134")


async def test_hint_folder_used_when_the_node_does_not_say(upstream):
    ref = ModelRef("flux1-dev-fp8.safetensors", None, hints=[ModelHint(url=HF, directory="unet")])
    assert (await resolve_one(ref)).chosen.folder == "diffusion_models"


async def test_dead_hint_falls_through_to_other_sources(upstream):
    dead = "https://huggingface.co/nobody/gone/resolve/main/flux2-vae.safetensors"
    r = await resolve_one(ModelRef("flux2-vae.safetensors", "vae", hints=[ModelHint(url=dead)]))
    assert r.chosen.source == "catalog"
    assert any("nobody/gone is private or does not exist; check the URL, and if it is private set HF_TOKEN" in t
               for t in r.tried)  # a bare 401, as HF answers


async def test_hint_whose_bytes_differ_from_its_hash_is_rejected(upstream):
    ref = ModelRef("flux1-dev-fp8.safetensors", "diffusion_models",
                   hints=[ModelHint(url=HF, hash="0" * 64, hash_type="sha256")])
    r = await resolve_one(ref, use_catalogs=False, civitai=False, huggingface=False)
    assert r.chosen is None and any("another sha256" in t for t in r.tried)


async def test_civitai_download_hint_reads_the_version(upstream):
    ref = ModelRef("my_lora.safetensors", "loras",
                   hints=[ModelHint(url="https://civitai.com/api/download/models/9100101")])
    c = (await resolve_one(ref)).chosen
    assert c.source == "embedded" and c.ids["version_id"] == 9100101 and c.sha256 and c.size


async def test_archived_civitai_hint_is_reported(upstream):
    ref = ModelRef("gone.safetensors", "checkpoints",
                   hints=[ModelHint(url="https://civitai.com/api/download/models/9100104")])
    r = await resolve_one(ref, use_catalogs=False, civitai=False, huggingface=False)
    assert r.chosen is None and any("no downloadable file" in t for t in r.tried)


async def test_other_url_ending_in_the_name_is_trusted_unchecked(upstream):
    ref = ModelRef("taef1_decoder.pth", "vae_approx",
                   hints=[ModelHint(url="https://github.com/madebyollin/taesd/raw/main/taef1_decoder.pth")])
    c = (await resolve_one(ref, use_catalogs=False, civitai=False, huggingface=False)).chosen
    assert c.source == "embedded" and c.url.startswith("https://github.com/") and "not checked" in c.reason


async def test_hf_hint_is_not_asked_of_the_hub_under_hf_hub_offline(upstream, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = await resolve_one(ModelRef("flux1-dev-fp8.safetensors", "diffusion_models", hints=[ModelHint(url=HF)]),
                          huggingface=False)
    assert r.chosen is None or r.chosen.source != "embedded"
    assert f"workflow hint {HF}: HF_HUB_OFFLINE is set: Hugging Face not searched" in r.tried
    assert not any("Kijai" in q.path_qs for q in upstream.requests)

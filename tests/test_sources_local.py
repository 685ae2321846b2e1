"""Local disk: the same file elsewhere, in another case, or the same bytes under another name."""

from __future__ import annotations

import hashlib
import os

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.host.host import StandaloneHost
from fixer.identity.hash_index import HashIndex, index_path
from fixer.models import ModelHint, ModelRef
from fixer.read.inventory import build_inventory
from tests.conftest import make_comfy_root


async def resolve_local(tmp_path, files: dict, ref: ModelRef):
    root = make_comfy_root(tmp_path, files)
    inv = build_inventory(StandaloneHost.from_root(root))
    ctx = ResolveContext(config=SearchConfig(civitai=False, huggingface=False, use_catalogs=False), secrets={},
                         inventory=inv, state_dir=tmp_path / "state", comfyui_root=root)
    return [r async for r in Resolver(ctx).resolve([ref])][0]


async def test_same_name_in_another_folder_offers_a_link(tmp_path):
    r = await resolve_local(tmp_path, {"models/checkpoints/foo_lora.safetensors": b"1"},
                            ModelRef("foo_lora.safetensors", "loras"))
    c = r.chosen
    assert c.source == "local" and c.folder == "loras" and c.ids["local_folder"] == "checkpoints"
    assert "link or move it into loras" in c.reason


async def test_same_name_in_another_subfolder_offers_a_rewrite(tmp_path):
    r = await resolve_local(tmp_path, {"models/loras/SDXL/foo.safetensors": b"1"}, ModelRef("foo.safetensors", "loras"))
    assert r.chosen.ids["rewrite_to"] == "SDXL/foo.safetensors" and "rewrite the workflow" in r.chosen.reason


async def test_other_case_is_found_slightly_less_sure(tmp_path):
    r = await resolve_local(tmp_path, {"models/loras/Foo.safetensors": b"1"}, ModelRef("sub/foo.safetensors", "loras"))
    assert r.chosen.source == "local" and r.chosen.confidence == 0.9 and "case" in r.chosen.reason


async def test_hash_hint_rejects_a_same_named_file_with_other_bytes(tmp_path):
    ref = ModelRef("foo.safetensors", "loras", hints=[ModelHint(hash=hashlib.sha256(b"right").hexdigest(),
                                                                 hash_type="sha256")])
    r = await resolve_local(tmp_path, {"models/vae/foo.safetensors": b"wrong"}, ref)
    assert r.chosen is None and any("not the sha256" in t for t in r.tried)


async def test_hash_hint_confirms_a_same_named_file(tmp_path):
    ref = ModelRef("foo.safetensors", "loras", hints=[ModelHint(hash=hashlib.sha256(b"right").hexdigest())])
    r = await resolve_local(tmp_path, {"models/vae/foo.safetensors": b"right"}, ref)
    assert r.chosen.confidence == 1.0 and r.chosen.sha256 == hashlib.sha256(b"right").hexdigest()


async def test_hash_index_reuses_digest_until_the_file_changes(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"one")
    index = HashIndex(tmp_path / "cache.json")
    assert index.sha256(str(p)) == hashlib.sha256(b"one").hexdigest()
    index.save()
    assert HashIndex(tmp_path / "cache.json").known(str(p)) == hashlib.sha256(b"one").hexdigest()
    p.write_bytes(b"two!")
    os.utime(p, ns=(1, 1))
    assert HashIndex(tmp_path / "cache.json").known(str(p)) is None
    assert HashIndex(tmp_path / "cache.json").sha256(str(p)) == hashlib.sha256(b"two!").hexdigest()


async def test_a_renamed_copy_the_index_knows_is_found_by_its_hash_without_a_size(tmp_path):
    """The workflow gives only a hash (no size): the bytes under another name and folder are found through
    the hash index a background scan filled, without reading any file again."""
    body = b"renamed bytes" * 100
    ref = ModelRef("wanted.safetensors", "loras", hints=[ModelHint(hash=hashlib.sha256(body).hexdigest())])
    root = make_comfy_root(tmp_path, {"models/checkpoints/old name.safetensors": body,
                                      "models/checkpoints/other.safetensors": b"x" * len(body)})
    HashIndex(index_path(tmp_path / "state")).scan(StandaloneHost.from_root(root))
    inv = build_inventory(StandaloneHost.from_root(root))
    ctx = ResolveContext(config=SearchConfig(civitai=False, huggingface=False, use_catalogs=False), secrets={},
                         inventory=inv, state_dir=tmp_path / "state", comfyui_root=root)
    (r,) = [r async for r in Resolver(ctx).resolve([ref])]
    assert r.chosen.source == "local" and r.chosen.local_path.endswith("old name.safetensors")
    assert r.chosen.confidence == 1.0 and "same bytes" in r.chosen.reason

"""The resolver as a whole: ordering of sources, ties, the threshold rule, incremental results, failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fixer.app.resolve import ResolveContext, Resolver, choose, resolution_entry
from fixer.config import SearchConfig
from fixer.host.host import StandaloneHost
from fixer.models import Candidate, ModelHint, ModelRef
from fixer.read.inventory import build_inventory
from fixer.sources import Found
from tests.conftest import make_comfy_root
from tests.fake_upstream import Fault
from tests.fake_upstream.api_routes import add_hf_repo

SHA_A = "a" * 64


def ctx_for(tmp_path: Path | None = None, inventory=None, **cfg) -> ResolveContext:
    return ResolveContext(config=SearchConfig(**cfg), secrets={}, inventory=inventory, state_dir=tmp_path,
                          comfyui_root=None)


async def resolve(refs: list[ModelRef], ctx: ResolveContext) -> dict:
    return {r.name: r async for r in Resolver(ctx).resolve(refs)}


def cand(source: str, conf: float, url: str = "u", folder: str | None = "loras", **ids) -> Candidate:
    return Candidate(source=source, filename="x.safetensors", folder=folder, confidence=conf, reason="r", url=url,
                     ids=ids)


def test_tie_goes_to_the_more_trusted_source():
    ref = ModelRef("x.safetensors", "loras")
    chosen, _ = choose(ref, [cand("huggingface", 0.9), cand("catalog", 0.9), cand("civitai", 0.9)], 0.7)
    assert chosen.source == "catalog"


def test_tie_prefers_safetensors_over_pickle():
    ref = ModelRef("x", "loras")
    a = cand("civitai", 0.85, url="https://c/a.ckpt", format="PickleTensor")
    b = cand("civitai", 0.85, url="https://c/b.safetensors", format="SafeTensor")
    assert choose(ref, [a, b], 0.7)[0] is b


def test_tie_prefers_comfy_org_repo_then_downloads():
    ref = ModelRef("x", "vae")
    a = cand("huggingface", 0.9, repo_id="someone/x", downloads=10**6)
    b = cand("huggingface", 0.9, repo_id="Comfy-Org/x", downloads=5)
    assert choose(ref, [a, b], 0.7)[0] is b


def test_below_threshold_nothing_is_chosen_and_candidates_are_listed():
    ref = ModelRef("x", "loras")
    chosen, listed = choose(ref, [cand("fuzzy", 0.6), cand("huggingface", 0.55)], 0.7)
    assert chosen is None and [c.confidence for c in listed] == [0.6, 0.55]


def test_candidate_without_a_folder_is_never_chosen():
    chosen, listed = choose(ModelRef("x", None), [cand("huggingface", 0.9, folder=None)], 0.7)
    assert chosen is None and len(listed) == 1


async def test_name_found_nowhere_is_not_found_with_what_was_tried(upstream, tmp_path):
    res = (await resolve([ModelRef("zzq_nothing_like_it_v9.safetensors", "loras")], ctx_for(tmp_path)))
    r = res["zzq_nothing_like_it_v9.safetensors"]
    assert r.source == "not_found" and r.chosen is None
    tried = " | ".join(r.tried)
    for word in ("local disk", "offline catalogs", "Civitai", "Hugging Face", "fuzzy"):
        assert word in tried
    record = resolution_entry(r)
    assert record.source == "not_found" and record.download_url is None and record.tried


async def test_offline_answer_asks_no_upstream(upstream, tmp_path):
    ref = ModelRef("clip_l.safetensors", "text_encoders")
    res = await resolve([ref], ctx_for(tmp_path))
    assert res[ref.name].source == "catalog"
    assert not [r for r in upstream.requests if r.path_qs.startswith("/api/")]


async def test_local_copy_beats_every_remote_source(upstream, tmp_path):
    root = make_comfy_root(tmp_path, {"models/vae/old/clip_l.safetensors": b"x" * 10})
    inv = build_inventory(StandaloneHost.from_root(root))
    res = await resolve([ModelRef("clip_l.safetensors", "text_encoders")], ctx_for(tmp_path, inv))
    chosen = res["clip_l.safetensors"].chosen
    assert chosen.source == "local" and chosen.local_path.endswith("old/clip_l.safetensors")
    assert not [r for r in upstream.requests if r.path_qs.startswith("/api/")]


async def test_remote_pick_with_same_bytes_on_disk_becomes_a_local_link(upstream, tmp_path):
    data = b"same bytes under another name"
    import hashlib
    sha = hashlib.sha256(data).hexdigest()
    add_hf_repo(upstream, "Comfy-Org/Zeta_ComfyUI_repackaged",
                {"split_files/vae/zeta_vae.safetensors": (len(data), sha)})
    root = make_comfy_root(tmp_path, {"models/vae/renamed.safetensors": data})
    inv = build_inventory(StandaloneHost.from_root(root))
    res = await resolve([ModelRef("zeta_vae.safetensors", "vae")], ctx_for(tmp_path, inv))
    r = res["zeta_vae.safetensors"]
    assert r.chosen.source == "local" and r.chosen.local_path.endswith("renamed.safetensors")
    assert r.candidates[0].source == "huggingface"
    assert (tmp_path / "cache" / "hash_index.json").exists()  # the hash index the identity commands share


async def test_results_arrive_as_each_model_resolves_not_all_at_end(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"/api/models\?.*search=slowpoke", delay=1.0, times=None))
    refs = [ModelRef("slowpoke_model.safetensors", "loras"), ModelRef("clip_l.safetensors", "text_encoders")]
    order = []
    async for r in Resolver(ctx_for(tmp_path)).resolve(refs):
        order.append(r.name)
    assert order == ["clip_l.safetensors", "slowpoke_model.safetensors"]


async def test_one_failing_source_does_not_stop_the_others(upstream, tmp_path):
    class Broken:
        name = "broken"

        async def find(self, ref, run) -> Found:
            raise RuntimeError("boom")

    ctx = ctx_for(tmp_path, civitai=False, huggingface=False)
    ctx.extra_sources.append(Broken())
    refs = [ModelRef("fixture_missing_a.safetensors", "loras"), ModelRef("clip_l.safetensors", "text_encoders")]
    res = await resolve(refs, ctx)
    assert res["clip_l.safetensors"].source == "catalog"
    assert any("broken: failed (RuntimeError: boom)" in t for t in res["fixture_missing_a.safetensors"].tried)


async def test_upstream_down_is_reported_not_raised(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"^/api/", status=500, times=None))
    res = await resolve([ModelRef("nothing_here_x.safetensors", "loras")], ctx_for(tmp_path, retries=0))
    r = res["nothing_here_x.safetensors"]
    assert r.source == "not_found"
    for service in ("Civitai", "Hugging Face"):  # each says the server failed, not that it found nothing
        assert any("HTTP 500" in t for t in r.tried if t.startswith(service)), (service, r.tried)


async def test_search_history_logs_every_query_and_outcome(upstream, tmp_path):
    await resolve([ModelRef("fixture_tiny_lora.safetensors", "loras")], ctx_for(tmp_path))
    lines = [json.loads(x) for x in (tmp_path / "log" / "search_history.log").read_text().splitlines()]
    assert {x["source"] for x in lines} >= {"civitai", "huggingface"}
    assert all(x["query"] and x["outcome"] and x["model"] == "fixture_tiny_lora.safetensors" for x in lines)


async def test_hint_hash_resolves_through_civitai_by_hash(upstream, tmp_path):
    ref = ModelRef("my_detail.safetensors", "loras", hints=[ModelHint(hash="b7ed9e895a")])
    r = (await resolve([ref], ctx_for(tmp_path)))["my_detail.safetensors"]
    assert r.chosen.source == "civitai" and r.chosen.ids["version_id"] == 62833
    assert r.chosen.filename == "my_detail.safetensors"


async def test_many_models_share_one_search(upstream, tmp_path):
    add_hf_repo(upstream, "Comfy-Org/Omega_ComfyUI",
                {f"split_files/loras/omega_{i}.safetensors": (10, SHA_A[:-1] + str(i))
                                                       for i in range(5)})
    refs = [ModelRef(f"omega_{i}.safetensors", "loras") for i in range(5)]
    res = await resolve(refs, ctx_for(tmp_path, civitai=False))
    assert all(r.source == "huggingface" for r in res.values())
    searches = [r for r in upstream.requests if r.path_qs.startswith("/api/models?")]
    assert len(searches) <= 8  # the same terms for five models: asked once each


async def test_cancelled_consumer_stops_the_searches(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"/api/models\?", delay=2.0, times=None))
    gen = Resolver(ctx_for(tmp_path)).resolve([ModelRef("clip_l.safetensors", "text_encoders"),
                                               ModelRef("slow_one_q.safetensors", "loras")])
    first = await asyncio.wait_for(gen.__anext__(), 3)
    assert first.name == "clip_l.safetensors"
    await asyncio.wait_for(gen.aclose(), 1)  # does not wait for the slow searches


async def test_unsafe_name_is_refused_without_any_search(upstream, tmp_path):
    ref = ModelRef("../../etc/passwd.safetensors", "loras", unsafe_reason="it climbs out of its folder with '..'")
    r = (await resolve([ref], ctx_for(tmp_path)))[ref.name]
    assert r.source == "not_found" and "unsafe" in r.tried[0] and not upstream.requests

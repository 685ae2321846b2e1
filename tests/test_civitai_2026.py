"""Civitai as in 2026 (docs/upstream.md): downloads need a key (a state known before downloading, sent only
as a header), civitai.com may hide NSFW models while civitai.red serves them, batch hash lookups, AIR `+fileId`,
files that failed Civitai's scans refused, early access a state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelHint, ModelRef, Usage
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream.api_routes import add_civitai_model
from tests.fake_upstream.file_routes import register_civitai_file
from tests.test_civitai_real import civitai


async def resolve(refs: list[ModelRef], secrets: dict[str, str] | None = None, **cfg) -> dict:
    ctx = ResolveContext(config=SearchConfig(huggingface=False, use_catalogs=False, retries=1, **cfg),
                         secrets=secrets or {})
    return {r.name: r async for r in Resolver(ctx).resolve(refs)}


async def test_without_a_key_a_civitai_pick_is_known_to_need_one_before_any_download(upstream):
    add_civitai_model(upstream, civitai(8101, "Amber Veil", [("amber_veil_q.safetensors", "a1" * 32)]))
    r = (await resolve([ModelRef("amber_veil_q.safetensors", "loras")]))["amber_veil_q.safetensors"]
    assert r.chosen.needs_token == "CIVITAI_API_KEY" and "asks for an API key" in r.chosen.reason
    assert not any(x.path_qs.startswith("/api/download/") for x in upstream.requests)
    r = (await resolve([ModelRef("amber_veil_q.safetensors", "loras")], {"CIVITAI_API_KEY": "k"}))
    assert r["amber_veil_q.safetensors"].chosen.needs_token is None


def _fix(tmp_path, upstream, env_extra: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[dict]]:
    lora = upstream.payloads["tiny-lora"]
    add_civitai_model(upstream, {
        "id": 8102, "name": "Cobalt Drift", "type": "LORA", "stats": {"downloadCount": 5}, "creator": {"username": "u"},
        "modelVersions": [{"id": 81020, "name": "v1", "baseModel": "SD 1.5", "trainedWords": [], "files": [{
            "id": 81021, "name": "cobalt_drift_q.safetensors", "sizeKB": lora["bytes"] / 1024, "type": "Model",
            "primary": True, "metadata": {"format": "SafeTensor"}, "hashes": {"SHA256": lora["hashes"]["SHA256"]},
            "downloadUrl": "https://civitai.com/api/download/models/81020"}]}]})
    register_civitai_file(upstream, 81020, "cobalt_drift_q.safetensors", upstream.payload("tiny-lora"))
    upstream.civitai_2026()
    root = make_comfy_root(tmp_path, {"models/checkpoints/v1-5-pruned-emaonly.safetensors": "present"})
    write_json(root / "user/default/workflows/w.json", make_workflow([
        node(1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"]),
        node(2, "LoraLoader", ["cobalt_drift_q.safetensors", 1, 1])]))
    env = {k: v for k, v in os.environ.items() if k != "CIVITAI_API_KEY"}
    r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root), "--state-dir",
                        str(tmp_path / "state")], env={**env, **upstream.env(), "PYTHONPATH": str(ROOT), **env_extra},
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    status = json.loads((tmp_path / "state/status.json").read_text())
    return r, [m for m in status["data"].get("models", []) if m["name"] == "cobalt_drift_q.safetensors"]


def test_a_run_without_a_key_ends_waiting_for_one_not_failed(tmp_path, upstream):
    r, rows = _fix(tmp_path, upstream, {})
    assert rows and rows[0]["state"] == "skipped", r.stdout + r.stderr
    assert "needs CIVITAI_API_KEY" in rows[0]["warnings"], r.stdout + r.stderr
    assert not (tmp_path / "ComfyUI/models/loras/cobalt_drift_q.safetensors").exists()
    assert "Needs CIVITAI_API_KEY: loras/cobalt_drift_q.safetensors: set it and run again" in r.stdout


def test_with_a_key_the_download_sends_it_as_a_header_only(tmp_path, upstream):
    r, rows = _fix(tmp_path, upstream, {"CIVITAI_API_KEY": "sekrit-key-123"})
    assert rows and rows[0]["state"] == "done", r.stdout + r.stderr
    downloads = [x for x in upstream.requests if x.path_qs.startswith("/api/download/models/81020")]
    assert downloads and all(x.headers.get("Authorization") == "Bearer sekrit-key-123" for x in downloads)
    assert not any("sekrit" in x.path_qs or "token=" in x.path_qs for x in upstream.requests)


async def test_the_red_domain_is_asked_when_the_configured_one_hides_an_nsfw_model(upstream):
    upstream.civitai_2026()
    add_civitai_model(upstream, civitai(8103, "Crimson Hush", [("crimson_hush_q.safetensors", "b2" * 32)], nsfw=True))
    ref = ModelRef("crimson_hush_q.safetensors", "loras")
    r = (await resolve([ref]))["crimson_hush_q.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 8103 and "found on " + upstream.red_base in r.chosen.reason
    assert r.chosen.url.startswith(upstream.base + "/api/download/")  # downloads start on the configured base
    assert any(x.path_qs.startswith("/red/api/v1/models?") for x in upstream.requests)
    upstream.requests.clear()
    r = (await resolve([ref], nsfw=False))["crimson_hush_q.safetensors"]
    assert r.chosen is None and not any(x.path_qs.startswith("/red/") for x in upstream.requests)


async def test_every_sha256_of_a_run_is_looked_up_in_one_batch(upstream):
    shas = [f"{i:02x}" * 32 for i in (0xc1, 0xc2, 0xc3)]
    for i, sha in enumerate(shas):
        add_civitai_model(upstream, civitai(8110 + i, f"Batch {i}", [(f"batch_{i}_q.safetensors", sha)]))
    refs = [ModelRef(f"renamed_{i}.safetensors", "loras", hints=[ModelHint(hash=sha, hash_type="sha256")])
            for i, sha in enumerate(shas)]
    res = await resolve(refs)
    assert [res[f"renamed_{i}.safetensors"].chosen.ids["model_id"] for i in range(3)] == [8110, 8111, 8112]
    posts = [x for x in upstream.requests if x.method == "POST" and x.path_qs == "/api/v1/model-versions/by-hash"]
    assert len(posts) == 1 and not any("/by-hash/" in x.path_qs for x in upstream.requests)


async def test_an_air_with_a_file_id_picks_that_file_of_the_version(upstream):
    add_civitai_model(upstream, civitai(8120, "Twin Pack", [("twin_a.safetensors", "d1" * 32),
                                                            ("twin_b.safetensors", "d2" * 32)]))
    ref = ModelRef("my_twin.safetensors", "loras", hints=[ModelHint(url="urn:air:sd1:lora:civitai:8120@81200+81201")])
    r = (await resolve([ref]))["my_twin.safetensors"]
    assert r.chosen.ids["file_id"] == 81201 and r.chosen.sha256 == "d2" * 32


async def test_a_file_that_failed_civitais_scan_is_refused_with_the_reason(upstream):
    item = civitai(8130, "Risky Glow", [("risky_glow_q.ckpt", "e1" * 32)])
    item["modelVersions"][0]["files"][0].update(pickleScanResult="Danger",
                                                pickleScanMessage="Dangerous import detected: os.system")
    add_civitai_model(upstream, item)
    r = (await resolve([ModelRef("risky_glow_q.ckpt", "loras")]))["risky_glow_q.ckpt"]
    assert r.chosen is None and not r.candidates
    assert any("pickle scan found something dangerous" in t and "os.system" in t for t in r.tried)


async def test_an_early_access_version_is_a_state_not_a_failure(upstream):
    item = civitai(8140, "Fresh Bloom", [("fresh_bloom_q.safetensors", "f1" * 32)])
    item["modelVersions"][0]["earlyAccessEndsAt"] = "2099-01-31T00:00:00.000Z"
    add_civitai_model(upstream, item)
    r = (await resolve([ModelRef("fresh_bloom_q.safetensors", "loras")]))["fresh_bloom_q.safetensors"]
    assert r.chosen is None and r.candidates[0].ids["model_id"] == 8140
    assert r.why == "In early access on Civitai until 2099-01-31: choose it once you have access."


async def test_the_red_domain_is_asked_when_only_another_familys_file_shows(upstream):
    """The chain is SD 1.5; civitai.com shows only the SDXL file of that name (the SD 1.5 one is NSFW-rated):
    the red domain holds the chain's own, which the family then picks."""
    upstream.civitai_2026()
    add_civitai_model(upstream, civitai(8150, "Dusk Hush XL", [("dusk_hush_q.safetensors", "c1" * 32)],
                                        base="SDXL 1.0", downloads=90_000))
    add_civitai_model(upstream, civitai(8151, "Dusk Hush", [("dusk_hush_q.safetensors", "c2" * 32)], nsfw=True))
    ref = ModelRef("dusk_hush_q.safetensors", "loras", usages=[Usage("a.json", "2", "LoraLoader",
                                                                    anchors=(("checkpoints",
                                                                              "v1-5-pruned.safetensors"),))])
    r = (await resolve([ref]))["dusk_hush_q.safetensors"]
    assert r.chosen and r.chosen.ids["model_id"] == 8151 and "found on " + upstream.red_base in r.chosen.reason


def test_the_cli_summary_says_what_waits_for_a_key_and_words_an_error_not_its_data():
    from fixer.app.cli import final_summary

    text = final_summary({"summary": {"seconds": 1}, "models": [
        {"state": "failed", "folder": "loras", "name": "a.safetensors",
         "error": {"code": "sha256_mismatch", "message": "a.safetensors: sha256 mismatch"}, "candidates": []},
        {"state": "skipped", "folder": "loras", "name": "b.safetensors", "needs_token": "CIVITAI_API_KEY"}]})
    assert "Failed: loras/a.safetensors: a.safetensors: sha256 mismatch" in text and "'code'" not in text
    assert "Needs CIVITAI_API_KEY: loras/b.safetensors: set it and run again" in text

"""Community workflows: explicit models[] links, mirrors without /api, AIR URNs, links the user pastes."""

from __future__ import annotations

import pytest

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.errors import ConfigError, IntegrityError, NotFoundUpstream
from fixer.models import ModelHint, ModelRef
from fixer.read.clues import air_hints, parameters_hints
from fixer.sources.pasted import check_link
from tests.fake_upstream import Fault
from tests.fake_upstream.api_routes import add_hf_repo

TINY_LORA_SHA = "918a1a96cdfff4248358c71d9cc53f8a02342c59326b341923c83dcefe224ea1"
TINY_HF_REPO, TINY_HF_FILE = "comfy-fixer-fixtures/tiny-model", "fixture_hf_model.safetensors"


async def resolve_one(ref: ModelRef, **cfg):
    ctx = ResolveContext(config=SearchConfig(use_catalogs=False, retries=1, **cfg), secrets={}, inventory=None,
                         state_dir=None, comfyui_root=None)
    return [r async for r in Resolver(ctx).resolve([ref])][0]


async def test_models_entry_url_is_saved_under_the_entrys_name_when_the_url_names_another_file(upstream):
    url = f"{upstream.base}/{TINY_HF_REPO}/resolve/main/{TINY_HF_FILE}"
    ref = ModelRef("my_model_name.safetensors", "checkpoints", hints=[ModelHint(url=url, directory="checkpoints")])
    r = await resolve_one(ref, civitai=False, huggingface=False)
    assert r.chosen.source == "embedded" and r.chosen.url == url and r.chosen.filename == "my_model_name.safetensors"
    assert r.chosen.confidence >= 0.9


async def test_a_mirror_without_api_is_checked_by_the_file_url_itself(upstream):
    upstream.add_fault(Fault(path=r"^/api/models/", status=404, body="Not Found", times=None))
    url = f"{upstream.base}/{TINY_HF_REPO}/resolve/main/{TINY_HF_FILE}"
    ref = ModelRef(TINY_HF_FILE, "checkpoints", hints=[ModelHint(url=url)])
    r = await resolve_one(ref, civitai=False, huggingface=False)
    assert r.chosen.source == "embedded" and r.chosen.size == 1_100_000 and "file URL answers" in r.chosen.reason
    assert r.chosen.sha256 and len(r.chosen.sha256) == 64


async def test_a_dead_link_on_a_mirror_without_api_falls_through(upstream):
    upstream.add_fault(Fault(path=r"^/api/models/", status=404, body="Not Found", times=None))
    url = f"{upstream.base}/{TINY_HF_REPO}/resolve/main/no_such_file.safetensors"
    r = await resolve_one(ModelRef("no_such_file.safetensors", "checkpoints", hints=[ModelHint(url=url)]),
                          civitai=False, huggingface=False)
    assert r.chosen is None and any("file URL answers HTTP 404" in t for t in r.tried)


async def test_air_urn_hint_names_the_civitai_version(upstream):
    ref = ModelRef("whatever_i_called_it.safetensors", "loras",
                   hints=[ModelHint(url="urn:air:sd1:lora:civitai:9000101@9100101")])
    r = await resolve_one(ref, huggingface=False)
    assert r.chosen.source == "embedded" and r.chosen.ids["version_id"] == 9100101


def test_air_urns_are_read_anywhere_in_a_workflow():
    wf = {"extra": {"airs": ["urn:air:sdxl:checkpoint:civitai:827184@2514310"]},
          "nodes": [{"properties": {"note": "made with urn:air:sd1:lora:civitai:58390@62833 at 0.8"}}]}
    assert sorted(h.url for h in air_hints(wf)) == ["urn:air:sd1:lora:civitai:58390@62833",
                                                    "urn:air:sdxl:checkpoint:civitai:827184@2514310"]


async def test_workflow_wide_version_ids_count_only_for_a_reference_their_files_match(upstream):
    hints = [ModelHint(url="urn:air:sd1:lora:civitai:9000101@9100101"), ModelHint(url="civitai:62833")]
    r = await resolve_one(ModelRef("add_detail.safetensors", "loras", hints=hints), huggingface=False)
    assert r.chosen.source == "embedded" and r.chosen.ids["version_id"] == 62833
    r = await resolve_one(ModelRef("zz_unrelated_q1.safetensors", "loras", hints=hints), huggingface=False)
    assert r.chosen is None and any("no file of Civitai version 9100101 matches" in t for t in r.tried)


def test_a1111_parameters_give_hashes_by_name_and_civitai_resources_for_the_image():
    text = ('masterpiece\nSteps: 20, Model hash: 879db523c3, Model: dreamshaper_8, '
            'Lora hashes: "add_detail: 7c6bad76eb54, glow: 1a2b3c4d5e6f", '
            'Civitai resources: [{"type":"lora","modelVersionId":62833}], Version: v1.6')
    hints = parameters_hints(text)
    assert hints["dreamshaper_8"][0].hash == "879DB523C3" and hints["add_detail"][0].hash == "7C6BAD76EB54"
    assert [h.url for h in hints["*"]] == ["civitai:62833"] and hints["glow"][0].hash == "1A2B3C4D5E6F"


async def test_pasted_hf_link_is_checked_and_keeps_the_files_real_name(upstream):
    ref = ModelRef("sub/wanted.pth", "checkpoints")
    c = await check_link(f"hf:{TINY_HF_REPO}/{TINY_HF_FILE}", ref, hf_endpoint=upstream.base,
                         civitai_base=upstream.base)
    assert c.source == "user" and c.filename == f"sub/{TINY_HF_FILE}" and c.size == 1_100_000 and c.sha256
    assert c.folder == "checkpoints"


async def test_pasted_civitai_page_is_checked_against_the_workflows_hash(upstream):
    ref = ModelRef("x.safetensors", "loras", hints=[ModelHint(hash=TINY_LORA_SHA)])
    c = await check_link(f"{upstream.base}/models/9000101?modelVersionId=9100101", ref, hf_endpoint=upstream.base,
                         civitai_base=upstream.base)
    assert c.ids["version_id"] == 9100101 and c.sha256 == TINY_LORA_SHA
    assert c.filename == "fixture_tiny_lora.safetensors"
    with pytest.raises(IntegrityError):
        await check_link("civitai:9100101", ModelRef("x.safetensors", "loras", hints=[ModelHint(hash="ab" * 32)]),
                         hf_endpoint=upstream.base, civitai_base=upstream.base)


async def test_pasted_link_to_a_missing_file_or_another_host_is_refused_with_words(upstream):
    add_hf_repo(upstream, "someone/repo", {"a.safetensors": (10, "cd" * 32)})
    with pytest.raises(NotFoundUpstream, match="b.safetensors in someone/repo"):
        await check_link("hf:someone/repo/b.safetensors", ModelRef("b.safetensors", "loras"),
                         hf_endpoint=upstream.base, civitai_base=upstream.base)
    with pytest.raises(NotFoundUpstream, match="Model version 123456789 was not found at Civitai"):
        await check_link("civitai:123456789", ModelRef("b.safetensors", "loras"), hf_endpoint=upstream.base,
                         civitai_base=upstream.base)
    with pytest.raises(ConfigError, match="neither Hugging Face nor Civitai"):
        await check_link("https://example.org/b.safetensors", ModelRef("b.safetensors", "loras"),
                         hf_endpoint=upstream.base, civitai_base=upstream.base)


async def test_not_found_is_said_in_one_sentence_with_the_searches_as_details(upstream):
    r = await resolve_one(ModelRef("zz_exists_nowhere_q9.safetensors", "loras"))
    assert r.why.startswith("Not found on Civitai or Hugging Face (searched ") and r.why.endswith(" ways).")
    ways = int(r.why.split("(searched ")[1].split()[0])
    assert ways >= 5 and len(r.tried) >= 3


async def test_an_html_error_page_never_reaches_the_words_shown(upstream):
    upstream.rate_limit("civitai", every=1, retry_after=0.01)
    r = await resolve_one(ModelRef("zz_exists_nowhere_q9.safetensors", "loras"), huggingface=False)
    assert r.why == "Not found: Civitai could not be searched right now (try again later)."
    assert not any("<" in t for t in r.tried) and any("rate limited (HTTP 429)" in t for t in r.tried)


def test_auto_downloads_the_lora_made_for_the_family_of_the_workflows_present_checkpoint(tmp_path, upstream):
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
    from tests.fake_upstream.api_routes import add_civitai_model
    from tests.fake_upstream.file_routes import register_civitai_file

    lora = upstream.payloads["tiny-lora"]
    for mid, base, sha, downloads in ((8801, "SDXL 1.0", "ab" * 32, 90_000), (8802, "SD 1.5", lora["hashes"]["SHA256"],
                                                                              5)):
        add_civitai_model(upstream, {
            "id": mid, "name": f"Moss Glow {base}", "type": "LORA", "stats": {"downloadCount": downloads},
            "creator": {"username": "u"},
            "modelVersions": [{"id": mid * 10, "name": "v1", "baseModel": base, "trainedWords": [], "files": [{
                "id": mid, "name": "moss_glow_q.safetensors", "sizeKB": lora["bytes"] / 1024, "type": "Model",
                "primary": True, "metadata": {"format": "SafeTensor"}, "hashes": {"SHA256": sha.upper()},
                "downloadUrl": f"https://civitai.com/api/download/models/{mid * 10}"}]}]})
        register_civitai_file(upstream, mid * 10, "moss_glow_q.safetensors", upstream.payload("tiny-lora"))
    root = make_comfy_root(tmp_path, {"models/checkpoints/v1-5-pruned-emaonly.safetensors": "present"})
    write_json(root / "user/default/workflows/w.json", make_workflow([
        node(1, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"]),
        node(2, "LoraLoader", ["moss_glow_q.safetensors", 1, 1])]))
    r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root), "--state-dir",
                        str(tmp_path / "state")], env={**os.environ, **upstream.env(), "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    chosen = json.loads((tmp_path / "state/output/resolutions.json").read_text())[0]
    assert chosen["ids"]["version_id"] == 88020 and (root / "models/loras/moss_glow_q.safetensors").is_file()


def test_a_mixed_family_workflow_downloads_for_each_chain_the_lora_made_for_it(tmp_path, upstream):
    """An SDXL chain and an SD 1.5 chain (both checkpoints on disk), each with a LoRA whose file name exists on
    Civitai for both bases, the wrong base far more downloaded: each chain gets its own family's file."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, make_comfy_root, write_json
    from tests.fake_upstream.api_routes import add_civitai_model
    from tests.fake_upstream.file_routes import register_civitai_file
    from tests.test_chains import two_chains

    lora = upstream.payloads["tiny-lora"]
    right = {("moss_glow.safetensors", "SD 1.5"), ("kelp_glow.safetensors", "SDXL 1.0")}
    for mid, name, base in ((8901, "moss_glow.safetensors", "SD 1.5"), (8902, "moss_glow.safetensors", "SDXL 1.0"),
                            (8903, "kelp_glow.safetensors", "SDXL 1.0"), (8904, "kelp_glow.safetensors", "SD 1.5")):
        good = (name, base) in right
        add_civitai_model(upstream, {
            "id": mid, "name": f"Glow {mid}", "type": "LORA", "stats": {"downloadCount": 5 if good else 90_000},
            "creator": {"username": "u"},
            "modelVersions": [{"id": mid * 10, "name": "v1", "baseModel": base, "trainedWords": [], "files": [{
                "id": mid, "name": name, "sizeKB": lora["bytes"] / 1024, "type": "Model", "primary": True,
                "metadata": {"format": "SafeTensor"},
                "hashes": {"SHA256": lora["hashes"]["SHA256"] if good else f"{mid:064X}"},
                "downloadUrl": f"https://civitai.com/api/download/models/{mid * 10}"}]}]})
        register_civitai_file(upstream, mid * 10, name, upstream.payload("tiny-lora"))
    wf = json.loads(json.dumps(two_chains().workflow()).replace("moonlit_merge_q", "v1-5-pruned-emaonly"))
    root = make_comfy_root(tmp_path, {"models/checkpoints/v1-5-pruned-emaonly.safetensors": "present",
                                      "models/checkpoints/sd_xl_base_1.0.safetensors": "present"})
    write_json(root / "user/default/workflows/mixed.json", wf)
    r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root), "--state-dir",
                        str(tmp_path / "state")], env={**os.environ, **upstream.env(), "PYTHONPATH": str(ROOT),
                                                       "CIVITAI_API_KEY": "test-key"},
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    chosen = {x["filename"]: x["ids"].get("model_id")
              for x in json.loads((tmp_path / "state/output/resolutions.json").read_text())}
    assert chosen["moss_glow.safetensors"] == 8901 and chosen["kelp_glow.safetensors"] == 8903, r.stdout + r.stderr
    assert all((root / "models/loras" / n).is_file() for n in ("moss_glow.safetensors", "kelp_glow.safetensors"))

"""The optional LLM plug-in against a fake OpenAI-compatible endpoint: proposals count only when confirmed."""

from __future__ import annotations

import json

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import LLMConfig, SearchConfig
from fixer.models import ModelRef
from fixer.sources.llm import parse_proposals


def ctx(upstream, enabled=True) -> ResolveContext:
    cfg = SearchConfig(civitai=False, huggingface=False, use_catalogs=False,
                       llm=LLMConfig(enabled=enabled, endpoint=f"{upstream.base}/v1", model="qwen-fake"))
    return ResolveContext(config=cfg, secrets={}, inventory=None, state_dir=None, comfyui_root=None)


def test_proposals_are_read_from_fenced_json():
    text = 'Sure!\n```json\n{"huggingface": [{"repo_id": "a/b", "path": "c.safetensors"}]}\n```'
    assert parse_proposals(text) == {"huggingface": [{"repo_id": "a/b", "path": "c.safetensors"}]}


async def test_llm_is_off_by_default(upstream):
    r = [x async for x in Resolver(ctx(upstream, enabled=False)).resolve([ModelRef("t5xxl_fp16.safetensors",
                                                                                   "text_encoders")])][0]
    assert r.source == "not_found" and not any("/v1/chat" in q.path_qs for q in upstream.requests)


async def test_confirmed_hf_proposal_is_chosen(upstream):
    upstream.state["llm_replies"].append(("t5xxl_fp16.safetensors", json.dumps(
        {"huggingface": [{"repo_id": "comfyanonymous/flux_text_encoders", "path": "t5xxl_fp16.safetensors"}]})))
    r = [x async for x in Resolver(ctx(upstream)).resolve([ModelRef("t5xxl_fp16.safetensors", "text_encoders")])][0]
    assert r.chosen.source == "llm" and r.chosen.confidence == 0.75 and r.chosen.sha256
    assert "confirmed on Hugging Face" in r.chosen.reason


async def test_unconfirmed_proposal_is_ignored(upstream):
    upstream.state["llm_replies"].append(("t5xxl_fp16.safetensors", json.dumps(
        {"huggingface": [{"repo_id": "made-up/repo", "path": "t5xxl_fp16.safetensors"}],
         "civitai": [{"version_id": 9100101}]})))
    r = [x async for x in Resolver(ctx(upstream)).resolve([ModelRef("t5xxl_fp16.safetensors", "text_encoders")])][0]
    assert r.chosen is None and not r.candidates
    assert any("not confirmed" in t for t in r.tried) and any("has no file named" in t for t in r.tried)

"""Configuration that can send secrets is read only from the user's own config, never from the working
directory or a workflow folder; the LLM helper's key has one variable, its endpoint is this machine or
a host the user allowed, over https."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import LLMConfig, SearchConfig, llm_endpoint_reason, load_config, user_config_path
from fixer.errors import ConfigError
from fixer.models import ModelRef
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json

SENTINEL = "hf_SENTINELcwdCONFIGq8"


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fixer", *args], cwd=cwd, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=120, stdin=subprocess.DEVNULL)


def test_a_config_json_beside_shared_workflows_never_sends_a_token(upstream, tmp_path):
    """The shared folder a user unpacks and runs from holds a config.json turning the LLM helper on,
    pointed at a server that logs what it gets, with the key taken from HF_TOKEN."""
    root = make_comfy_root(tmp_path)
    unpacked = tmp_path / "unpacked"
    write_json(unpacked / "wf.json", make_workflow([node(1, "LoraLoader", ["zz_nowhere_lora.safetensors", 1, 1])]))
    write_json(unpacked / "config.json", {"search": {"civitai": False, "huggingface": False, "use_catalogs": False,
                                                   "llm": {"enabled": True, "endpoint": f"{upstream.base}/v1",
                                                           "api_key_env": "HF_TOKEN"}}})
    env = {**os.environ, **upstream.env(), "HF_TOKEN": SENTINEL, "HOME": str(tmp_path / "home")}
    r = cli(["--resolve", "--comfyui-root", str(root), "--workflow", "wf.json"], unpacked, env)
    assert r.returncode in (0, 1), r.stderr
    asked = [q for q in upstream.requests if "/chat/completions" in q.path_qs]
    assert asked == [], "the working directory's config.json was read"
    assert "is not read" in r.stderr and str(user_config_path({"XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"]})) \
        in r.stderr
    assert (unpacked / "status.json").is_file() and (unpacked / "output" / "resolutions.json").is_file()  # seed layout


def test_the_users_own_config_is_read_by_default(tmp_path):
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    xdg = tmp_path / "xdg"
    write_json(xdg / "comfyfixer" / "config.json", {"comfyui_root": str(root)})
    r = cli(["--scan", "--json", "--state-dir", str(tmp_path / "state")], tmp_path,
            {**os.environ, "XDG_CONFIG_HOME": str(xdg)})
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["summary"]["missing"] == 1


def test_user_config_path_follows_xdg_and_home(tmp_path):
    assert user_config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "comfyfixer" / "config.json"
    assert user_config_path({}).parts[-3:] == (".config", "comfyfixer", "config.json")


@pytest.mark.parametrize("endpoint,allowed,refused", [
    ("http://127.0.0.1:11434/v1", [], None),
    ("http://localhost:8080/v1", [], None),
    ("http://[::1]:8080/v1", [], None),
    ("http://evil.example/v1", [], "not on this machine"),
    ("https://evil.example/v1", [], "not on this machine"),
    ("http://llm.example/v1", ["llm.example"], "must use https"),
    ("https://llm.example/v1", ["llm.example"], None),
    ("https://user:pw@llm.example/v1", ["llm.example"], "no credentials"),
    ("file:///etc/passwd", [], "not an http(s) URL"),
])
def test_the_llm_endpoint_is_loopback_or_an_allowed_https_host(endpoint, allowed, refused):
    reason = llm_endpoint_reason(LLMConfig(enabled=True, endpoint=endpoint, allowed_hosts=allowed))
    assert (reason is None) if refused is None else (refused in (reason or ""))


def test_a_config_with_a_remote_plain_http_llm_is_refused_by_name(tmp_path):
    path = write_json(tmp_path / "config.json", {"search": {"llm": {"enabled": True,
                                                                    "endpoint": "http://203.0.113.9/v1"}}})
    with pytest.raises(ConfigError, match="search.llm.allowed_hosts"):
        load_config(path)


def ctx(upstream, secrets: dict[str, str], endpoint: str | None = None) -> ResolveContext:
    cfg = SearchConfig(civitai=False, huggingface=False, use_catalogs=False,
                       llm=LLMConfig(enabled=True, endpoint=endpoint or f"{upstream.base}/v1", model="qwen-fake"))
    return ResolveContext(config=cfg, secrets=secrets, inventory=None, state_dir=None, comfyui_root=None)


async def test_the_llm_key_is_its_own_variable_only(upstream):
    ref = ModelRef("t5xxl_fp16.safetensors", "text_encoders")
    secrets = {"HF_TOKEN": SENTINEL, "COMFYFIXER_LLM_API_KEY": "llm-key-1"}
    [_ async for _ in Resolver(ctx(upstream, secrets)).resolve([ref])]
    chat = [q for q in upstream.requests if "/chat/completions" in q.path_qs]
    assert len(chat) == 1 and chat[0].headers.get("Authorization") == "Bearer llm-key-1"
    upstream.requests.clear()
    [_ async for _ in Resolver(ctx(upstream, {"HF_TOKEN": SENTINEL})).resolve([ref])]
    chat = [q for q in upstream.requests if "/chat/completions" in q.path_qs]
    assert len(chat) == 1 and "Authorization" not in chat[0].headers


async def test_a_config_built_in_code_with_a_remote_endpoint_is_not_asked(upstream):
    ref = ModelRef("t5xxl_fp16.safetensors", "text_encoders")
    r = [x async for x in Resolver(ctx(upstream, {"COMFYFIXER_LLM_API_KEY": "k"},
                                       endpoint="http://203.0.113.9/v1")).resolve([ref])][0]
    assert any("LLM helper not asked" in t for t in r.tried)

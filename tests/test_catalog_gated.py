"""A catalog entry whose file is in a gated Hugging Face repo is known as needing a login before any
download is tried, asked once per repo, and never asked with a token or HF_HUB_OFFLINE."""

from __future__ import annotations

import json
from pathlib import Path

from fixer.app.resolve import ResolveContext, Resolver
from fixer.app.service import FixerService
from fixer.config import SearchConfig
from fixer.host.host import StandaloneHost
from fixer.models import ModelRef
from tests.conftest import make_workflow, node
from tests.fake_upstream.api_routes import add_hf_repo
from tests.test_service_review import row, wait_for

REPO = "acme-labs/gated-dev"
FILES = ("gated_dev_fp8.safetensors", "gated_dev_vae.safetensors")


def manager_list(root: Path, repo: str = REPO) -> Path:
    """A ComfyUI-Manager model list under `root` naming FILES on huggingface.co (rewritten to the fake Hub)."""
    p = root / "custom_nodes" / "ComfyUI-Manager" / "model-list.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"models": [
        {"filename": f, "type": "unet", "save_path": "default",
         "url": f"https://huggingface.co/{repo}/resolve/main/{f}"} for f in FILES]}))
    return p


async def catalog_only(refs: list[ModelRef], root: Path, secrets: dict[str, str] | None = None):
    ctx = ResolveContext(config=SearchConfig(civitai=False, huggingface=False), secrets=secrets or {},
                         inventory=None, state_dir=None, comfyui_root=root)
    return {r.name: r async for r in Resolver(ctx).resolve(refs)}


def gate_asks(upstream, repo: str = REPO) -> list[str]:
    return [r.path_qs for r in upstream.requests if r.path_qs == f"/api/models/{repo}"]


async def test_catalog_file_in_a_gated_repo_is_marked_before_any_download(upstream, tmp_path):
    add_hf_repo(upstream, REPO, {FILES[0]: (100, "a" * 64)}, gated="manual")
    manager_list(tmp_path)
    c = (await catalog_only([ModelRef(FILES[0], "diffusion_models")], tmp_path))[FILES[0]].chosen
    assert c.source == "catalog" and c.gated and c.needs_token == "HF_TOKEN"
    assert c.reason.endswith(f"needs HF_TOKEN and the license accepted at {upstream.base}/{REPO}")
    assert not [r for r in upstream.requests if "/resolve/" in r.path_qs]


async def test_catalog_file_in_an_open_repo_is_not_marked(upstream, tmp_path):
    add_hf_repo(upstream, REPO, {FILES[0]: (100, "a" * 64)})
    manager_list(tmp_path)
    c = (await catalog_only([ModelRef(FILES[0], "diffusion_models")], tmp_path))[FILES[0]].chosen
    assert not c.gated and c.needs_token is None and gate_asks(upstream)


async def test_two_files_of_one_repo_cost_one_gate_request(upstream, tmp_path):
    add_hf_repo(upstream, REPO, {f: (100, "a" * 64) for f in FILES}, gated="auto")
    manager_list(tmp_path)
    found = await catalog_only([ModelRef(f, "diffusion_models") for f in FILES], tmp_path)
    assert all(found[f].chosen.gated for f in FILES)
    assert len(gate_asks(upstream)) == 1


async def test_with_a_token_the_gate_is_not_asked(upstream, tmp_path):
    add_hf_repo(upstream, REPO, {FILES[0]: (100, "a" * 64)}, gated="manual")
    manager_list(tmp_path)
    await catalog_only([ModelRef(FILES[0], "diffusion_models")], tmp_path, secrets={"HF_TOKEN": "hf_secret"})
    assert not gate_asks(upstream)


async def test_hf_hub_offline_sends_nothing_for_the_gate(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_hf_repo(upstream, REPO, {FILES[0]: (100, "a" * 64)}, gated="manual")
    manager_list(tmp_path)
    c = (await catalog_only([ModelRef(FILES[0], "diffusion_models")], tmp_path))[FILES[0]].chosen
    assert c.source == "catalog" and not upstream.requests


async def test_review_shows_the_catalog_file_as_needing_a_login_before_approval(upstream, comfy_root, tmp_path):
    add_hf_repo(upstream, REPO, {FILES[0]: (100, "a" * 64)}, gated="manual")
    manager_list(comfy_root)
    svc = FixerService(StandaloneHost.from_root(comfy_root), tmp_path / "state", comfyui_root=comfy_root)
    await svc.start_fix(make_workflow([node(1, "UNETLoader", [FILES[0], "default"])]), "flux", review=True)
    status = await wait_for(svc, lambda s: s["phase"] == "review")
    r = row(status, FILES[0])
    assert r["state"] == "review" and r["source"] == "catalog"
    assert any(w.startswith("needs HF_TOKEN and the license accepted") for w in r["warnings"])
    assert not [q for q in upstream.requests if "/resolve/" in q.path_qs]
    svc.cancel()
    await svc._task

"""Secrets: runs with sentinel token values, then a search of everything they wrote or said finds no token,
and the upstream saw each token only on its own origin (never after the redirect to the CDN host)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from aiohttp import web

import server_routes as sr
from fixer.app.service import FixerService
from fixer.host.host import StandaloneHost
from tests.conftest import PAGE_HEADERS, ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream import payload_bytes
from tests.fake_upstream.api_routes import add_hf_repo
from tests.fake_upstream.file_routes import register_hf_file

HF_SENTINEL = "hf_SENTINELhfTOKENx7Q2"
CIVITAI_SENTINEL = "civSENTINELkey9Z3k"
SENTINELS = (HF_SENTINEL, CIVITAI_SENTINEL)
REPO = "secrets/tests"


def seed_world(tmp_path: Path, up, link_token: bool = False) -> tuple[Path, dict, bytes]:
    """A workflow needing one HF LoRA (via the CDN redirect) and the fixtures' Civitai LoRA.

    `link_token`: the workflow's own links carry the tokens as ?token= (as pasted Civitai links do).
    """
    hf_q = f"?token={HF_SENTINEL}" if link_token else ""
    civ_q = f"?token={CIVITAI_SENTINEL}" if link_token else ""
    data = payload_bytes({"seed": "secret-test", "recipe": "safetensors", "n_values": 8192})
    sha = hashlib.sha256(data).hexdigest()
    add_hf_repo(up, REPO, {"s.safetensors": (len(data), sha)})
    register_hf_file(up, REPO, "s.safetensors", data)
    lora = up.payloads["tiny-lora"]
    root = make_comfy_root(tmp_path)
    wf = make_workflow([
        node(1, "LoraLoader", ["s.safetensors", 1, 1], models=[{
            "name": "s.safetensors", "url": f"https://huggingface.co/{REPO}/resolve/main/s.safetensors{hf_q}",
            "hash": sha, "hash_type": "sha256", "directory": "loras"}]),
        node(2, "LoraLoader", [lora["filename"], 1, 1], models=[{
            "name": lora["filename"], "url": f"https://civitai.com/api/download/models/9100101{civ_q}",
            "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "loras"}]),
    ])
    return root, wf, data


def files_containing_a_token(*trees: Path) -> list[str]:
    hits = []
    for tree in trees:
        for p in tree.rglob("*"):
            if p.is_file() and not p.is_symlink():
                raw = p.read_bytes()
                hits += [f"{p}: {s}" for s in SENTINELS if s.encode() in raw]
    return hits


def assert_tokens_only_on_their_origin(up, used: bool = True) -> None:
    seen = [r for r in up.requests if any(s in json.dumps(r.headers) + r.path_qs for s in SENTINELS)]
    assert bool(seen) == used, "the tokens were used (otherwise this test proves nothing)" if used else seen
    for r in up.requests:
        blob = json.dumps(r.headers) + r.path_qs
        if r.host.startswith("localhost"):
            assert not any(s in blob for s in SENTINELS), f"a token followed the redirect to {r.host}{r.path_qs}"
        assert not any(s in r.path_qs for s in SENTINELS), f"a token travelled in a URL: {r.path_qs}"


def test_cli_run_writes_and_prints_no_token_and_sends_none_to_the_cdn(tmp_path, upstream):
    root, wf, data = seed_world(tmp_path, upstream)
    write_json(root / "user/default/workflows/w.json", wf)
    state = tmp_path / "state"
    env = {**os.environ, **upstream.env(), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "HF_TOKEN": HF_SENTINEL, "CIVITAI_API_KEY": CIVITAI_SENTINEL}
    r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root),
                        "--state-dir", str(state)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "models/loras/s.safetensors").read_bytes() == data
    assert list((state / "log").iterdir()) and list((state / "output").iterdir())
    scripts = [p for p in (state / "output").rglob("*") if p.suffix in (".sh", ".bat", ".ps1")]
    assert scripts, "the curl scripts are part of the search"
    assert not any(s in r.stdout + r.stderr for s in SENTINELS)
    assert files_containing_a_token(state, root) == []
    for flags in (["--status"], ["--status", "--json"]):
        out = subprocess.run([sys.executable, "-m", "fixer", *flags, "--state-dir", str(state)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and not any(s in out.stdout + out.stderr for s in SENTINELS)
    assert_tokens_only_on_their_origin(upstream)


async def test_comfyui_routes_and_events_never_carry_a_token(tmp_path, upstream, aiohttp_client, caplog):
    caplog.set_level(logging.DEBUG)
    root, wf, data = seed_world(tmp_path, upstream)
    state = tmp_path / "state"
    service = FixerService(StandaloneHost.from_root(root), state, comfyui_root=root)
    messages: list[str] = []
    service.on_event(lambda name, payload: messages.append(json.dumps({"type": name, "data": payload})))
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: service)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    bodies: list[str] = []

    async def call(method: str, path: str, body: dict | None = None) -> dict:
        resp = await client.request(method, f"/comfyfixer{path}", json=body)
        text = await resp.text()
        bodies.append(text)
        assert resp.status < 300, text
        return json.loads(text)

    await call("POST", "/settings", {"hf_token": HF_SENTINEL, "civitai_api_key": CIVITAI_SENTINEL})
    assert (await call("GET", "/settings"))["values"]["hf_token_set"] is True
    assert oct((state / "secrets.json").stat().st_mode & 0o777) == "0o600"
    await call("POST", "/scan", {"workflow": wf, "name": "w"})
    await call("POST", "/fix", {"workflow": wf, "name": "w"})
    for _ in range(600):
        status = await call("GET", "/status")
        if status["phase"] in ("complete", "error") and (status["data"] or {}).get("summary"):
            break
        await asyncio.sleep(0.05)
    assert status["data"]["summary"]["done"] == 2, status
    await call("POST", "/portable", {"workflow": wf})
    said = "\n".join(bodies + messages + [r.getMessage() for r in caplog.records])
    assert not any(s in said for s in SENTINELS), [s for s in SENTINELS if s in said]
    assert files_containing_a_token(root) == []
    kept = str(state / "secrets.json")
    assert [h for h in files_containing_a_token(state) if not h.startswith(kept + ":")] == []
    assert_tokens_only_on_their_origin(upstream)


def test_a_token_inside_a_workflow_link_is_not_copied_into_reports_or_logs(tmp_path, upstream):
    root, wf, _ = seed_world(tmp_path, upstream, link_token=True)
    wf_path = write_json(tmp_path / "in" / "w.json", wf)
    state = tmp_path / "state"
    env = {**os.environ, **upstream.env(), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root),
                        "--workflow", str(wf_path), "--state-dir", str(state)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not any(s in r.stdout + r.stderr for s in SENTINELS)
    assert files_containing_a_token(state, root) == []
    assert_tokens_only_on_their_origin(upstream, used=False)  # a link's ?token= is dropped, never sent on

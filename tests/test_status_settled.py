"""A run whose process is gone never looks alive through ComfyUI either: the service settles a killed run's
status.json when it starts and on its status route, as `comfy-fixer --status` does (one shared function)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import server_routes as sr
from fixer.app.service import FixerService
from fixer.host.host import StandaloneHost
from tests.conftest import DATA, PAGE_HEADERS, ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream import payload_bytes
from tests.fake_upstream.api_routes import add_hf_repo
from tests.fake_upstream.file_routes import faults, hf_key, register_hf_file

REPO, SLOW = "settle/tests", "slow_model.safetensors"


async def no_manager(pack_id: str) -> None:
    return None


@pytest.fixture
def world(tmp_path: Path, upstream: Any) -> dict[str, Any]:
    """A ComfyUI whose workflow needs one slow Hugging Face file; the CLI runs with the state dir the
    service inside that ComfyUI uses (user/comfyfixer), as a script driving both does."""
    root = make_comfy_root(tmp_path)
    data = payload_bytes({"seed": "settle-slow", "recipe": "safetensors", "n_values": 3 << 20})
    sha = hashlib.sha256(data).hexdigest()
    add_hf_repo(upstream, REPO, {SLOW: (len(data), sha)})
    register_hf_file(upstream, REPO, SLOW, data)
    faults(upstream, hf_key(REPO, SLOW)).rate = 1 << 20  # 12 MiB at 1 MiB/s: killed on the way
    hint = {"name": SLOW, "url": f"https://huggingface.co/{REPO}/resolve/main/{SLOW}", "hash": sha,
            "hash_type": "sha256", "directory": "checkpoints"}
    write_json(root / "user/default/workflows/w.json",
               make_workflow([node(1, "CheckpointLoaderSimple", [SLOW], models=[hint])]))
    state = root / "user" / "comfyfixer"
    state.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_API_KEY", "XDG_CONFIG_HOME")}
    env = {**env, **upstream.env(), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    return {"root": root, "state": state, "env": env}


def start_cli(world: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(world["root"]),
                             "--state-dir", str(world["state"])], cwd=world["state"], env=world["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def on_disk(world: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = json.loads((world["state"] / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def wait_downloading(world: dict[str, Any], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while on_disk(world).get("phase") != "downloading" or not (on_disk(world).get("data") or {}).get(
            "current_download"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def kill_hard(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def assert_interrupted(doc: dict[str, Any]) -> None:
    assert doc["phase"] == "error" and doc["data"]["current_download"] is None, doc
    last = doc["errors"][-1]
    assert last["code"] == "run_interrupted" and "its process is gone" in last["error"], last
    assert "--resume" in last["details"]


async def serve(aiohttp_client: Any, svc: FixerService) -> Any:
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: svc, install_pack=no_manager)
    app = web.Application()
    app.add_routes(routes)
    return await aiohttp_client(app, headers=PAGE_HEADERS)


async def test_the_status_route_follows_a_cli_run_and_settles_it_when_it_is_killed(world, aiohttp_client):
    svc = FixerService(StandaloneHost.from_root(world["root"]), world["state"], comfyui_root=world["root"])
    client = await serve(aiohttp_client, svc)
    assert (await (await client.get("/comfyfixer/status")).json())["phase"] == "idle"
    proc = start_cli(world)
    try:
        wait_downloading(world, proc)
        alive = await (await client.get("/comfyfixer/status")).json()
        assert alive["phase"] == "downloading" and alive["data"]["current_download"] == SLOW  # alive: untouched
    finally:
        kill_hard(proc)
    assert on_disk(world)["phase"] == "downloading"  # what a killed process leaves behind
    shown = await (await client.get("/comfyfixer/status")).json()
    assert_interrupted(shown)
    assert_interrupted(on_disk(world))  # written back: scripts reading the file stop waiting too
    # The guide's minimal status check, run on that file, says the run failed (never "Running: downloading").
    check = subprocess.run([sys.executable, str(DATA / "seed_scripts" / "minimal_status.py")], cwd=world["state"],
                           env=world["env"], capture_output=True, text=True, timeout=60, check=False)
    assert check.stdout.strip() == "✗ Error occurred, check logs", check.stdout + check.stderr


async def test_the_service_settles_a_killed_runs_status_when_it_starts(world, aiohttp_client):
    proc = start_cli(world)
    try:
        wait_downloading(world, proc)
    finally:
        kill_hard(proc)
    assert on_disk(world)["phase"] == "downloading"
    svc = FixerService(StandaloneHost.from_root(world["root"]), world["state"], comfyui_root=world["root"])
    assert_interrupted(on_disk(world))  # settled by the start alone, before anyone asks
    client = await serve(aiohttp_client, svc)
    assert_interrupted(await (await client.get("/comfyfixer/status")).json())


async def test_a_finished_earlier_run_is_not_shown_as_the_restarted_services_own(world, aiohttp_client):
    write_json(world["state"] / "status.json", {"timestamp": "2026-01-01T00:00:00+0000", "phase": "complete",
                                                "progress": {"current": 1, "total": 1, "percent": 100.0},
                                                "data": {}, "errors": []})
    svc = FixerService(StandaloneHost.from_root(world["root"]), world["state"], comfyui_root=world["root"])
    client = await serve(aiohttp_client, svc)
    assert (await (await client.get("/comfyfixer/status")).json())["phase"] == "idle"
    assert on_disk(world)["phase"] == "complete"  # left as it was


async def test_comfyui_settles_a_killed_runs_status_as_its_server_starts(tmp_path, monkeypatch, aiohttp_client):
    """Nobody opens the page: the file alone is settled once ComfyUI's server starts (the service is built
    on a thread then, off ComfyUI's start-up)."""
    from fake_comfy import install_comfy, load_pack, unload_pack

    root = make_comfy_root(tmp_path)
    state = root / "user" / "comfyfixer"
    state.mkdir(parents=True)
    write_json(state / "status.json", {"timestamp": "2026-01-01T00:00:00+0000", "phase": "downloading",
                                       "progress": {"current": 0, "total": 1, "percent": 0.0},
                                       "data": {"current_download": SLOW}, "errors": []})
    (state / ".comfyfixer.lock").write_text("pid 999999 comfy-fixer --auto since 2026-01-01T00:00:00+0000")
    server = install_comfy(monkeypatch, root)
    try:
        load_pack("ComfyFixerSmartSettles")
        assert on_disk({"state": state})["phase"] == "downloading"  # importing the pack settles nothing
        await aiohttp_client(server.PromptServer.instance.app)  # ComfyUI's server starts
        deadline = time.monotonic() + 30
        while on_disk({"state": state}).get("phase") != "error" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_interrupted(on_disk({"state": state}))
        assert "pid 999999 comfy-fixer --auto" in on_disk({"state": state})["errors"][-1]["error"]
    finally:
        unload_pack("ComfyFixerSmartSettles")

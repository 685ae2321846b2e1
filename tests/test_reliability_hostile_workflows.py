"""A folder of hostile workflows beside one honest workflow, through `comfy-fixer --auto --yes` and through the
panel's /comfyfixer/fix: nothing is written outside the model folders and the state dir, nothing crashes, memory
stays bounded, status.json stays valid JSON, and the honest model still lands verified.

Every hostile URL is one the local fake upstream really serves, so a write location that slipped through would
really be written (the tree comparison would see it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from fixer.app.service import FixerService
from fixer.host.host import StandaloneHost, model_folders
from tests.conftest import PAGE_HEADERS, ROOT, make_comfy_root, make_workflow, node, write_json
from tests.test_reliability_content import bomb, chunk, loops, png

MiB = 2**20

PEAK_MEMORY_BOUND = 1 << 30
# A file the fake upstream really serves (an HF repo recorded with its bytes), so a write location that slipped
# through would really be written.
HOSTILE_URL = "{base}/comfy-fixer-fixtures/tiny-model/resolve/main/fixture_hf_model.safetensors"
HOSTILE_FILE = "fixture_hf_model.safetensors"
HOSTILE_PAYLOAD = "tiny-hf-file"
HOSTILE_DIRECTORIES = [
    "../venv/lib/python3.11/site-packages", "../../python_embeded/Lib/site-packages", "../../x", "/tmp/hostile-x",
    "..\\..\\x", "loras/../../x", "C:\\x", "custom_nodes", "configs", "loras/./../../x",
]
UNREGISTERED = "ipadapter"  # a plain key only an uninstalled pack registers: missing, and never written
HOSTILE_NAMES = [
    "../../../evil.safetensors", "..\\..\\evil.safetensors", "/tmp/evil.safetensors", "C:\\evil.safetensors",
    "loras/../../evil.safetensors", "\u202eevil.safetensors", "a\x00b.safetensors", "\uff0e\uff0e/evil.safetensors",
]
HONEST_PAYLOAD = "tiny-lora"  # Civitai version 9100101 of the fake upstream


def hostile_workflows(up) -> dict[str, bytes]:
    """File name -> file bytes of every crafted workflow (the honest one is added by the caller)."""
    out: dict[str, bytes] = {}
    for i, directory in enumerate(HOSTILE_DIRECTORIES + [UNREGISTERED]):
        hint = {"name": HOSTILE_FILE, "url": HOSTILE_URL.format(base=up.base), "directory": directory,
                "hash": up.payloads[HOSTILE_PAYLOAD]["hashes"]["SHA256"].lower(), "hash_type": "sha256"}
        if i % 2:  # declared at the workflow's top level, as the frontend's own missing-models list reads it
            wf = make_workflow([node(1, "SomePackLoader", [HOSTILE_FILE])], models=[hint])
        else:  # on the custom loader itself
            wf = make_workflow([node(1, "SomePackLoader", [HOSTILE_FILE], models=[hint])])
        out[f"dir_{i}.json"] = json.dumps(wf).encode()
    for i, bad in enumerate(HOSTILE_NAMES):
        hint = {"name": bad, "url": HOSTILE_URL.format(base=up.base), "directory": "loras"}
        out[f"name_{i}.json"] = json.dumps(make_workflow([node(1, "LoraLoader", [bad, 1, 1], models=[hint])])).encode()
    lone = json.dumps(make_workflow([node(1, "LoraLoader", ["lone-\udcff.safetensors", 1, 1])]))
    out["lone_surrogate.json"] = lone.encode("ascii")  # json.dumps escapes it: \udcff, as a hostile file would
    out["not_utf8.json"] = b'{"nodes": [{"id": 1, "type": "LoraLoader", "widgets_values": ["\xff\xfe.safetensors"]}]}'
    out["not_json.json"] = b"\x00\x01\x02 not a workflow"
    # Content that costs memory or time: a zTXt bomb, JSON that multiplies when parsed, deep nesting.
    out["bomb.png"] = png(chunk(b"zTXt", b"workflow\x00\x00" + bomb(128 * MiB)))
    out["dicts.json"] = b"[" + b"{}," * 5_000_000 + b"{}]"
    out["deep.json"] = b"[" * 100_000 + b"]" * 100_000
    return out


def honest_workflow(up) -> tuple[dict, str, str]:
    lora = up.payloads[HONEST_PAYLOAD]
    hint = {"name": lora["filename"], "url": f"{up.base}/api/download/models/9100101",
            "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "loras"}
    wf = make_workflow([node(1, "LoraLoader", [lora["filename"], 1, 1], models=[hint])])
    return wf, lora["filename"], lora["hashes"]["SHA256"].lower()


def tree(base: Path) -> dict[str, tuple]:
    """Every path under base with what would show a write: kind, size, modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, base)] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns)
    return out


def writes_outside(base: Path, before: dict, after: dict, allowed: list[Path]) -> list[str]:
    roots = [os.path.relpath(a, base) for a in allowed]
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(p for p in changed if not any(p == r or p.startswith(r + os.sep) for r in roots))


@pytest.fixture
def world(tmp_path: Path, upstream):
    root = make_comfy_root(tmp_path, {"models/checkpoints/present.safetensors": "x"})
    (root / "models/configs").mkdir()
    (tmp_path / "venv/lib/python3.11/site-packages").mkdir(parents=True)  # the target of the first case
    (tmp_path / "home").mkdir()
    (root / "models/loras" / os.fsdecode(b"mine-\xfe.safetensors")).write_bytes(b"a user's file, Latin-1 name")
    wf_dir = root / "user/default/workflows"
    for name, data in hostile_workflows(upstream).items():
        (wf_dir / name).write_bytes(data)
    (wf_dir / os.fsdecode(b"named-\xff.json")).write_text(
        json.dumps(make_workflow([node(1, "CheckpointLoaderSimple", ["present.safetensors"])])))
    with open(wf_dir / "huge.json", "wb") as f:
        f.truncate(200 * MiB)  # a 200 MB workflow file (sparse on disk)
    loops(wf_dir)  # two links back up the workflow folder
    honest, honest_name, honest_sha = honest_workflow(upstream)
    write_json(wf_dir / "honest.json", honest)
    host = StandaloneHost.from_root(root)
    allowed = [Path(p) for paths in model_folders(host.folders()).values() for p in paths] + [tmp_path / "state"]
    return SimpleNamespace(tmp=tmp_path, root=root, up=upstream, honest=honest, honest_name=honest_name,
                           honest_sha=honest_sha, allowed=allowed, before=tree(tmp_path), wf_dir=wf_dir)


def hostile_requests(up) -> list[str]:
    return [r.path_qs for r in up.requests if r.method == "GET" and "/tiny-model/resolve/" in r.path_qs]


def run_cli_measured(world) -> tuple[int, str, str, int]:
    """`comfy-fixer --auto --yes` in a child process: exit code, stdout, stderr, peak RSS in bytes."""
    out, err = world.tmp / "cli.out", world.tmp / "cli.err"
    env = {**os.environ, **world.up.env(), "PYTHONPATH": str(ROOT), "HOME": str(world.tmp / "home")}
    with open(out, "wb") as o, open(err, "wb") as e:
        child = subprocess.Popen([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(world.root),
                                  "--state-dir", str(world.tmp / "state")], env=env, stdout=o, stderr=e,
                                 stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    text = lambda p: p.read_bytes().decode("utf-8", "replace")  # noqa: E731
    return child.returncode, text(out), text(err), usage.ru_maxrss * 1024  # ru_maxrss is KiB on Linux


def test_hostile_workflows_through_the_cli_write_only_into_model_folders(world):
    code, out, err, peak = run_cli_measured(world)
    after = tree(world.tmp)
    for log in (out, err):
        assert "Traceback" not in log and "Logging error" not in log, log[-3000:]
    assert code == 2, err  # unreadable files among them are an input error; unsafe references reported, not fixed
    assert writes_outside(world.tmp, world.before, after, world.allowed + [world.tmp / "cli.out",
                                                                            world.tmp / "cli.err"]) == []
    assert peak < PEAK_MEMORY_BOUND
    status = json.loads((world.tmp / "state/status.json").read_bytes().decode("utf-8"))
    assert status["phase"] in ("complete", "error")
    landed = world.root / "models/loras" / world.honest_name
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == world.honest_sha
    assert hostile_requests(world.up) == [], "no hostile file was even fetched"
    rows = json.loads((world.tmp / "state/output/missing_models.json").read_bytes().decode("utf-8"))
    unsafe = [row["filename"] for row in rows if row["state"] == "unsafe"]
    assert unsafe.count(HOSTILE_FILE) == len(HOSTILE_DIRECTORIES)  # each reported, with its reason
    assert f"Refusing to write into {UNREGISTERED!r}" in out


@pytest.fixture
async def panel(aiohttp_client, world):
    import server_routes as sr

    svc = FixerService(StandaloneHost.from_root(world.root), world.tmp / "state", comfyui_root=world.root)
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: svc, install_pack=None)
    app = web.Application()
    app.add_routes(routes)
    return await aiohttp_client(app, headers=PAGE_HEADERS)


async def fix_and_wait(client, body: bytes, seconds: float = 60.0) -> tuple[int, dict]:
    r = await client.post("/comfyfixer/fix", data=body, headers={"Content-Type": "application/json"})
    answer = await r.json()
    if r.status != 202:
        return r.status, answer
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = await (await client.get("/comfyfixer/status")).json()
        if status["phase"] in ("complete", "error"):
            return r.status, status
        await asyncio.sleep(0.05)
    raise AssertionError(f"the fix did not finish in {seconds} s")


async def test_hostile_workflows_through_the_panel_write_only_into_model_folders(panel, world, caplog):
    for path in sorted(world.wf_dir.iterdir()):
        if path.name == "honest.json" or path.suffix != ".json" or path.stat().st_size > 16 * MiB:
            continue  # the panel posts JSON; bodies over its limit are refused unread (tests/test_routes.py)
        raw = path.read_bytes()
        body = b'{"name": "hostile.json", "workflow": ' + raw + b"}"
        code, answer = await fix_and_wait(panel, body)
        assert code in (202, 400, 413), (path.name, code, answer)  # a clear refusal or a run, never a 500
        if code == 202:
            rows = {row["name"]: row for row in answer["data"]["models"]}
            assert all(row["state"] != "done" for row in rows.values()), (path.name, rows)
    code, status = await fix_and_wait(panel, json.dumps({"name": "honest.json", "workflow": world.honest}).encode())
    assert code == 202 and status["phase"] == "complete", status  # the bad ones broke nothing for the next
    landed = world.root / "models/loras" / world.honest_name
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == world.honest_sha
    assert writes_outside(world.tmp, world.before, tree(world.tmp), world.allowed) == []
    assert hostile_requests(world.up) == []
    json.loads((world.tmp / "state/status.json").read_bytes().decode("utf-8"))
    assert "Traceback" not in caplog.text
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < PEAK_MEMORY_BOUND

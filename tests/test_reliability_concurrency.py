"""Concurrent use: two runs over one state directory or one model file are refused with a clear message
(a lock), never interleaved; the same file requested twice in one run is downloaded once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys

import pytest

from fixer.config import DownloadConfig
from fixer.errors import RunLocked
from fixer.models import TransferRequest
from fixer.state import StateLock
from fixer.transfer import TransferManager
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream.file_routes import faults, hf_key, register_hf_file

REPO = "concurrency/tests"


def cfg() -> DownloadConfig:
    return DownloadConfig(min_free_margin_bytes=0, timeout_seconds=5)


def request(url: str, name: str) -> TransferRequest:
    return TransferRequest(url=url, folder="loras", filename=name, source="huggingface", model_name=name)


def test_state_lock_refuses_a_second_holder_with_the_first_ones_name(tmp_path):
    with StateLock(tmp_path, "comfy-fixer --auto"):
        with pytest.raises(RunLocked) as e:
            StateLock(tmp_path, "fix of w.json").acquire()
    assert "comfy-fixer --auto" in str(e.value) and f"pid {os.getpid()}" in str(e.value)
    StateLock(tmp_path, "again").acquire().release()  # released on exit: the next run may start


def test_state_lock_is_released_when_its_process_dies(tmp_path):
    code = (f"import os, sys; sys.path.insert(0, {str(ROOT)!r}); from fixer.state import StateLock; "
            f"StateLock({str(tmp_path)!r}, 'doomed').acquire(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    StateLock(tmp_path, "next").acquire().release()


def test_second_cli_run_on_the_same_state_dir_is_refused_with_the_holder_named(tmp_path, upstream):
    # The first run is this test process holding the lock (flock is per process, so this is what a
    # running `comfy-fixer get` looks like to the second process).
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    env = {**os.environ, **upstream.env(), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    state = tmp_path / "state"
    with StateLock(state, "comfy-fixer get"):
        r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root),
                            "--state-dir", str(state)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Another ComfyFixerSmart run holds" in r.stderr, r.stderr
    assert "comfy-fixer get" in r.stderr, "the message names what holds the lock"
    assert not upstream.requests, "the refused run did not start searching"


def test_two_managers_on_the_same_target_never_interleave(tmp_path, upstream):
    """Two runs with different state dirs (CLI and ComfyUI) that want the same file in the same folder."""
    data = random.Random(2).randbytes(4 << 20)
    url = register_hf_file(upstream, REPO, "same.bin", data)
    faults(upstream, hf_key(REPO, "same.bin")).rate = 4 << 20
    dest = str(tmp_path)

    async def go():
        a, b = TransferManager(cfg(), {}), TransferManager(cfg(), {})
        ta = await a.submit(request(url, "same.bin"), dest)
        while not os.path.exists(ta.part) or os.path.getsize(ta.part) < 1 << 20:
            await asyncio.sleep(0.01)
        tb = await b.submit(request(url, "same.bin"), dest)
        await asyncio.gather(a.wait(), b.wait())
        return ta, tb

    ta, tb = asyncio.run(go())
    assert ta.state == "done", ta.error
    assert tb.state == "failed" and tb.error is not None, tb.error
    assert "another" in tb.error.message.lower() and "same.bin" in tb.error.message, tb.error
    assert hashlib.sha256((tmp_path / "same.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(os.listdir(tmp_path)) == ["same.bin"]


def test_same_model_in_two_workflows_of_one_cli_run_downloads_once(tmp_path, upstream):
    from tests.fake_upstream import payload_bytes
    from tests.fake_upstream.api_routes import add_hf_repo

    data = payload_bytes({"seed": "twice", "recipe": "safetensors", "n_values": 4096})
    sha = hashlib.sha256(data).hexdigest()
    add_hf_repo(upstream, REPO, {"shared.safetensors": (len(data), sha)})
    register_hf_file(upstream, REPO, "shared.safetensors", data)
    root = make_comfy_root(tmp_path)
    hint = [{"name": "shared.safetensors", "url": f"https://huggingface.co/{REPO}/resolve/main/shared.safetensors",
             "hash": sha, "hash_type": "sha256", "directory": "loras"}]
    for wf in ("a.json", "b.json"):
        write_json(root / "user/default/workflows" / wf,
                   make_workflow([node(1, "LoraLoader", ["shared.safetensors", 1, 1], models=hint),
                                  node(2, "LoraLoader", ["shared.safetensors", 0.5, 0.5])]))
    env = {**os.environ, **upstream.env(), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root),
                        "--state-dir", str(tmp_path / "state")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "models/loras/shared.safetensors").read_bytes() == data
    assert len([q for q in upstream.requests if "/resolve/" in q.path_qs]) == 1

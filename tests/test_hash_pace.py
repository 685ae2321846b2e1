"""The background hash index is paced: a read limit (MB/s) and an off switch from the one settings schema, no
reading while ComfyUI runs a prompt, progress that says so; hashes needed now are computed over only the files
that can match, and a fix never waits for the background. The pace is checked with a fake clock."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fake_comfy import install_comfy, load_pack, unload_pack

from fixer.app.service import FixerService
from fixer.app.settings import parse_patch
from fixer.config import HashingConfig
from fixer.host.host import StandaloneHost
from fixer.identity.hash_index import CHUNK, BackgroundIndex, HashIndex, IndexProgress, index_path
from fixer.identity.pace import MB, ReadPace
from tests.conftest import make_comfy_root, make_workflow, node
from tests.fake_upstream.api_routes import add_hf_repo
from tests.fake_upstream.file_routes import register_hf_file

COMFY_NAME = "ComfyFixerSmartPaced"


class FakeClock:
    """monotonic() and a wait that moves it: the pace's sleeps cost no real time."""

    def __init__(self) -> None:
        self.t = 0.0
        self.seen: list[tuple[float, Any]] = []  # (time after each wait, what `watch` said then)
        self.watch: Any = None

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> None:
        self.t += seconds
        self.seen.append((self.t, self.watch() if self.watch else None))


def blob(seed: str, n: int) -> bytes:
    return (hashlib.sha256(seed.encode()).digest() * (n // 32 + 1))[:n]


def hashing(**kw: Any) -> HashingConfig:
    return HashingConfig(**kw)


def test_the_background_index_reads_no_faster_than_the_limit_and_a_new_limit_applies_at_once(tmp_path):
    root = make_comfy_root(tmp_path, {f"models/checkpoints/m{i}.safetensors": blob(f"m{i}", 24 * MB)
                                      for i in range(3)})
    clock = FakeClock()
    progress = IndexProgress()
    clock.watch = lambda: progress.hashed_bytes
    settings = hashing(hash_read_mb_per_s=8)
    pace = ReadPace(lambda: settings, clock=clock.now, wait=clock.wait)
    files = HashIndex(None).scan(StandaloneHost.from_root(root), progress, pace=pace)
    assert len(files) == 3 and progress.state == "done" and progress.hashed_bytes == 72 * MB
    assert progress.read_limit == 8 * MB
    # At every moment: no more than the limit's bytes since the start, plus the one piece being read.
    assert all(done <= 8 * MB * t + CHUNK for t, done in clock.seen), clock.seen
    assert (72 * MB - CHUNK) / (8 * MB) <= clock.t <= 72 * MB / (8 * MB) + 1

    # The page changes the limit while hashing: the next piece goes by the new one (0: no limit).
    clock2 = FakeClock()
    live = {"limit": 8}
    progress2 = IndexProgress()

    def settings_now() -> HashingConfig:
        if progress2.hashed_bytes >= 24 * MB:
            live["limit"] = 0
        return hashing(hash_read_mb_per_s=live["limit"])

    HashIndex(None).scan(StandaloneHost.from_root(root), progress2,
                         pace=ReadPace(settings_now, clock=clock2.now, wait=clock2.wait))
    assert progress2.hashed_bytes == 72 * MB and progress2.read_limit == 0
    assert clock2.t <= 24 * MB / (8 * MB) + 1  # the last 48 MB read without a wait


def test_nothing_is_read_while_comfyui_runs_a_prompt_and_the_progress_says_paused(tmp_path):
    root = make_comfy_root(tmp_path, {"models/loras/a.safetensors": blob("a", 3 * MB),
                                      "models/loras/b.safetensors": blob("b", 3 * MB)})
    clock = FakeClock()
    prompt_until = 30.0  # ComfyUI is busy with a prompt for the first 30 (fake) seconds
    pace = ReadPace(lambda: hashing(hash_read_mb_per_s=0), busy=lambda: clock.t < prompt_until,
                    clock=clock.now, wait=clock.wait)
    bg = BackgroundIndex(HashIndex(None), StandaloneHost.from_root(root), pace=pace)
    clock.watch = lambda: (bg.progress.state, bg.progress.hashed_bytes)
    bg.start().wait(30)
    assert bg.progress.state == "done" and bg.progress.hashed_bytes == 6 * MB
    while_busy = [seen for t, seen in clock.seen if t < prompt_until]
    assert while_busy and all(seen == ("paused", 0) for seen in while_busy), clock.seen
    assert clock.t >= prompt_until


def service(root: Path, state: Path, busy: Any = None) -> FixerService:
    return FixerService(StandaloneHost.from_root(root), state, comfyui_root=root, busy=busy)


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fixer-hash-index" and t.is_alive()]


async def test_background_hashing_is_a_setting_of_the_one_schema_and_off_reads_nothing(tmp_path):
    root = make_comfy_root(tmp_path, {"models/checkpoints/big.safetensors": blob("big", 2 * MB)})
    svc = service(root, tmp_path / "state")
    answer = svc.settings()
    by_key = {e["key"]: e for e in answer["schema"]}
    assert by_key["background_hashing"]["kind"] == "boolean" and by_key["background_hashing"]["default"] is True
    rate = by_key["hash_read_mb_per_s"]
    assert (rate["kind"], rate["default"], rate["minimum"]) == ("integer", HashingConfig().hash_read_mb_per_s, 0)
    assert by_key["background_hashing"]["group"] == rate["group"] == "Hashing"

    svc.update_settings(parse_patch({"background_hashing": False, "hash_read_mb_per_s": 40}))
    again = service(root, tmp_path / "state")  # persisted in settings.json, read by a restarted ComfyUI
    values = again.settings()["values"]
    assert (values["background_hashing"], values["hash_read_mb_per_s"]) == (False, 40)
    assert again.config.hashing == HashingConfig(background_hashing=False, hash_read_mb_per_s=40)
    await again.scan(make_workflow([node(1, "CheckpointLoaderSimple", ["big.safetensors"])]), "wf")
    assert hash_threads() == []  # the scan started no background reading
    assert again.identity.progress()["state"] == "off"
    assert not index_path(tmp_path / "state").exists()


async def test_turning_it_off_stops_a_paused_index_and_a_fix_never_waits_for_it(tmp_path, upstream):
    data = blob("renamed", 1 * MB)
    sha = hashlib.sha256(data).hexdigest()
    root = make_comfy_root(tmp_path, {"models/checkpoints/old name.safetensors": data,
                                      "models/vae/other.safetensors": blob("vae", 2 * MB)})
    add_hf_repo(upstream, "pace/tests", {"wanted.safetensors": (len(data), sha)})
    register_hf_file(upstream, "pace/tests", "wanted.safetensors", data)
    svc = service(root, tmp_path / "state", busy=lambda: True)  # ComfyUI runs prompts all the time
    link = "https://huggingface.co/pace/tests/resolve/main/wanted.safetensors"
    wf = make_workflow([node(1, "CheckpointLoaderSimple", ["wanted.safetensors"],
                             models=[{"name": "wanted.safetensors", "directory": "checkpoints", "url": link}])])
    await svc.scan(wf, "wf")
    bg = svc.identity._bg
    assert bg is not None and bg.running()
    # The fix hashes the one file of the Hub's size now, unpaced, while the background index waits: the
    # renamed copy is linked, nothing downloaded.
    downloads = lambda: [r for r in upstream.requests if r.method == "GET" and "/pace/tests/resolve/" in r.path_qs]  # noqa: E731
    await svc.start_fix(wf, "wf")
    await svc._task
    row = {r["name"]: r for r in svc.status()["data"]["models"]}["wanted.safetensors"]
    assert row["state"] == "done", row
    placed = root / "models/checkpoints/wanted.safetensors"
    assert placed.read_bytes() == data and placed.stat().st_nlink == 2
    assert downloads() == []
    progress = svc.identity.progress()
    assert progress["state"] == "paused" and progress["hashed_bytes"] == 0

    svc.update_settings(parse_patch({"background_hashing": False}))
    bg.wait(10)
    assert not bg.running() and bg.progress.state == "stopped" and bg.progress.hashed_bytes == 0


def test_with_no_index_the_duplicates_report_hashes_only_files_that_share_a_size(tmp_path):
    same = blob("same", 1 * MB)
    root = make_comfy_root(tmp_path, {"models/checkpoints/a.safetensors": same,
                                      "models/loras/copy of a.safetensors": same,
                                      "models/vae/unique.safetensors": blob("unique", 3 * MB)})
    svc = service(root, tmp_path / "state")  # no scan yet, so no index (and the same with hashing off)
    answer = svc.identity.duplicates(fix=False)
    groups = answer["report"]["groups"]
    assert [sorted(c["relpath"] for c in g["copies"]) for g in groups] == [["a.safetensors", "copy of a.safetensors"]]
    saved = json.loads(index_path(tmp_path / "state").read_text())
    # Two names (two inodes) of one size hashed; the 3 MB file no other file's size matches was never read.
    assert sorted(saved["entries"].values()) == [hashlib.sha256(same).hexdigest()] * 2


@pytest.fixture
def comfy(monkeypatch, comfy_root):
    server = install_comfy(monkeypatch, comfy_root)
    yield server
    unload_pack(COMFY_NAME)


def test_inside_comfyui_the_index_waits_while_the_prompt_queue_is_not_empty(comfy):
    load_pack(COMFY_NAME)
    runtime = sys.modules["fixer.comfy.runtime"]
    svc = runtime.service()
    server = comfy.PromptServer.instance
    assert svc.identity.busy() is False
    server.prompt_queue.currently_running[1] = ("prompt",)
    assert svc.identity.busy() is True
    del server.prompt_queue.currently_running[1]
    server.prompt_queue.queue.append(("queued",))
    assert svc.identity.busy() is True
    server.prompt_queue.queue.clear()
    assert svc.identity.busy() is False
    server.prompt_queue = object()  # a ComfyUI without the method: not known busy, the read limit still holds
    assert svc.identity.busy() is False

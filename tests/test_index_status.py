"""The panel's status says what the background hash index does (GET /comfyfixer/status, shapes.PanelStatus): how
far it got of how much, its read limit, paused while ComfyUI renders, `off` when the settings turned it off; the
page puts it in words. Reading the status starts nothing and reads nothing from disk (the page polls it)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path
from typing import Any, Callable

from fixer.app.service import FixerService
from fixer.app.settings import parse_patch
from fixer.host.host import StandaloneHost
from fixer.identity.hash_index import HashIndex, index_path
from fixer.identity.pace import MB
from tests.conftest import make_comfy_root, make_workflow, node
from tests.test_error_codes import needs_node, page
from tests.test_schema import check

WORKFLOW = make_workflow([node(1, "CheckpointLoaderSimple", ["a.safetensors"])])
RUNNING = ("walking", "hashing", "paused")


def blob(seed: str, n: int) -> bytes:
    return (hashlib.sha256(seed.encode()).digest() * (n // 32 + 1))[:n]


def models(tmp_path: Path) -> Path:
    return make_comfy_root(tmp_path, {"models/checkpoints/a.safetensors": blob("a", 1 * MB),
                                      "models/loras/b.safetensors": blob("b", 2 * MB)})


def service(root: Path, state: Path, busy: Callable[[], bool] | None = None) -> FixerService:
    return FixerService(StandaloneHost.from_root(root), state, comfyui_root=root, busy=busy)


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fixer-hash-index" and t.is_alive()]


async def index_when(svc: FixerService, ok: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = svc.status()
        if ok(status["index"]):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"the index never got there: {svc.status()['index']}")


async def test_the_status_carries_the_background_index_while_it_runs_and_when_it_is_done(tmp_path):
    """Fails on a941c31: the status had no `index` (only the duplicates route said how far the hashing got)."""
    root = models(tmp_path)
    hold = threading.Event()
    hold.set()

    def busy() -> bool:  # ComfyUI starts a prompt once the index has hashed its first file
        bg = svc.identity._bg
        return hold.is_set() and bg is not None and bg.progress.files_done >= 1

    svc = service(root, tmp_path / "state", busy=busy)
    events: list[dict[str, Any]] = []
    svc.on_event(lambda name, payload: events.append(payload) if name == "comfyfixer.status" else None)
    assert svc.status()["index"]["state"] == "idle"
    await svc.scan(WORKFLOW, "wf")
    # The page hears at once that an index started (its line shows; it polls the status from then on).
    assert events and events[-1]["index"]["state"] in RUNNING
    check("comfyfixer.status", events[-1])

    paused = await index_when(svc, lambda i: i["state"] == "paused")
    check("comfyfixer.status", paused)
    index = paused["index"]
    assert (index["files_done"], index["files_total"], index["bytes_total"]) == (1, 2, 3 * MB)
    assert index["bytes_done"] in (1 * MB, 2 * MB)  # the first file walked, whichever it was
    assert index["read_limit"] == 100 * MB  # the default limit, in bytes a second
    svc.update_settings(parse_patch({"hash_read_mb_per_s": 7}))
    assert svc.status()["index"]["read_limit"] == 7 * MB  # a new limit is said at once

    hold.clear()  # the prompt ended: the index goes on and ends
    done = (await index_when(svc, lambda i: i["state"] == "done"))["index"]
    assert (done["files_done"], done["bytes_done"], done["hashed_bytes"]) == (2, 3 * MB, 3 * MB)
    assert index_path(tmp_path / "state").exists()


async def test_the_status_says_off_when_background_hashing_is_off_even_while_one_winds_down(tmp_path):
    """Fails on a941c31: no `index` in the status (and the duplicates route showed a stopping index as running)."""
    root = models(tmp_path)
    svc = service(root, tmp_path / "state", busy=lambda: True)  # a prompt runs all the time: the index waits
    await svc.scan(WORKFLOW, "wf")
    await index_when(svc, lambda i: i["state"] == "paused")
    svc.update_settings(parse_patch({"background_hashing": False}))
    off = svc.status()
    assert off["index"]["state"] == "off"  # at once, while the paused thread sees it within a second
    check("comfyfixer.status", off)
    bg = svc.identity._bg
    assert bg is not None
    bg.wait(10)
    assert not bg.running() and svc.status()["index"]["state"] == "off"

    again = service(root, tmp_path / "state2")
    again.update_settings(parse_patch({"background_hashing": False}))
    events: list[dict[str, Any]] = []
    again.on_event(lambda name, payload: events.append(payload))
    await again.scan(WORKFLOW, "wf")
    assert again.status()["index"]["state"] == "off" and events == [] and hash_threads() == []


async def test_reading_the_status_starts_no_hashing_and_reads_no_index(tmp_path, monkeypatch):
    """Fails on a941c31: the status had no `index` to say `idle`. A status read is O(1): it neither starts the
    background index nor loads the hash index file (read when an index, a lockfile or duplicates need it)."""
    root = models(tmp_path)
    state = tmp_path / "state"
    svc = service(root, state)
    loads: list[Any] = []
    load = HashIndex._load
    monkeypatch.setattr(HashIndex, "_load", lambda self, path: (loads.append(path), load(self, path))[1])
    for _ in range(3):
        status = svc.status()
        assert status["index"] == {"state": "idle", "files_total": 0, "files_done": 0, "bytes_total": 0,
                                   "bytes_done": 0, "hashed_bytes": 0, "read_limit": 100 * MB, "error": None}
    check("comfyfixer.status", status)
    await asyncio.sleep(0.1)
    assert hash_threads() == [] and svc.identity._bg is None
    assert loads == [] and not index_path(state).exists()


@needs_node
def test_the_page_says_the_index_in_one_line_while_it_reads_and_nothing_otherwise():
    """Fails on a941c31: the page had no words for the background index (web/lib/words.js indexWords)."""
    hashing = {"state": "hashing", "files_total": 12, "files_done": 3, "bytes_total": 40 * 10**9,
               "bytes_done": 12 * 10**8, "hashed_bytes": 12 * 10**8, "read_limit": 100 * MB, "error": None}
    said = page("indexWords", hashing)
    assert said["text"] == ("Indexing your model files for duplicates: 1.2 GB of 40.0 GB (at most 100 MB/s; "
                            "paused while ComfyUI renders)")
    assert "3 of 12 files" in said["title"] and "Settings → ComfyFixerSmart → Hashing" in said["title"]
    paused = page("indexWords", {**hashing, "state": "paused"})
    assert paused["paused"] and "paused while ComfyUI renders (1.2 GB of 40.0 GB done)" in paused["text"]
    assert "no read limit" in page("indexWords", {**hashing, "read_limit": 0})["text"]
    assert "listing them" in page("indexWords", {**hashing, "state": "walking", "bytes_total": 0})["text"]
    failed = page("indexWords", {**hashing, "state": "failed", "error": "OSError: disk gone"})
    assert "stopped on an error" in failed["text"] and failed["details"] == "OSError: disk gone"
    for quiet in ("idle", "done", "stopped", "off"):
        assert page("indexWords", {**hashing, "state": quiet}) is None
    assert page("indexWords", None) is None

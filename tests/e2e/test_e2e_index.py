"""The background hash index in the panel, in a real ComfyUI and headless Chromium, on both frontends: while it
reads the model files (three of 80 MB here, at most 10 MB/s) the panel says so in one line that moves, with the
read limit and the way to turn it off; while ComfyUI renders a prompt it says paused; turned off, the line
goes; done, it goes too.

Screenshots at 1400x900 go to tests/e2e/artifacts/<frontend>/index-*.png.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.comfyui_proc import ARTIFACTS, start_comfyui
from tests.e2e.conftest import comfyui_dir
from tests.e2e.test_e2e_fix import graph_node, run_driver

pytestmark = pytest.mark.e2e

MB = 10**6
FILES = {f"checkpoints/index_zz_{i}.safetensors": 80 * MB for i in range(3)}
LIMIT_MB = 10  # slow enough that the index is still reading when the flow turns it off


def workflow() -> dict:
    return {"id": "1dde5e5e-3333-4a6b-8c7d-9e0f1a2b3c4d", "revision": 0, "last_node_id": 1, "last_link_id": 0,
            "nodes": [graph_node(1, "CheckpointLoaderSimple", ["index_zz_0.safetensors"])], "links": [],
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


@pytest.fixture(scope="module")
def flow(frontend, upstream) -> dict:
    label, root = frontend
    base = Path(tempfile.mkdtemp(prefix=f"cfx-index-{label}-"))
    for rel, size in FILES.items():
        path = base / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    comfy = start_comfyui(comfyui_dir(), base, env=upstream.env(), front_end_root=root)
    try:
        before = comfy.get_json("/api/comfyfixer/status")["index"]  # no page, no scan yet
        code, _ = comfy.post_json("/api/comfyfixer/settings", {"hash_read_mb_per_s": LIMIT_MB})
        assert code == 200
        out = ARTIFACTS / label
        scenario = {"url": comfy.url, "artifacts": str(out), "label": label, "workflow": workflow(),
                    "name": "index_zz"}
        result = run_driver("index_flow.mjs", scenario, out, "index-result.json")
        result["label"] = label
        result["before"] = before
        yield result
    finally:
        comfy.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_the_panel_says_the_background_index_in_one_moving_line(flow):
    assert flow["before"]["state"] == "idle"  # reading the status started nothing
    assert flow["first"].startswith("Indexing your model files for duplicates")
    said = flow["hashing"]
    assert f"at most {LIMIT_MB} MB/s; paused while ComfyUI renders" in said and "of 240 MB" in said, said
    assert "Settings to turn off" in said
    assert "files" in flow["hashingTitle"] and "Settings → ComfyFixerSmart → Hashing" in flow["hashingTitle"]
    assert flow["later"] != flow["hashing"]  # the page reads the status while the index runs: the line moves
    later = flow["laterIndex"]
    assert later["files_total"] == 3 and later["bytes_total"] == 240 * MB and later["read_limit"] == LIMIT_MB * MB


def test_while_comfyui_renders_the_line_says_paused_and_the_index_goes_on_after(flow):
    said = flow["paused"]
    assert flow["pausedState"] == "paused"
    assert said.startswith("Indexing your model files for duplicates: paused while ComfyUI renders (")
    assert "of 240 MB done)" in said
    step = next(s for s in flow["steps"] if s["name"] == "paused while ComfyUI renders")
    assert step["queued"] == 200 and step["resumedAt"] > step["pausedAt"]


def test_the_settings_link_and_the_off_switch(flow):
    assert "Hash model files in the background" in flow["settingsDialog"]  # opened on ours
    assert flow["offIndex"]["state"] == "off"


def test_the_line_goes_when_the_index_is_done(flow):
    assert flow["again"].startswith("Indexing your model files for duplicates")
    done = flow["doneIndex"]
    assert (done["state"], done["files_done"], done["bytes_done"]) == ("done", 3, 240 * MB)
    assert 0 < done["hashed_bytes"] < 240 * MB  # it went on where it was turned off (whole files kept)
    # The rescan's index was pushed to the page once, as it started; its progress was polled.
    assert len(flow["pushed"]) == 1 and flow["pushed"][0] in ("walking", "hashing"), flow["pushed"]
    assert "Indexing your model files" not in flow["panelDone"]
    assert flow["errors"] == [] or all("ComfyFixerSmart" not in e for e in flow["errors"]), flow["errors"]

"""The panel's leftovers in a real ComfyUI and headless Chromium, on both frontends: a node pack that fails to
import (ComfyUI's own reason, what to do, its model's folder read from source), rescans after tab switches
that keep the workflow's top-level models[] (a workflow saved without an `id`), a queued fix taken off the
queue, and a 403 of the routes in words.

One flow per frontend (leftovers_flow.mjs) plays the user; each test reads one part of what it saw.
Screenshots at 1280x720 go to tests/e2e/artifacts/<frontend>/leftovers-*.png.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.e2e.comfyui_proc import ARTIFACTS, start_comfyui
from tests.e2e.conftest import HF_CHECKPOINT, comfyui_dir
from tests.e2e.test_e2e_fix import graph_node, run_driver

pytestmark = pytest.mark.e2e

BROKEN_PACK = "ComfyUI-BrokenZZ"  # ComfyUI imports it before this pack: its reason comes from ComfyUI's log buffer
BROKEN_FILE = "broken_zz_unet.safetensors"
LINKED = "linked_zz_model.safetensors"  # named only by the workflow's top-level models[]
BROKEN_SOURCE = textwrap.dedent("""
    import folder_paths
    import zz_not_installed_module  # a dependency this ComfyUI's Python does not have

    class BrokenLoaderZZ:
        @classmethod
        def INPUT_TYPES(s):
            return {"required": {"unet_name": (folder_paths.get_filename_list("diffusion_models"),)}}

        RETURN_TYPES = ("MODEL",)
        FUNCTION = "load"
        CATEGORY = "zz"

    NODE_CLASS_MAPPINGS = {"BrokenLoaderZZ": BrokenLoaderZZ}
""")


def workflow_a() -> dict:
    """Saved without an `id`: the frontend gives the graph one when it loads."""
    nodes = [graph_node(1, "CheckpointLoaderSimple", [HF_CHECKPOINT]), graph_node(2, "BrokenLoaderZZ", [BROKEN_FILE]),
             graph_node(3, "CheckpointLoaderSimple", [LINKED])]
    return {"revision": 0, "last_node_id": 3, "last_link_id": 0, "nodes": nodes, "links": [], "groups": [],
            "config": {}, "extra": {}, "version": 0.4,
            "models": [{"name": LINKED, "url": f"https://huggingface.co/someauthor/zz/resolve/main/{LINKED}",
                        "directory": "checkpoints"}]}


def workflow_b() -> dict:
    return {"id": "b1c2d3e4-2222-4a6b-8c7d-9e0f1a2b3c4d", "revision": 0, "last_node_id": 1, "last_link_id": 0,
            "nodes": [graph_node(1, "LoraLoader", ["only_in_b_zz.safetensors", 1.0, 1.0])], "links": [],
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


@pytest.fixture(scope="module")
def flow(frontend, upstream) -> dict:
    label, root = frontend
    base = Path(tempfile.mkdtemp(prefix=f"cfx-leftovers-{label}-"))
    pack = base / "custom_nodes" / BROKEN_PACK
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(BROKEN_SOURCE)
    (pack / "requirements.txt").write_text("zz_not_installed_module\n")
    comfy = start_comfyui(comfyui_dir(), base, env=upstream.env(), front_end_root=root)
    try:
        out = ARTIFACTS / label
        scenario = {"url": comfy.url, "artifacts": str(out), "label": label, "workflowA": workflow_a(),
                    "workflowB": workflow_b(), "nameA": "leftovers_A", "nameB": "leftovers_B", "linked": LINKED,
                    "brokenPack": BROKEN_PACK}
        result = run_driver("leftovers_flow.mjs", scenario, out, "leftovers-result.json", check=False)
        result["label"] = label
        result["log"] = comfy.log()
        yield result
    finally:
        comfy.stop()
        shutil.copy(comfy.log_path, ARTIFACTS / label / "comfyui-leftovers.log")
        shutil.rmtree(base, ignore_errors=True)


def part(result: dict, name: str) -> dict:
    assert name not in result.get("errors_by_item", {}), result["errors_by_item"][name]
    assert "failure" not in result, result["failure"]
    return result[name]


def test_a_pack_that_failed_to_import_is_shown_with_its_reason_and_what_to_do(flow):
    assert f"custom_nodes/{BROKEN_PACK}" in flow["log"] and "zz_not_installed_module" in flow["log"]
    r = part(flow, "failedPack")
    text = r["text"]
    assert f"{BROKEN_PACK} is installed but ComfyUI could not load it" in text, text
    assert "ComfyUI says: No module named 'zz_not_installed_module'" in text, text
    assert f"custom_nodes/{BROKEN_PACK}/requirements.txt" in text and "restart ComfyUI" in text, text
    assert "BrokenLoaderZZ" in text and "read from the pack's source" in text, text
    assert BROKEN_FILE in r["rows"]  # its model's folder came from the source: the file is listed
    assert not any("BrokenLoaderZZ" in t for t in r["installOffered"]), r["installOffered"]


def test_rescans_after_tab_switches_carry_the_workflows_models(flow):
    r = part(flow, "rescan")
    bodies = r["scanBodies"]
    switched = bodies.index({"name": "--switch--", "models": []})
    before = [b["models"] for b in bodies[:switched] if b["name"] == "leftovers_A"]
    after = [b["models"] for b in bodies[switched:] if b["name"] == "leftovers_A"]
    assert before and all(LINKED in m for m in before), bodies
    assert len(after) >= 2 and all(LINKED in m for m in after), bodies
    assert r["statuses"] == [200, 200]


def test_a_queued_fix_is_taken_off_the_queue_from_its_notice(flow):
    r = part(flow, "unqueue")
    assert "The fix for leftovers_B is queued" in r["queuedText"] and "Take off the queue" in r["queuedText"]
    assert r["queuedBefore"] == ["leftovers_B"]
    assert r["queuedAfter"] == [] and r["runWorkflow"] == "leftovers_A" and r["phase"] == "review", r
    assert r["notice"] and "off the queue" in r["notice"], r


def test_a_refused_request_is_said_in_words_with_the_servers_reason_behind_details(flow):
    r = part(flow, "refused")
    assert r["status"] == 403
    assert "Reload the page" in r["words"] and "X-ComfyFixer-Client" in r["words"], r
    assert "Request refused" not in r["words"].split("Details")[0], r
    assert "lacks the X-ComfyFixer-Client header" in r["details"], r
    assert r["afterHeaderBack"] == 0  # the next scan, with the header, clears it

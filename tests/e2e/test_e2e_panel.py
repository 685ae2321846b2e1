"""The panel in a real ComfyUI and browser, on both frontends: the panel a user would choose."""

from __future__ import annotations

import json

import pytest

from tests.e2e.comfyui_proc import ARTIFACTS
from tests.e2e.test_e2e_fix import CHECKPOINT, LORA, graph_node, one_node_workflow, run_driver
from tests.fake_upstream import file_routes

pytestmark = pytest.mark.e2e

NOWHERE = "nowhere_to_be_found_e2e.safetensors"  # on no service
MODAL_MODEL = "linked_in_the_workflow.safetensors"
SPEC = "hf:comfy-fixer-fixtures/tiny-model/" + CHECKPOINT
RATE = 60_000  # bytes/s per connection: ~18 s per fixture file, long enough to switch workflows


def lora(node_id: int, name: str) -> dict:
    return graph_node(node_id, "LoraLoader", [name, 1.0, 1.0], inputs=[("model", "MODEL", None), ("clip", "CLIP",
                                                                                                  None)],
                      outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", [])])


def checkpoint(node_id: int, name: str, **props) -> dict:
    node = graph_node(node_id, "CheckpointLoaderSimple", [name],
                      outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", []), ("VAE", "VAE", [])])
    node["properties"].update(props)
    return node


def workflow(uid: str, *nodes: dict) -> dict:
    wf = one_node_workflow(uid, nodes[0])
    wf["nodes"], wf["last_node_id"] = list(nodes), len(nodes)
    return wf


def test_panel_keeps_runs_apart_problems_first_and_one_notice(comfy, upstream):
    for key in (file_routes.hf_key("comfy-fixer-fixtures/tiny-model", CHECKPOINT), file_routes.civitai_key(9100101)):
        file_routes.faults(upstream, key).rate = RATE
    # Civitai wants a key for every download since 2026; without one the LoRA would wait for it in the review.
    for patch in ({"connections_per_file": 1}, {"max_concurrent": 1}, {"civitai_api_key": "civitai-e2e-key"}):
        assert comfy.post_json("/api/comfyfixer/settings", patch)[0] == 200
    link = {"name": MODAL_MODEL, "url": f"https://huggingface.co/comfy-fixer-fixtures/x/resolve/main/{MODAL_MODEL}",
            "directory": "checkpoints"}
    report = graph_node(2, "ComfyFixerReport", [])
    download = graph_node(1, "ComfyFixerDownloadModel", [SPEC, "checkpoints", "", ""], outputs=[("file_name", "*", [])])
    scenario = {
        "url": comfy.url, "artifacts": str(ARTIFACTS / comfy.label), "models": str(comfy.models),
        "wfModal": workflow("5b0e7c1a-2d3f-4a5b-8c6d-7e8f9a0b1c2d", checkpoint(1, MODAL_MODEL, models=[link])),
        "wfA": workflow("6c1f8d2b-3e4a-4b6c-9d7e-8f9a0b1c2d3e", checkpoint(1, CHECKPOINT), lora(2, LORA)),
        "wfB": workflow("7d2a9e3c-4f5b-4c7d-8e8f-9a0b1c2d3e4f", lora(1, "only_in_workflow_b.safetensors")),
        "wfC": workflow("8e3b0f4d-5a6c-4d8e-9f9a-0b1c2d3e4f5a", checkpoint(1, CHECKPOINT), lora(2, NOWHERE)),
        "wfReport": workflow("9f4c1a5e-6b7d-4e9f-8a0b-1c2d3e4f5a6b", download, report),
        "nowhere": NOWHERE, "checkpoint": CHECKPOINT, "lora": LORA, "modalModel": MODAL_MODEL,
    }
    result = run_driver("panel_flow.mjs", scenario, ARTIFACTS / comfy.label, "panel-result.json")

    # One notice: ours is a line and a button inside their list (1.27's modal, 1.58's Issues panel),
    # never a second toast with another count, never hidden behind their modal.
    assert result["complementShown"], result["dialogsModal"]
    assert result["ourToasts"] == 0

    # Runs belong to their workflow.
    assert "for workflow_A" in result["runTitleA"]
    other = result["otherRunText"]
    assert other.startswith("Downloading for workflow_A") and "Open workflow_A" in other
    assert result["aRowsUnderB"] == 0
    assert "The fix for workflow_B is queued: it starts by itself" in result["busyNotice"]
    assert result["activeAfterOpen"] == "workflow_A"
    assert "Waiting for a download slot" in (result["slotText"] or ""), result["slotText"]

    # Partial files: the kept bytes are said, then gone with the .part on request.
    assert "kept for resuming" in result["cancelledText"] and "Discard partial" in result["cancelledText"]
    assert "kept for resuming" not in result["discardedText"]
    folder = "checkpoints" if result["cancelledName"] == CHECKPOINT else "loras"
    # A's run ended (Cancel all) and B's queued fix ran right after: A's panel still says how A's run went.
    assert "for workflow_A" in (result["summaryAAfterB"] or ""), result["summaryAAfterB"]
    assert not list((comfy.models / folder).glob(result["cancelledName"] + ".part*"))

    # Problems first; finished rows fold into one line; compact is shorter.
    assert result["firstItem"] == NOWHERE
    assert result["doneLine"] and "1 finished file" in result["doneLine"] and result["doneRowsShown"] == 0
    assert "1 downloaded and verified" in result["summaryC"] and "1 not found" in result["summaryC"]
    assert result["heightCompact"] < result["heightFull"]

    # Portable after another run: the present file keeps its link; the one without is named.
    portable = json.loads((ARTIFACTS / comfy.label / "portable-C.json").read_text())
    assert CHECKPOINT in {m["name"] for m in portable["models"]}
    assert NOWHERE in result["portableNotice"] and "without a link" in result["portableNotice"]

    # The reconnect rescanned: the file placed while the socket was down is no longer missing.
    assert result["goneAfterReconnect"]

    # The Report node's text is on the node, without the Download node's source.
    assert result["reportText"].startswith("Models:") and "hf:" not in result["reportText"]
    assert not [e for e in result["errors"] if "comfyfixer" in e.lower()]
    # Inside ComfyUI only the last run's download scripts are kept.
    scripts = list((comfy.base / "user" / "comfyfixer" / "output").glob("download_*.sh"))
    assert len(scripts) <= 2, scripts

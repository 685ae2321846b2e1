"""The page's pure modules (web/lib/graph.js, words.js) run under node, as the frontends call them.

- What the page sends as "the workflow" keeps the workflow's top-level `models` after tab switches: the
  frontend is played as 1.58 holds a workflow (its activeState and initialState carry no `models`; a tab
  switch reloads the graph's own serialization, with keys such as `extensions`) and as a workflow saved
  without an `id` (the graph gets one while it is configured).
- A pack that failed to import inside ComfyUI (the scan's `failed_packs`, with ComfyUI's own reason)
  is worded: which pack, the reason shortened, what to do, and why its files are still listed.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from fixer.models import FailedPack, to_jsonable
from tests.conftest import ROOT
from tests.test_error_codes import NODE, needs_node, page

GRAPH_JS = ROOT / "web" / "lib" / "graph.js"

# A stand-in for ComfyUI's `app` as 1.58 has it: the graph serializes only its own keys, the workflow
# store's states never hold `models`, loading a workflow runs the extension's two hooks around configure.
FAKE_FRONTEND = """
const graph = {
  id: "00000000-0000-4000-8000-000000000000", nodes: [],
  serialize() { return { id: this.id, revision: 0, last_node_id: 1, last_link_id: 0, nodes: this.nodes, links: [],
                         floatingLinks: [], groups: [], definitions: { subgraphs: [] }, config: {}, extra: {},
                         version: 0.4 }; },
};
const workflow = { activeState: null, initialState: null };
const app = { rootGraph: graph, extensionManager: { workflow: { activeWorkflow: workflow } } };
let minted = 0;
/** app.loadGraphData as the frontends run it: beforeConfigureGraph, configure, afterConfigureGraph. */
function load(data) {
  lib.noteLoadedGraph(app, data);
  graph.id = typeof data.id === "string" ? data.id : `11111111-0000-4000-8000-00000000000${++minted}`;
  graph.nodes = data.nodes;
  lib.noteConfiguredGraph?.(app);
  // 1.58's change tracker: its states are the graph's serialization, plus `extensions`, never `models`.
  workflow.activeState = workflow.initialState = { ...graph.serialize(), extensions: {} };
}
const sent = () => (lib.currentWorkflow(app).models ?? []).map((m) => m.name);
"""


def run_frontend(steps: str) -> Any:
    script = (f"import * as lib from {json.dumps(GRAPH_JS.as_uri())};\n{FAKE_FRONTEND}\n"
              f"const out = {{}};\n{steps}\nconsole.log(JSON.stringify(out));")
    r = subprocess.run([str(NODE), "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30,
                       check=True)
    return json.loads(r.stdout)


WORKFLOW_A = {"revision": 0, "last_node_id": 1, "last_link_id": 0, "links": [], "groups": [], "config": {},
              "extra": {}, "version": 0.4,
              "nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["linked_zz.safetensors"]}],
              "models": [{"name": "linked_zz.safetensors", "directory": "checkpoints",
                          "url": "https://huggingface.co/a/b/resolve/main/linked_zz.safetensors"}]}
WORKFLOW_B = {**WORKFLOW_A, "id": "bbbbbbbb-1111-4a6b-8c7d-9e0f1a2b3c4d", "models": [],
              "nodes": [{"id": 1, "type": "LoraLoader", "widgets_values": ["b_zz.safetensors", 1, 1]}]}

SWITCH_AWAY_AND_BACK = f"""
load({json.dumps(WORKFLOW_B)});
out.inB = sent();
load(workflow.activeState = A_state);  // the tab of A again: the frontend reloads A's own serialization
out.back = sent();
out.backAgain = (load(workflow.activeState = A_state), sent());
"""


@needs_node
def test_the_workflows_models_go_with_a_rescan_after_a_tab_switch():
    """Fails on 9ea2fee: back on A, the second load's `extensions` replaced the `models` kept for A's id."""
    a = {**WORKFLOW_A, "id": "aaaaaaaa-1111-4a6b-8c7d-9e0f1a2b3c4d"}
    out = run_frontend(f"load({json.dumps(a)});\nout.first = sent();\nconst A_state = workflow.activeState;\n"
                       + SWITCH_AWAY_AND_BACK)
    assert out == {"first": ["linked_zz.safetensors"], "inB": [], "back": ["linked_zz.safetensors"],
                   "backAgain": ["linked_zz.safetensors"]}


@needs_node
def test_a_workflow_saved_without_an_id_sends_its_models_too():
    """Fails on 9ea2fee: nothing was kept for a workflow without an `id`, so no scan carried its models."""
    out = run_frontend(f"load({json.dumps(WORKFLOW_A)});\nout.first = sent();\n"
                       "const A_state = workflow.activeState;\n" + SWITCH_AWAY_AND_BACK)
    assert out == {"first": ["linked_zz.safetensors"], "inB": [], "back": ["linked_zz.safetensors"],
                   "backAgain": ["linked_zz.safetensors"]}


@needs_node
def test_a_workflow_opened_again_with_other_models_sends_the_new_ones():
    a = {**WORKFLOW_A, "id": "aaaaaaaa-1111-4a6b-8c7d-9e0f1a2b3c4d"}
    newer = {**a, "models": [{"name": "newer_zz.safetensors", "directory": "checkpoints", "url": "https://x.test/n"}]}
    out = run_frontend(f"load({json.dumps(a)});\nload({json.dumps(newer)});\nout.sent = sent();")
    assert out == {"sent": ["newer_zz.safetensors"]}


REASON = ("cannot import name '_validate_images_text_input_order' from 'transformers.processing_utils' "
          "(/home/u/ComfyUI/venv/lib/python3.12/site-packages/transformers/processing_utils.py)")


@needs_node
def test_a_pack_that_failed_to_import_is_worded_with_its_reason_and_what_to_do():
    """Fails on 9ea2fee: the page had no words for `failed_packs` (the panel never showed them)."""
    pack = to_jsonable(FailedPack("ComfyUI-HunyuanVideoWrapper", REASON, ["HyVideoModelLoader", "HyVideoVAELoader"]))
    said = page("failedPackWords", pack)
    assert said["title"] == "ComfyUI-HunyuanVideoWrapper is installed but ComfyUI could not load it"
    # ComfyUI's own reason, without the file path that says nothing to a user; the whole of it behind Details.
    assert said["reason"] == ("ComfyUI says: cannot import name '_validate_images_text_input_order' from "
                              "'transformers.processing_utils'")
    assert said["details"] == REASON
    assert "custom_nodes/ComfyUI-HunyuanVideoWrapper/requirements.txt" in said["todo"]
    assert "restart ComfyUI" in said["todo"] and "ComfyUI's log" in said["todo"]
    assert "HyVideoModelLoader, HyVideoVAELoader" in said["fromSource"]
    assert "read from the pack's source" in said["fromSource"]


@needs_node
def test_a_long_or_missing_reason_is_kept_short_or_sent_to_the_log():
    long = page("failedPackWords", to_jsonable(FailedPack("P", "No module named 'x" + "y" * 400 + "'", ["N"])))
    assert len(long["reason"]) <= len("ComfyUI says: ") + 120 and long["reason"].endswith("…")
    assert long["details"].startswith("No module named")
    unknown = page("failedPackWords", to_jsonable(FailedPack("P", None, [])))
    assert "ComfyUI's log" in unknown["reason"] and unknown["details"] is None
    assert page("failedPackWords", {"name": "", "reason": "x"}) is None

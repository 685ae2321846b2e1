"""The panel's "Present elsewhere" rows in a real ComfyUI and headless Chromium, on both frontends: the row says
where "Use this file" puts the link; a same-named file whose bytes are not the sha256 the workflow states is
refused on its row (with a Download instead) and nothing is linked; the file with the stated bytes is linked.

Screenshots at 1280x720 go to tests/e2e/artifacts/<frontend>/relink-*.png.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.e2e.comfyui_proc import ARTIFACTS
from tests.e2e.test_e2e_fix import graph_node, run_driver

pytestmark = pytest.mark.e2e

WRONG = "relink_wrong_zz.safetensors"  # in checkpoints/, other bytes than the workflow states
RIGHT = "relink_right_zz.safetensors"  # in checkpoints/, the very bytes the workflow states
STATED = b"the lora the workflow was made with\n" * 64  # RIGHT's
NOWHERE = b"the other lora the workflow was made with\n" * 64  # WRONG's, on no disk: a fix takes the workflow's link
OTHER = b"another lora that has the same name\n" * 64


def lora(node_id: int, name: str, stated: bytes) -> dict:
    node = graph_node(node_id, "LoraLoader", [name, 1.0, 1.0], inputs=[("model", "MODEL", None),
                                                                     ("clip", "CLIP", None)],
                      outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", [])])
    node["properties"]["models"] = [{"name": name, "directory": "loras", "hash_type": "sha256",
                                     "hash": hashlib.sha256(stated).hexdigest(),
                                     "url": f"https://huggingface.co/someauthor/zz/resolve/main/{name}"}]
    return node


@pytest.fixture(scope="module")
def flow(comfy) -> dict:
    (comfy.models / "checkpoints" / WRONG).write_bytes(OTHER)
    (comfy.models / "checkpoints" / RIGHT).write_bytes(STATED)
    workflow = {"id": "5e1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b", "revision": 0, "last_node_id": 2, "last_link_id": 0,
                "nodes": [lora(1, WRONG, NOWHERE), lora(2, RIGHT, STATED)], "links": [], "groups": [], "config": {},
                "extra": {}, "version": 0.4}
    scenario = {"url": comfy.url, "artifacts": str(ARTIFACTS / comfy.label), "workflow": workflow, "wrong": WRONG,
                "right": RIGHT}
    result = run_driver("relink_flow.mjs", scenario, ARTIFACTS / comfy.label, "relink-result.json", check=False)
    result["models"], result["label"] = comfy.models, comfy.label
    return result


def test_an_elsewhere_row_says_where_the_link_goes(flow):
    assert "rowsBefore" in flow, f"{flow.get('failure')}\n{flow.get('panelAtFailure')}"
    for name in (WRONG, RIGHT):
        text = flow["rowsBefore"]["wrong" if name == WRONG else "right"]
        assert f"goes to models/loras/{name}" in text.replace("\n", " ").replace("\u200b", ""), text


def test_a_same_named_file_with_other_bytes_is_refused_on_its_row_and_not_linked(flow):
    assert "failure" not in flow, f"{flow['failure']}\n{flow.get('panelAtFailure')}"
    assert flow["refusedStatus"] == 400
    row = flow["refusedRow"]
    assert "other bytes than the workflow states" in row and "Download" in row, row
    details = flow["refusedDetails"]
    assert hashlib.sha256(OTHER).hexdigest()[:12] in details and hashlib.sha256(NOWHERE).hexdigest()[:12] in details
    assert not flow["noticeAfterRefusal"], flow["noticeAfterRefusal"]  # said on the row, not twice
    assert not (flow["models"] / "loras" / WRONG).exists()
    assert flow["wrongStillListed"] == 1
    assert (ARTIFACTS / flow["label"] / "relink-01-refused.png").stat().st_size > 10_000


def test_the_file_with_the_stated_bytes_is_linked(flow):
    assert "failure" not in flow, f"{flow['failure']}\n{flow.get('panelAtFailure')}"
    assert os.path.samefile(flow["models"] / "loras" / RIGHT, flow["models"] / "checkpoints" / RIGHT)
    assert any(f"{RIGHT} now uses loras/" in n for n in flow["noticeAfterLink"]), flow["noticeAfterLink"]


def test_the_refused_rows_download_fixes_that_model_without_taking_the_local_copy(flow):
    assert "failure" not in flow, f"{flow['failure']}\n{flow.get('panelAtFailure')}"
    run = flow["downloadRun"]
    (row,) = [r for r in run["rows"] if r["name"] == WRONG]
    # The local copy of the name is refused for its bytes; the workflow's link is to a repo the fake Hub does
    # not have, and no other source has the stated sha256: not found (never the wrong file linked).
    assert row["state"] == "not_found" and row["source"] != "local", row
    assert any("sha256" in t and WRONG in t for t in row["tried"]), row["tried"]
    assert flow["downloadOfferedAfterRun"] == 0  # the run's row says it now: no second Download on the copy
    assert not (flow["models"] / "loras" / WRONG).exists()

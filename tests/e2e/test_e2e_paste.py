"""Helping by hand in a real ComfyUI and browser, on both frontends: the user pastes a link on a not-found row,
and a gated Hugging Face file is said once, with what to do, before any byte moves."""

from __future__ import annotations

import hashlib

import pytest

from tests.e2e.comfyui_proc import ARTIFACTS
from tests.e2e.conftest import serve_hf_safetensors
from tests.e2e.test_e2e_fix import LORA, graph_node, run_driver, sha256
from tests.e2e.test_e2e_panel import checkpoint, lora, workflow

pytestmark = pytest.mark.e2e

LOST = "qzx_vanished_merge_e2e.safetensors"  # what the workflow asks for: on no service, on no disk
PASTE_REPO, REAL_NAME = "comfy-fixer-fixtures/pasted-e2e", "pasted_real_file.safetensors"
# The form a user copies from the browser's address bar; the pack maps huggingface.co to HF_ENDPOINT.
PASTE_URL = f"https://huggingface.co/{PASTE_REPO}/resolve/main/{REAL_NAME}"
GATED_REPO, GATED = "comfy-fixer-fixtures/gated-e2e", "gated_only_e2e.safetensors"
GATED_URL = f"https://huggingface.co/{GATED_REPO}/resolve/main/{GATED}"


@pytest.fixture(scope="module")
def served(upstream) -> dict[str, bytes]:
    return {"pasted": serve_hf_safetensors(upstream, PASTE_REPO, REAL_NAME, "e2e pasted link"),
            "gated": serve_hf_safetensors(upstream, GATED_REPO, GATED, "e2e gated file", gated="manual")}


def test_pasted_link_on_a_not_found_row_lands_verified_and_the_prompt_queues(comfy, upstream, served):
    loader = checkpoint(1, LOST)
    loader["outputs"][0]["links"] = [1]
    preview = graph_node(2, "PreviewAny", [], inputs=[("source", "*", 1)])
    wf = workflow("a1b2c3d4-0e1f-4a2b-9c3d-4e5f6a7b8c9d", loader, preview)
    wf["links"], wf["last_link_id"] = [[1, 1, 0, 2, 0, "MODEL"]], 1
    scenario = {"case": "paste", "url": comfy.url, "artifacts": str(ARTIFACTS / comfy.label), "workflow": wf,
                "model": LOST, "link": PASTE_URL, "realName": REAL_NAME}
    result = run_driver("paste_flow.mjs", scenario, ARTIFACTS / comfy.label, "paste-result.json")

    assert result["notFoundText"] and "Paste a link" in result["notFoundText"], result["notFoundText"]
    # The file keeps its real name, in the folder the loader reads, with the bytes the Hub vouched for.
    landed = comfy.models / "checkpoints" / REAL_NAME
    assert sha256(landed) == hashlib.sha256(served["pasted"]).hexdigest()
    assert not (comfy.models / "checkpoints" / LOST).exists()
    assert not list((comfy.models / "checkpoints").glob("*.part*"))
    assert "Downloaded and verified" in result["doneText"], result["doneText"]
    # The loader's widget now names the real file, and ComfyUI accepts the prompt.
    assert result["widgetAfter"] == REAL_NAME, result["widgetAfter"]
    assert result["queueBefore"]["status"] == 400
    assert result["queueAfter"]["status"] == 200, result["queueAfter"]["body"]
    assert not [e for e in result["errors"] if "comfyfixer" in e.lower()]


def test_gated_repo_says_once_what_to_do_and_is_not_a_failure(comfy, upstream, served):
    # The Civitai LoRA is the file that downloads: Civitai wants a key for every download since 2026.
    assert comfy.post_json("/api/comfyfixer/settings", {"civitai_api_key": "civitai-e2e-key"})[0] == 200
    gated = checkpoint(1, GATED, models=[{"name": GATED, "url": GATED_URL, "directory": "checkpoints"}])
    wf = workflow("b2c3d4e5-1f2a-4b3c-8d4e-5f6a7b8c9d0e", gated, lora(2, LORA))
    scenario = {"case": "gated", "url": comfy.url, "artifacts": str(ARTIFACTS / comfy.label), "workflow": wf,
                "model": GATED, "other": LORA}
    result = run_driver("paste_flow.mjs", scenario, ARTIFACTS / comfy.label, "gated-result.json")

    # Known before downloading: one message for the model, in the review, with both things to do.
    for text in (result["reviewRowText"], result["afterRowText"]):
        assert text.count("Needs a Hugging Face token and the license accepted") == 1, text
        assert "Failed" not in text and "HF_TOKEN" not in text, text
    assert result["panelText"].count("Needs a Hugging Face token") == 1, result["panelText"]
    assert "1 file needs a login first and is left out" in result["reviewText"], result["reviewText"]
    # "Accept license" opens the repo page (not the file's download URL); "Add token" opens our settings.
    assert result["licenseHref"].endswith("/" + GATED_REPO), result["licenseHref"]
    assert result["licenseTarget"] == "_blank"
    assert result["tokenFieldShown"]
    # The run downloads the rest; the gated row is counted as a login to give, not as failed or skipped.
    summary = result["summary"]
    assert "1 downloaded and verified" in summary and "1 needs a login" in summary, summary
    assert "failed" not in summary.lower() and "skipped" not in summary and "All done" not in summary, summary
    assert result["afterRowState"] == "login"
    assert not (comfy.models / "checkpoints" / GATED).exists()
    assert (comfy.models / "loras" / LORA).is_file()
    assert not [e for e in result["errors"] if "comfyfixer" in e.lower()]

"""The pack in a real ComfyUI, driven from a real browser: load, notice, panel, relink, download, queue."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.comfyui_proc import ARTIFACTS, E2E, pack_import_line
from tests.fake_upstream import file_routes

pytestmark = pytest.mark.e2e

LORA = "fixture_tiny_lora.safetensors"  # Civitai version 9100101, payload "tiny-lora"
# HF comfy-fixer-fixtures/tiny-model (bytes: conftest.serve_valid_hf_checkpoint)
CHECKPOINT = "fixture_hf_model.safetensors"
VAE_ELSEWHERE = "fixture_vae.safetensors"  # seeded under checkpoints/: wrong folder
LORA_ELSEWHERE = "old/style_lora.safetensors"  # seeded as loras/style_lora.safetensors
LOGIN_CHECKPOINT = "fixture_tiny_checkpoint.safetensors"  # Civitai 9100102: 401 without a key
NEAR_MISS_LORA = "fixture_tiny_lora_v2.safetensors"  # no exact match: "Fixture Tiny LoRA" is only a candidate
TOKEN = "hf_e2eWriteOnlyToken123"
MISSING_NODE = "IPAdapterAdvanced"  # ComfyUI_IPAdapter_plus, known to ComfyUI-Manager's map
# Per-connection bytes/s: the 1.1-1.2 MB fixtures take ~30 s, long enough to reload and watch.
RATE = 40_000


def graph_node(node_id: int, node_type: str, widgets: list, *, inputs=(), outputs=(), mode: int = 0) -> dict:
    return {"id": node_id, "type": node_type, "pos": [100 + 320 * ((node_id - 1) % 3),
                                                      100 + 260 * ((node_id - 1) // 3)],
            "size": [300, 120], "flags": {}, "order": node_id, "mode": mode, "properties": {},
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
            "outputs": [{"name": n, "type": t, "links": links, "slot_index": i}
                        for i, (n, t, links) in enumerate(outputs)],
            "widgets_values": widgets}


def loader_workflow() -> dict:
    """Checkpoint (HF) -> LoRA (Civitai) -> Preview, plus two relink cases and a muted unknown node."""
    nodes = [
        graph_node(1, "CheckpointLoaderSimple", [CHECKPOINT],
                   outputs=[("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [2]), ("VAE", "VAE", [])]),
        graph_node(2, "LoraLoader", [LORA, 1.0, 1.0], inputs=[("model", "MODEL", 1), ("clip", "CLIP", 2)],
                   outputs=[("MODEL", "MODEL", [3]), ("CLIP", "CLIP", [])]),
        graph_node(3, "PreviewAny", [], inputs=[("source", "*", 3)]),
        graph_node(4, "VAELoader", [VAE_ELSEWHERE], outputs=[("VAE", "VAE", [])]),
        graph_node(5, "LoraLoader", [LORA_ELSEWHERE, 1.0, 1.0], inputs=[("model", "MODEL", None), ("clip", "CLIP",
                                                                                                   None)],
                   outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", [])]),
        # Muted, so the prompt can queue once the models are fixed; still reported as missing.
        graph_node(6, MISSING_NODE, [], mode=2),
    ]
    links = [[1, 1, 0, 2, 0, "MODEL"], [2, 1, 1, 2, 1, "CLIP"], [3, 2, 0, 3, 0, "MODEL"]]
    return {"id": "0f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e", "revision": 0, "last_node_id": 6, "last_link_id": 3,
            "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def run_driver(script: str, scenario: dict, out: Path, result_name: str, check: bool = True) -> dict:
    """Run a flow script; with `check`, fail on the flow's own failure (else the caller reads it)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{Path(script).stem}-scenario.json"
    path.write_text(json.dumps(scenario))
    run = subprocess.run(["node", str(E2E / script), str(path)], cwd=E2E, capture_output=True, text=True,
                         timeout=900)
    result = json.loads((out / result_name).read_text())
    if check:
        assert "failure" not in result, f"{result['failure']}\npanel: {result.get('panelAtFailure')}\n{run.stdout}"
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pack_imports_and_serves_its_page_script(comfy):
    log = comfy.log()
    line = pack_import_line(log)
    assert line is not None, "ComfyFixerSmart is missing from 'Import times for custom nodes'"
    assert "IMPORT FAILED" not in line
    assert "Cannot import" not in "\n".join(x for x in log.splitlines() if "ComfyFixerSmart" in x)
    print(f"\n[{comfy.label}] ComfyUI ready in {comfy.start_seconds} s; {line}")
    assert "/extensions/ComfyFixerSmart/comfyfixer.js" in comfy.get_json("/api/extensions")
    assert comfy.get_json("/api/comfyfixer/status")["phase"] in ("idle", "complete")


def test_fix_missing_models_from_the_browser(comfy, upstream):
    for key in (file_routes.hf_key("comfy-fixer-fixtures/tiny-model", CHECKPOINT), file_routes.civitai_key(9100101)):
        file_routes.faults(upstream, key).rate = RATE
    # One connection per file so the rate above is the speed the panel shows. Civitai wants a key for every
    # download since 2026: the LoRA would otherwise wait for it in the review (the login test below starts
    # without one, so it is forgotten at the end).
    assert comfy.post_json("/api/comfyfixer/settings", {"connections_per_file": 1,
                                                         "civitai_api_key": "civitai-e2e-key"})[0] == 200
    try:
        fix_from_the_browser(comfy, upstream)
    finally:
        assert comfy.post_json("/api/comfyfixer/settings", {"civitai_api_key": ""})[0] == 200


def fix_from_the_browser(comfy, upstream) -> None:
    out = ARTIFACTS / comfy.label
    scenario = {"url": comfy.url, "artifacts": str(out), "workflow": loader_workflow(), "lora": LORA,
                "checkpoint": CHECKPOINT, "notice": "2 models missing", "relinkWrongFolder": VAE_ELSEWHERE,
                "relinkSameFolder": LORA_ELSEWHERE, "token": TOKEN}
    result = run_driver("fix_flow.mjs", scenario, out, "result.json")

    # The extension registered its command, button, panel and settings.
    assert {"ComfyFixerSmart.FixMissingModels", "ComfyFixerSmart.ShowPanel"} <= set(result["registration"]["commands"])
    assert result["registration"]["sidebarTab"] and result["buttonVisible"]
    assert "ComfyFixerSmart.Tokens.HuggingFace" in result["registration"]["settings"]
    if result["theirCheck"]:  # 1.58 shows its own notice: ours sits in their Issues list, no second toast
        assert result["ourToasts"] == 0 and not result["noticeText"]
        assert result["complementShown"], result["dialogsOnLoad"]
    else:
        assert result["noticeText"].startswith("2 models missing")

    # Before: ComfyUI refused the prompt for the two loaders.
    assert result["queueBefore"]["status"] == 400
    assert {"1", "2"} <= set(result["queueBefore"]["nodeErrors"])

    # The panel named folders, users, and the node pack.
    before = result["panelBefore"]
    for text in (LORA, CHECKPOINT, "loras", "checkpoints", "LoraLoader #2", "ComfyUI_IPAdapter_plus", "Use this file"):
        assert text in before, f"{text!r} not in the panel:\n{before}"

    # Relinks: the wrong-folder file was linked into vae/, the widget moved to the local relpath.
    assert (comfy.models / "vae" / VAE_ELSEWHERE).is_file()
    widgets = {(str(n["id"]), w["name"]): w["value"] for n in result["widgetsAfterRelink"] for w in n["widgets"]}
    assert widgets[("4", "vae_name")] == VAE_ELSEWHERE
    assert widgets[("5", "lora_name")] == "style_lora.safetensors"

    # Review: nothing moved before the click; the totals and each file's destination were shown.
    assert all(state == "review" and not done for _, state,
               done in result["filesDuringReview"]), result["filesDuringReview"]
    assert result["reviewText"].startswith("Found a source") and "Download 2 models · " in result["reviewText"]
    assert "models/loras/" + LORA in result["panelReview"]
    assert "models/checkpoints/" + CHECKPOINT in result["panelReview"]

    # Run pressed again mid-download (after the reload): the loaders still missing a file are outlined red.
    # (1.27 draws the outline from app.lastNodeErrors; 1.58 also from node.has_errors.)
    assert result["queueDuring"]["status"] == 400 and {"1", "2"} <= set(result["queueDuring"]["nodeErrors"])
    # During: per-file progress, and a reload mid-run shows the run again.
    assert result["runVisibleAfterReload"], result["statusAfterReload"]
    assert "Downloading" in result["panelDuring"] and "/s" in result["panelDuring"], result["panelDuring"]

    # After: verified files in the right folders, listed by the loaders, and the prompt validates.
    assert sha256(comfy.models / "loras" / LORA) == hashlib.sha256(upstream.payload("tiny-lora")).hexdigest()
    want = hashlib.sha256(upstream.state["e2e_hf_checkpoint"]).hexdigest()
    assert sha256(comfy.models / "checkpoints" / CHECKPOINT) == want
    assert "2 downloaded and verified" in (result["summary"] or "")
    options = {(str(n["id"]), w["name"]): w["options"] for n in result["widgetsAfterFix"] for w in n["widgets"]}
    assert LORA in options[("2", "lora_name")] and CHECKPOINT in options[("1", "ckpt_name")]
    assert not {"1", "2"} & set(result["nodeErrorsAfterFix"]), "the loaders still carry the queue's errors"
    assert not [n["id"] for n in result["widgetsAfterFix"] if n["hasErrors"] and str(n["id"]) in ("1", "2")], \
        "the loaders are still outlined red"
    assert not {"1", "2"} & set(result["drawnRedAfterFix"]), "the canvas still shows the loaders outlined red"
    assert LORA in comfy.get_json("/api/object_info/LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert result["queueAfter"]["status"] == 200, result["queueAfter"]["body"]
    assert not result["queueAfter"]["body"].get("node_errors")

    # The portable copy carries a download link for each model the run resolved.
    portable = json.loads((out / "portable.json").read_text())
    assert {LORA, CHECKPOINT} <= {m["name"] for m in portable.get("models", [])}

    # The token reached the server and nowhere else: not the field, not ComfyUI's settings file.
    assert result["tokenFieldAfterSave"] == ""
    assert comfy.get_json("/api/comfyfixer/settings")["values"]["hf_token_set"] is True
    settings_files = list((comfy.base / "user").rglob("comfy.settings.json"))
    assert settings_files and all(TOKEN not in p.read_text() for p in settings_files)

    # Our code threw nothing in the page.
    assert not [e for e in result["errors"] if "ComfyFixerSmart" in e or "comfyfixer" in e]
    for shot in ("02-panel-before", "03-panel-during", "05-panel-after"):
        assert (out / f"{shot}.png").stat().st_size > 10_000


def one_node_workflow(uid: str, node: dict) -> dict:
    return {"id": uid, "revision": 0, "last_node_id": 1, "last_link_id": 0, "nodes": [node], "links": [],
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def test_login_required_download_fails_clearly_then_retries_after_the_key_is_saved(comfy, upstream):
    file_routes.faults(upstream, file_routes.civitai_key(9100102)).rate = RATE
    workflow = one_node_workflow("7a0d2c4e-1f3b-4d5a-9c6e-2b8f0a1d3e5c", graph_node(
        1, "CheckpointLoaderSimple", [LOGIN_CHECKPOINT],
        outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", []), ("VAE", "VAE", [])]))
    scenario = {"url": comfy.url, "artifacts": str(ARTIFACTS / comfy.label), "workflow": workflow,
                "model": LOGIN_CHECKPOINT, "token": "civitai-e2e-key"}
    result = run_driver("retry_flow.mjs", scenario, ARTIFACTS / comfy.label, "retry-result.json")

    # One message per model, clickable, not counted as a failure.
    assert result["failedText"].count("Needs a Civitai API key") == 1, result["failedText"]
    assert "Failed" not in result["failedText"] and "Add key" in result["failedText"]
    assert "failed" not in (result["summaryWithoutKey"] or "")
    cancelled = result["cancelledText"]
    assert "Cancelled" in cancelled and ("Retry" in cancelled or "Resume" in cancelled)
    assert "Downloaded and verified" in result["doneText"]
    assert sha256(comfy.models / "checkpoints" / LOGIN_CHECKPOINT) == \
        hashlib.sha256(upstream.payload("tiny-checkpoint-auth")).hexdigest()
    assert not [e for e in result["errors"] if "comfyfixer" in e.lower()]


def test_keybinding_run_stops_at_a_low_confidence_match_and_downloads_the_pick(comfy, upstream):
    workflow = one_node_workflow("3c9e1a7b-5d2f-4e8a-b6c0-7f1d2e3a4b5c", graph_node(
        1, "LoraLoader", [NEAR_MISS_LORA, 1.0, 1.0], inputs=[("model", "MODEL", None), ("clip", "CLIP", None)],
        outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", [])]))
    scenario = {"url": comfy.url, "artifacts": str(ARTIFACTS / comfy.label), "workflow": workflow,
                "model": NEAR_MISS_LORA}
    result = run_driver("choice_flow.mjs", scenario, ARTIFACTS / comfy.label, "choice-result.json")

    assert result["newNoticesWithCheckOff"] == 0 and result["storedCheckOnLoad"] is False
    assert "Pick a source" in result["choiceText"] and "Fixture Tiny LoRA" in result["choiceText"]
    assert "Downloaded and verified" in result["doneText"] or "Already on this disk" in result["doneText"]
    # Saved under the name the workflow asks for, with the picked file's bytes.
    assert sha256(comfy.models / "loras" / NEAR_MISS_LORA) == hashlib.sha256(upstream.payload("tiny-lora")).hexdigest()
    assert not [e for e in result["errors"] if "comfyfixer" in e.lower()]

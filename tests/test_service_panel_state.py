"""The panel's rows as a user meets them over several clicks: each action changes only its own
row; settings changed during the review count; exact review totals; fixes of other workflows wait their
turn; files only an uninstalled pack can load are not offered; a partial file is said before a run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fixer.app.review import make_plan
from fixer.app.service import FixerService, NotQueued
from fixer.app.settings import parse_patch
from fixer.host.host import StandaloneHost
from fixer.transfer.resume import Sidecar, part_path, save
from tests.conftest import make_workflow, node

LORA = "fixture_tiny_lora.safetensors"  # Civitai version 9100101
NEAR_MISS = "fixture_tiny_lora_v2.safetensors"  # only a candidate: "pick a source"
NOWHERE = "nowhere_to_be_found_xyz.safetensors"
LOGIN_CHECKPOINT = "fixture_tiny_checkpoint.safetensors"  # Civitai 9100102: 401 without a key


def service(root: Path, state: Path) -> FixerService:
    return FixerService(StandaloneHost.from_root(root), state, comfyui_root=root)


async def wait_for(svc: FixerService, check, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = svc.status()
        if check(status):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"status never matched: {svc.status()}")


def rows(status: dict) -> dict[str, dict]:
    return {r["name"]: r for r in status["data"].get("models", [])}


async def test_a_pick_changes_only_its_row_and_keeps_what_was_found_for_the_others(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    wf = make_workflow([node(1, "LoraLoader", [LORA, 1, 1]), node(2, "LoraLoader", [NEAR_MISS, 1, 1]),
                        node(3, "LoraLoader", [NOWHERE, 1, 1])])
    await svc.start_fix(wf, "three")
    await svc._task
    before = rows(svc.status())
    assert before[LORA]["state"] == "done" and before[NOWHERE]["state"] == "not_found"
    assert before[NEAR_MISS]["state"] == "needs_choice" and before[NEAR_MISS]["candidates"]

    picked = before[NEAR_MISS]["candidates"][0]["url"]
    await svc.retry(NEAR_MISS, picked)
    await svc._task
    after = rows(svc.status())
    assert after[NEAR_MISS]["state"] == "done" and not after[NEAR_MISS].get("carried")
    # The others are as they were (carried from the earlier run), not "Missing" again.
    assert after[LORA]["state"] == "done" and after[LORA]["carried"]
    assert after[NOWHERE]["state"] == "not_found" and after[NOWHERE]["reason"] == before[NOWHERE]["reason"]
    assert list(after) == list(before)  # in their first order


async def test_a_token_saved_during_the_review_is_used_by_the_approved_download(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    wf = make_workflow([node(1, "CheckpointLoaderSimple", [LOGIN_CHECKPOINT])])
    await svc.start_fix(wf, "login", review=True)
    await wait_for(svc, lambda s: s["phase"] == "review")
    svc.update_settings(parse_patch({"civitai_api_key": "key-added-while-reading-the-review"}))
    svc.approve()
    await svc._task
    row = rows(svc.status())[LOGIN_CHECKPOINT]
    assert row["state"] == "done", row.get("error")
    assert (comfy_root / "models" / "checkpoints" / LOGIN_CHECKPOINT).exists()


async def test_the_review_asks_the_source_the_size_it_did_not_say(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    # A link in the workflow's models[] carries no size: the review asks the server for it.
    url = f"{upstream.base}/api/download/models/9100101"
    wf = make_workflow([node(1, "LoraLoader", ["linked_lora.safetensors", 1, 1])],
                       models=[{"name": "linked_lora.safetensors", "url": url, "directory": "loras"}])
    await svc.start_fix(wf, "linked", review=True)
    status = await wait_for(svc, lambda s: s["phase"] == "review" and s["data"].get("plan", {}).get("sizing") == 0
                            and s["data"]["plan"]["unknown_sizes"] == 0, timeout=30)
    plan = status["data"]["plan"]
    assert plan["total_bytes"] == len(upstream.payload("tiny-lora")) > 0
    assert plan["folders"] == [{"folder": "loras", "count": 1, "bytes": plan["total_bytes"], "unknown_sizes": 0,
                                "into": "models/loras/", "free_bytes": plan["free_bytes"]}]
    svc.cancel()
    await svc._task


def test_the_plan_gives_totals_and_destination_per_folder_and_says_unknown_sizes(tmp_path):
    roots = {f: tmp_path / "models" / f for f in ("checkpoints", "loras", "vae")}
    plan = make_plan([("a.safetensors", "checkpoints", 100), ("b.safetensors", "loras", 20),
                      ("c.safetensors", "loras", None), ("d.safetensors", "vae", 5)], lambda f: str(roots[f]))
    folders = {g.folder: g for g in plan.doc(tmp_path).folders}
    assert folders["loras"].count == 2 and folders["loras"].bytes == 20 and folders["loras"].unknown_sizes == 1
    assert folders["checkpoints"].into == "models/checkpoints/" and folders["vae"].into == "models/vae/"
    assert "+ 1 of unknown size" in plan.headline(tmp_path)
    unknown = make_plan([("x.safetensors", "loras", None)], lambda f: str(roots[f]))
    assert unknown.headline(tmp_path).startswith("Download 1 model, 1 of unknown size")


async def test_a_fix_pressed_for_another_workflow_waits_and_starts_by_itself(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    await svc.start_fix(make_workflow([node(1, "LoraLoader", [LORA, 1, 1])]), "workflow A", review=True)
    await wait_for(svc, lambda s: s["phase"] == "review")
    answer = await svc.start_fix(make_workflow([node(1, "LoraLoader", [NOWHERE, 1, 1])]), "workflow B")
    assert answer["queued"] == ["workflow B"] and answer["data"]["workflow"] == "workflow A"

    svc.cancel()
    status = await wait_for(svc, lambda s: s["data"].get("workflow") == "workflow B" and s["data"].get("summary"))
    assert status["queued"] == []
    assert rows(status)[NOWHERE]["state"] == "not_found"


async def test_a_queued_fix_taken_off_the_queue_never_starts(comfy_root, tmp_path, upstream):
    """Fails on 9ea2fee (no way to take a queued fix off the queue): B is unqueued while A waits for review."""
    svc = service(comfy_root, tmp_path / "state")
    await svc.start_fix(make_workflow([node(1, "LoraLoader", [LORA, 1, 1])]), "workflow A", review=True)
    await wait_for(svc, lambda s: s["phase"] == "review")
    await svc.start_fix(make_workflow([node(1, "LoraLoader", [NOWHERE, 1, 1])]), "workflow B")
    await svc.start_fix(make_workflow([node(1, "LoraLoader", [NEAR_MISS, 1, 1])]), "workflow C")
    assert svc.status()["queued"] == ["workflow B", "workflow C"]
    sent: list[dict] = []
    svc.on_event(lambda name, payload: sent.append(payload))
    answer = svc.unqueue("workflow B")
    assert answer["queued"] == ["workflow C"] and sent[-1]["queued"] == ["workflow C"]  # the page hears it at once
    with pytest.raises(NotQueued) as refused:
        svc.unqueue("workflow B")  # twice, or a fix that has started: refused with its code
    assert refused.value.code == "not_queued" and "workflow B" in str(refused.value)

    svc.cancel()
    status = await wait_for(svc, lambda s: s["data"].get("workflow") == "workflow C" and s["data"].get("summary"))
    await svc._task
    await asyncio.sleep(0.1)
    assert svc.status()["data"]["workflow"] == "workflow C" and svc.status()["queued"] == []
    assert NOWHERE not in rows(status)  # B never ran
    with pytest.raises(NotQueued):
        svc.unqueue("workflow C")  # it ran: nothing to take off


async def test_a_queued_fix_that_cannot_start_says_so(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    await svc.start_fix(make_workflow([node(1, "LoraLoader", [LORA, 1, 1])]), "workflow A", review=True)
    await wait_for(svc, lambda s: s["phase"] == "review")
    await svc.start_fix({"nodes": "not a list"}, "workflow B")
    svc.cancel()
    status = await wait_for(svc, lambda s: any("workflow B" in e["error"] for e in s["errors"]))
    error = next(e for e in status["errors"] if "workflow B" in e["error"])
    assert "did not start" in error["error"] and status["queued"] == []


async def test_files_only_an_uninstalled_pack_can_load_are_grouped_under_it_not_counted(comfy_root, tmp_path,
                                                                                       host_for, object_info):
    svc = FixerService(host_for(comfy_root, object_info), tmp_path / "state", comfyui_root=comfy_root)
    wf = make_workflow([node(1, "IPAdapterModelLoader", ["ip-adapter_sd15.safetensors"]),
                        node(2, "LoraLoader", [LORA, 1, 1])])
    answer = await svc.scan(wf, "packs")
    models = {m["filename"]: m for m in answer["models"]}
    waiting = models["ip-adapter_sd15.safetensors"]
    assert waiting["needs_pack"] and not waiting.get("dest")
    assert models[LORA]["needs_pack"] is None
    assert answer["summary"]["missing"] == 1 and answer["summary"]["for_missing_packs"] == 1


async def test_the_scan_says_how_much_of_a_missing_file_a_stopped_download_left(comfy_root, tmp_path):
    svc = service(comfy_root, tmp_path / "state")
    dest = comfy_root / "models" / "loras" / LORA
    part = part_path(dest)
    part.write_bytes(b"\0" * 4096)
    save(part, Sidecar(url="https://civitai.com/api/download/models/9100101", validator="v", total=10_000,
                       ranges=[(0, 3000)]))
    answer = await svc.scan(make_workflow([node(1, "LoraLoader", [LORA, 1, 1])]), "partial")
    model = next(m for m in answer["models"] if m["filename"] == LORA)
    assert model["partial"] == {"bytes": 3000, "total": 10_000}


async def test_rows_of_a_workflow_survive_another_workflows_run_and_a_pick_there(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    wf_a = make_workflow([node(1, "LoraLoader", [NEAR_MISS, 1, 1]), node(2, "LoraLoader", [NOWHERE, 1, 1])])
    await svc.start_fix(wf_a, "A")
    await svc._task
    picked = rows(svc.status())[NEAR_MISS]["candidates"][0]["url"]
    await svc.start_fix(make_workflow([node(1, "LoraLoader", [LORA, 1, 1])]), "B")
    await svc._task

    # A's scan carries what A's run found, while B's run is the one in the status.
    scan = await svc.scan(wf_a, "A")
    kept = {r["name"]: r for r in scan["rows"]}
    assert kept[NOWHERE]["state"] == "not_found" and kept[NEAR_MISS]["state"] == "needs_choice"
    assert all(r["carried"] for r in scan["rows"])

    # A pick on A's row after B's run restarts A's workflow, not B's, with A's other rows as they were.
    await svc.retry(NEAR_MISS, picked, "A")
    await svc._task
    after = rows(svc.status())
    assert svc.status()["data"]["workflow"] == "A"
    assert after[NEAR_MISS]["state"] == "done" and after[NOWHERE]["state"] == "not_found"
    assert LORA not in after


async def test_a_workflows_scan_says_how_its_last_run_ended_after_another_workflows_run(comfy_root, tmp_path,
                                                                                          upstream):
    """Fails on 0b301be (no `last_run` in the scan): B's fix, queued behind A's, starts the moment A's run ends
    and takes the status; A's panel then had nothing to say how A's run went (the e2e panel flow saw A's
    summary only when it looked in the moment between the two)."""
    svc = service(comfy_root, tmp_path / "state")
    wf_a = make_workflow([node(1, "LoraLoader", [LORA, 1, 1]), node(2, "LoraLoader", [NOWHERE, 1, 1])])
    await svc.start_fix(wf_a, "A", review=True)
    await wait_for(svc, lambda s: s["phase"] == "review")
    await svc.start_fix(make_workflow([node(1, "LoraLoader", [NEAR_MISS, 1, 1])]), "B")
    svc.cancel()
    await wait_for(svc, lambda s: s["data"].get("workflow") == "B" and s["data"].get("summary"))

    ended = (await svc.scan(wf_a, "A"))["last_run"]
    assert ended is not None and ended["cancelled"] + ended["not_found"] == 2 and ended["done"] == 0
    assert (await svc.scan(make_workflow([node(1, "LoraLoader", [LORA, 1, 1])]), "never fixed"))["last_run"] is None
    # A's next run ending replaces what is said of it.
    await svc.start_fix(wf_a, "A")
    await svc._task
    assert (await svc.scan(wf_a, "A"))["last_run"]["done"] == 1

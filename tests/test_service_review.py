"""The panel's side of a fix: review before download, runs that belong to their workflow, where each
file goes, partial files, and the download scripts kept inside ComfyUI."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from fixer.app.outputs import prune_scripts
from fixer.app.review import make_plan
from fixer.app.service import FixerService, RunBusy
from fixer.errors import FixerError
from fixer.host.host import StandaloneHost
from tests.conftest import make_workflow, node
from tests.fake_upstream import file_routes

LORA = "fixture_tiny_lora.safetensors"  # Civitai version 9100101, payload "tiny-lora"


def lora_workflow(name: str = LORA) -> dict:
    return make_workflow([node(1, "LoraLoader", [name, 1.0, 1.0])])


def service(root: Path, state: Path) -> FixerService:
    return FixerService(StandaloneHost.from_root(root), state, comfyui_root=root)


async def wait_for(svc: FixerService, check, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = svc.status()
        if check(status):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"status never matched: {svc.status()}")


def row(status: dict, name: str = LORA) -> dict:
    return next(r for r in status["data"]["models"] if r["name"] == name)


async def test_review_holds_the_download_until_approved_and_shows_the_plan(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    await svc.start_fix(lora_workflow(), "portrait", review=True)
    status = await wait_for(svc, lambda s: s["phase"] == "review")

    assert row(status)["state"] == "review"
    assert not (comfy_root / "models" / "loras" / LORA).exists()
    plan = status["data"]["plan"]
    assert plan["count"] == 1 and plan["total_bytes"] == row(status)["size"] > 0
    assert plan["files"][0]["path"] == str(Path(os.path.realpath(comfy_root / "models" / "loras")) / LORA)
    assert plan["headline"].startswith("Download 1 model, ") and "into models/loras/" in plan["headline"]
    assert plan["free_bytes"] > 0

    svc.approve()
    await svc._task
    assert row(svc.status())["state"] == "done"
    assert (comfy_root / "models" / "loras" / LORA).read_bytes() == upstream.payload("tiny-lora")


async def test_approving_some_rows_skips_the_others(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    wf = make_workflow([node(1, "LoraLoader", [LORA, 1.0, 1.0]),
                        node(2, "CheckpointLoaderSimple", ["fixture_hf_model.safetensors"])])
    await svc.start_fix(wf, "two", review=True)
    await wait_for(svc, lambda s: s["phase"] == "review" and all(
        r["state"] in ("review", "not_found", "needs_choice") for r in s["data"]["models"]))
    svc.approve([LORA])
    await svc._task
    states = {r["name"]: r["state"] for r in svc.status()["data"]["models"]}
    assert states[LORA] == "done"
    assert states.get("fixture_hf_model.safetensors") in ("skipped", "not_found", "needs_choice")
    assert not (comfy_root / "models" / "checkpoints" / "fixture_hf_model.safetensors").exists()


async def test_approve_without_a_held_run_says_what_to_do(comfy_root, tmp_path):
    svc = service(comfy_root, tmp_path / "state")
    with pytest.raises(FixerError, match="press Fix"):
        svc.approve()


async def test_a_busy_run_names_the_workflow_it_belongs_to(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    await svc.start_fix(lora_workflow(), "workflow A", review=True)
    with pytest.raises(RunBusy, match="A fix for workflow A is already running") as err:
        await svc.start_fix(lora_workflow(), "workflow A")
    assert err.value.workflow == "workflow A"
    assert svc.status()["data"]["workflow"] == "workflow A"
    svc.cancel()
    await svc._task


async def test_the_scan_answer_names_the_real_destination_of_each_missing_file(tmp_path):
    from tests.conftest import make_comfy_root

    root = make_comfy_root(tmp_path)
    (root / "models" / "unet").mkdir()
    host = StandaloneHost.from_root(root)
    svc = FixerService(host, tmp_path / "state", comfyui_root=root)
    wf = make_workflow([node(1, "UNETLoader", ["flux_dev.safetensors", "default"])])
    answer = await svc.scan(wf, "flux")
    model = next(m for m in answer["models"] if m["filename"] == "flux_dev.safetensors")
    assert model["expected_type"] == "diffusion_models"
    first_root = host.folders()["diffusion_models"][0]
    assert model["dest"] == str(Path(os.path.realpath(first_root)) / "flux_dev.safetensors")


async def test_a_cancelled_download_keeps_its_bytes_until_discarded(comfy_root, tmp_path, upstream):
    file_routes.faults(upstream, file_routes.civitai_key(9100101)).rate = 20_000
    svc = service(comfy_root, tmp_path / "state")
    await svc.start_fix(lora_workflow(), "slow")
    await wait_for(svc, lambda s: s["data"].get("models") and row(s).get("bytes_done", 0) > 0)
    svc.cancel(LORA)
    await svc._task
    cancelled = row(svc.status())
    assert cancelled["state"] == "cancelled" and cancelled["bytes_done"] > 0
    part = Path(svc._run.transfers[LORA].part)
    assert part.exists()

    after = row(svc.discard_partial(LORA))
    assert not part.exists() and after["bytes_done"] == 0
    with pytest.raises(FixerError, match="nothing to discard"):
        svc.discard_partial("other.safetensors")


def test_scripts_of_earlier_runs_are_pruned_inside_comfyui(tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    old, new, other = out / "download_001_a.sh", out / "download_002_b.sh", out / "notes.sh"
    for p in (old, new, other):
        p.write_text("#!/bin/sh\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    assert prune_scripts(out, time.time() - 60) == 1
    assert not old.exists() and new.exists() and other.exists()


def test_plan_totals_count_unknown_sizes_and_name_the_common_folder(tmp_path):
    roots = {"loras": tmp_path / "models" / "loras", "vae": tmp_path / "models" / "vae"}
    plan = make_plan([("a.safetensors", "loras", 2_000_000_000), ("b.safetensors", "vae", None)],
                     lambda f: str(roots[f]))
    assert plan.total_bytes == 2_000_000_000 and plan.unknown_sizes == 1
    assert plan.common_folder(tmp_path) == "models/"
    assert plan.headline(tmp_path).startswith("Download 2 models, 2.0 GB + 1 of unknown size, into models/ (free: ")


def test_plan_names_a_folder_comfyui_does_not_have(tmp_path):
    def root_for(folder):
        raise FixerError(f"ComfyUI has no model folder '{folder}'")

    plan = make_plan([("x.safetensors", "xlabs_loras", 10)], root_for)
    assert plan.files[0].path is None and "xlabs_loras" in plan.files[0].problem
    assert plan.headline() == "Download 1 model, 10 B"


async def test_a_pasted_link_is_downloaded_under_the_files_real_name(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    events = []
    svc.on_event(lambda name, payload: events.append((name, payload)))
    wf = lora_workflow("my_own_name.pth")
    await svc.paste_link(wf, "mine", "my_own_name.pth", "civitai:9100101")
    await svc._task
    done = row(svc.status(), "my_own_name.pth")
    assert done["state"] == "done" and done["source"] == "user"
    assert (comfy_root / "models" / "loras" / LORA).read_bytes() == upstream.payload("tiny-lora")
    assert not (comfy_root / "models" / "loras" / "my_own_name.pth").exists()
    files = next(p for n, p in events if n == "comfyfixer.done")["files"]
    assert files == [{"folder": "loras", "name": "my_own_name.pth", "saved_as": LORA}]


async def test_a_pasted_link_of_an_unknown_form_is_refused_with_the_forms_accepted(comfy_root, tmp_path):
    svc = service(comfy_root, tmp_path / "state")
    with pytest.raises(FixerError):
        await svc.paste_link(lora_workflow(), "mine", LORA, "ftp://example.invalid/x.safetensors")
    assert svc._task is None


async def test_the_panels_scan_never_takes_the_download_nodes_source_for_a_model(comfy_root, tmp_path):
    (comfy_root / "models" / "checkpoints" / "fixture_hf_model.safetensors").write_bytes(b"x")
    svc = service(comfy_root, tmp_path / "state")
    spec = "hf:comfy-fixer-fixtures/tiny-model/fixture_hf_model.safetensors"
    wf = make_workflow([node(1, "ComfyFixerDownloadModel", [spec, "checkpoints", "", ""]), node(2, "LoraLoader",
                                                                                                [LORA, 1, 1])])
    answer = await svc.scan(wf, "with a download node")
    assert [m["filename"] for m in answer["models"]] == [LORA]


async def test_a_not_found_row_says_why_in_one_sentence_with_the_searches_as_details(comfy_root, tmp_path, upstream):
    svc = service(comfy_root, tmp_path / "state")
    await svc.start_fix(lora_workflow("nowhere_to_be_found_xyz.safetensors"), "lost")
    await svc._task
    lost = row(svc.status(), "nowhere_to_be_found_xyz.safetensors")
    assert lost["state"] == "not_found"
    assert lost["reason"].startswith("Not found") and ";" not in lost["reason"]
    assert len(lost["tried"]) > 1

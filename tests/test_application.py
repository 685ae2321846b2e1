"""One application under the CLI, the service and the scan worker: one rule for what a fix fetches, and the
run's output files written by subscribers to its events (the run itself writes none)."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fixer.app.application import Application, models_to_fetch
from fixer.app.run import FixRun
from fixer.app.service import FixerService
from fixer.config import Config
from fixer.events import EventBus
from fixer.host.host import StandaloneHost
from fixer.models import Candidate, ModelRef
from fixer.read.scan import scan_workflow_data
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json

MINE = "mine_style.safetensors"  # on disk, but in checkpoints/: the LoRA loader does not see it there
LOST = "nowhere_to_be_found_q7.safetensors"


def workflow() -> dict:
    return make_workflow([node(1, "LoraLoader", [MINE, 1.0, 1.0]), node(2, "LoraLoader", [LOST, 1.0, 1.0])])


def root_with_copy_elsewhere(tmp_path: Path) -> Path:
    return make_comfy_root(tmp_path, {f"models/checkpoints/{MINE}": "my own style lora"})


def test_a_fix_fetches_the_missing_and_the_models_on_disk_in_another_folder_never_refused_ones(tmp_path):
    root = root_with_copy_elsewhere(tmp_path)
    wf = make_workflow([node(1, "LoraLoader", [MINE, 1.0, 1.0]), node(2, "LoraLoader", [LOST, 1.0, 1.0]),
                        node(3, "LoraLoader", ["../../etc/evil.safetensors", 1.0, 1.0])])
    report = scan_workflow_data(wf, "wf.json", StandaloneHost.from_root(root))
    assert {s.ref.name: s.state for s in report.models}[MINE] == "elsewhere"
    assert "unsafe" in {s.state for s in report.models}
    assert sorted(r.name for r in models_to_fetch(report)) == sorted([MINE, LOST])
    assert [r.name for r in models_to_fetch(report, [MINE])] == [MINE]  # the user's pick narrows it


async def test_the_panels_fix_links_a_model_it_has_in_another_folder_as_the_cli_does(tmp_path, upstream):
    """Before, the service fetched only "missing" models: Fix left a LoRA sitting in checkpoints/ unusable
    while `comfy-fixer --auto` linked it into loras/."""
    root = root_with_copy_elsewhere(tmp_path)
    svc = FixerService(StandaloneHost.from_root(root), tmp_path / "state", comfyui_root=root)
    await svc.start_fix(workflow(), "wf.json")
    await svc._task
    rows = {r["name"]: r for r in svc.status()["data"]["models"]}
    assert rows[MINE]["state"] == "done" and rows[MINE]["origin"] == "local"
    linked = root / "models" / "loras" / MINE
    assert linked.read_text() == "my own style lora"
    assert os.path.samefile(linked, root / "models" / "checkpoints" / MINE)  # a link, not a second copy
    assert rows[LOST]["state"] == "not_found"


def test_the_cli_and_the_service_fetch_the_same_models(tmp_path, upstream):
    root = root_with_copy_elsewhere(tmp_path)
    wf = write_json(tmp_path / "wf.json", workflow())
    r = subprocess.run([sys.executable, "-m", "fixer", "--auto", "--yes", "--json", "--comfyui-root", str(root),
                        "--workflow", str(wf), "--state-dir", str(tmp_path / "cli")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    cli_rows = {m["name"]: m["state"] for m in json.loads(r.stdout)["data"]["models"]}
    os.unlink(root / "models" / "loras" / MINE)  # as it was before the CLI's fix

    async def panel() -> dict[str, str]:
        svc = FixerService(StandaloneHost.from_root(root), tmp_path / "svc", comfyui_root=root)
        await svc.start_fix(workflow(), "wf.json")
        await svc._task
        return {m["name"]: m["state"] for m in svc.status()["data"]["models"]}

    assert asyncio.run(panel()) == cli_rows == {MINE: "done", LOST: "not_found"}


def test_a_run_writes_no_file_itself_the_applications_subscribers_do(tmp_path):
    root = make_comfy_root(tmp_path, {"models/checkpoints/mine.pth": "mine"})
    local = Candidate("local", "mine.pth", "loras", 1.0, "on disk",
                      local_path=str(root / "models/checkpoints/mine.pth"))
    ref = ModelRef("mine.pth", "loras")

    bare = tmp_path / "bare"
    run = FixRun([ref], config=Config(), secrets={}, bus=EventBus(), folders=StandaloneHost.from_root(root).folders(),
                 inventory=None, state_dir=bare, chosen={ref.name: local})
    assert asyncio.run(run.run())["models"][0]["state"] == "done"
    assert not (bare / "output" / "resolutions.json").exists() and not (bare / "status.json").exists()

    os.unlink(root / "models/loras/mine.pth")
    state = tmp_path / "state"
    app = Application(state, Config(), StandaloneHost.from_root(root), secrets=dict)
    run = app.new_run([ref], inventory=None, workflow="wf.json", chosen={ref.name: local})
    asyncio.run(run.run())
    (res,) = json.loads((state / "output" / "resolutions.json").read_text())
    assert (res["filename"], res["source"]) == ("mine.pth", "local")
    status = json.loads((state / "status.json").read_text())
    assert status["phase"] == "complete" and status["data"]["models"][0]["state"] == "done"
    assert status["data"]["local_matches"] == 1


def test_a_run_with_nothing_to_resolve_leaves_an_empty_resolutions_file(tmp_path):
    state = tmp_path / "state"
    write_json(state / "output" / "resolutions.json", [{"filename": "old.safetensors", "source": "not_found"}])
    app = Application(state, Config(), StandaloneHost.from_root(make_comfy_root(tmp_path)), secrets=dict)
    asyncio.run(app.new_run([], inventory=None, workflow="wf.json").run())
    assert json.loads((state / "output" / "resolutions.json").read_text()) == []


def test_inside_comfyui_a_run_that_ends_keeps_only_its_own_download_scripts(tmp_path):
    state = tmp_path / "state"
    out = state / "output"
    out.mkdir(parents=True)
    old = out / "download_1_old.sh"
    old.write_text("#!/bin/sh\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    root = make_comfy_root(tmp_path)
    for keep, left in ((True, True), (False, False)):
        app = Application(state, Config(), StandaloneHost.from_root(root), secrets=dict, keep_scripts=keep)
        asyncio.run(app.new_run([], inventory=None, workflow="wf.json").run())
        assert old.exists() is left


def test_resolutions_arriving_together_are_written_at_once_then_within_the_interval(tmp_path):
    """A burst of resolutions is not one rewrite each: the first goes at once, the rest within `interval`
    (a timer on the loop, so a run killed while searching still leaves them) or at the next phase."""
    from fixer.app.outputs import ResolutionsFile
    from fixer.events import ModelResolved, PhaseChanged
    from fixer.models import Resolution

    def names() -> list[str]:
        return [e["filename"] for e in json.loads((tmp_path / "resolutions.json").read_text())]

    async def burst() -> None:
        out = ResolutionsFile(tmp_path, interval=0.5)
        out(PhaseChanged("resolving"))
        for n in ("a", "b", "c"):
            out(ModelResolved(Resolution(f"{n}.safetensors", "loras", None)))
        assert names() == ["a.safetensors"]
        deadline = time.monotonic() + 10
        while names() != ["a.safetensors", "b.safetensors", "c.safetensors"]:  # the timer writes them
            assert time.monotonic() < deadline, names()
            await asyncio.sleep(0.05)
        for n in ("d", "e"):
            out(ModelResolved(Resolution(f"{n}.safetensors", "loras", None)))
        out(PhaseChanged("downloading"))  # the search ended: everything it found is on disk now
        assert names()[-2:] == ["d.safetensors", "e.safetensors"]

    asyncio.run(burst())

"""Run state is never clobbered: a refused run, a scan beside a running run and a refused panel fix leave the
running run's status.json alone; every JSON the state writes stays valid, whatever bytes names hold."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixer.app.service import FixerService
from fixer.errors import ErrorInfo, RunLocked
from fixer.host.host import StandaloneHost
from fixer.state import StateLock, StatusDocument, write_json_atomic
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json

RUNNING = {"timestamp": "2026-11-28T10:00:00+0000", "phase": "downloading",
           "progress": {"current": 1, "total": 3, "percent": 33.3}, "data": {"run_id": "theirs"}, "errors": []}


@pytest.fixture
def busy_state(tmp_path: Path):
    """A state dir whose run is going on: its status.json written, its lock held (by this process)."""
    state = tmp_path / "state"
    write_json(state / "status.json", RUNNING)
    with StateLock(state, "comfy-fixer --auto"):
        yield state


def fixer_cli(root: Path, state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fixer", *args, "--comfyui-root", str(root), "--state-dir",
                           str(state)], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    return root


@pytest.mark.parametrize("command", [["--auto", "--yes"], ["--resolve"], ["--download"], ["--resume"]])
def test_a_run_refused_by_the_lock_leaves_the_running_runs_status_json(root, busy_state, command):
    # Something to download and to resume, so those commands get as far as the lock.
    url = "http://127.0.0.1:9/v.safetensors"
    write_json(busy_state / "output/resolutions.json", [
        {"filename": "v.safetensors", "source": "huggingface", "expected_type": "vae", "download_url": url}])
    write_json(busy_state / "output/downloaded_models.json", {"downloads": [
        {"name": "v.safetensors", "filename": "v.safetensors", "folder": "vae", "state": "failed", "url": url}]})
    r = fixer_cli(root, busy_state, *command)
    assert "Traceback" not in r.stderr
    assert json.loads((busy_state / "status.json").read_text()) == RUNNING


def test_a_scan_beside_a_running_run_reports_and_leaves_its_status_json(root, busy_state):
    r = fixer_cli(root, busy_state, "--scan")
    assert r.returncode == 1 and "v.safetensors" in r.stdout, r.stderr
    assert "leaves that run's status.json alone" in r.stderr
    assert json.loads((busy_state / "status.json").read_text()) == RUNNING


def test_a_scan_alone_still_writes_status_json(root, tmp_path):
    r = fixer_cli(root, tmp_path / "alone", "--scan")
    assert r.returncode == 1
    assert json.loads((tmp_path / "alone/status.json").read_text())["data"]["scan"]["missing"] == 1


def test_a_panel_fix_refused_by_a_cli_run_leaves_its_status_json(root, busy_state):
    svc = FixerService(StandaloneHost.from_root(root), busy_state, comfyui_root=root)
    wf = make_workflow([node(1, "VAELoader", ["v.safetensors"])])
    with pytest.raises(RunLocked):
        asyncio.run(svc.start_fix(wf, "w.json"))
    assert json.loads((busy_state / "status.json").read_text()) == RUNNING


def test_json_with_lone_surrogates_in_names_is_written_as_valid_utf8_json(tmp_path):
    name = os.fsdecode(b"caf\xe9-\xff.safetensors")  # a Latin-1 file name as os.listdir hands it over
    write_json_atomic(tmp_path / "x.json", {"name": name, "plain": "ü"})
    data = json.loads((tmp_path / "x.json").read_bytes().decode("utf-8"))
    assert data == {"name": name, "plain": "ü"}


def test_status_document_with_a_lone_surrogate_in_an_error_stays_valid_json(tmp_path):
    doc = StatusDocument(tmp_path / "status.json")
    doc.add_error(ErrorInfo("workflow_unreadable", "cannot read " + os.fsdecode(b"bad-\xff.json")))
    assert json.loads((tmp_path / "status.json").read_bytes().decode("utf-8"))["errors"][0]["error"].startswith(
        "cannot read bad-")


def test_a_burst_of_errors_is_one_status_write_and_the_final_write_holds_them_all(tmp_path, monkeypatch):
    import fixer.state as state

    writes: list[dict] = []
    real = state.write_json_atomic
    monkeypatch.setattr(state, "write_json_atomic", lambda path, doc: (writes.append(doc), real(path, doc)))
    doc = StatusDocument(tmp_path / "status.json", min_interval=60.0)
    for i in range(16):  # a scan's unreadable files, one ErrorRaised each
        doc.add_error(ErrorInfo("workflow_unreadable", f"Failed to parse {i}.json"))
    assert len(writes) == 1 and len(writes[0]["errors"]) == 1  # the first is written at once, the rest wait
    doc.update(phase="complete", force=True)  # every run ends with a forced write of its last phase
    assert len(writes) == 2
    final = json.loads((tmp_path / "status.json").read_text())
    assert final["phase"] == "complete" and [e["error"] for e in final["errors"]] == [
        f"Failed to parse {i}.json" for i in range(16)]

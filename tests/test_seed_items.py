"""The contract scripts and agents rely on, item by item (status, resume, recovery, sources, catalogs, a fresh
ComfyUI, the rough edges, the ComfyUI root and unreadable inputs), as a new user and a script meet them.
The agent guide's own scripts run in tests/test_seed_contract.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fixer.app import console
from fixer.app.console import ConsoleProgress
from fixer.events import TransferProgress
from fixer.models import Candidate, ModelRef, Transfer, TransferRequest
from fixer.sources.base import SearchRun
from fixer.sources.catalogs import CatalogEntry, CatalogFiles, CatalogSource, template_files
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream.file_routes import register_hf_file
from tests.fake_upstream.server import Fault


def cli(*args: str, env: dict | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_API_KEY")}
    return subprocess.run([sys.executable, "-m", "fixer", *args], env={**base, **(env or {}), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL,
                          check=False)


def lora_root(tmp_path: Path, upstream) -> tuple[Path, dict]:
    root = make_comfy_root(tmp_path)
    lora = upstream.payloads["tiny-lora"]
    write_json(root / "user/default/workflows/w.json", make_workflow([
        node(1, "LoraLoader", [lora["filename"], 1, 1],
             models=[{"name": lora["filename"], "url": "https://civitai.com/api/download/models/9100101",
                      "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "loras"}])]))
    return root, lora


# --- a timeout is worded so the guide's rule ("timeout" -> re-run with --resume) fires -------------
def test_a_download_that_times_out_is_a_timeout_in_errors(upstream, tmp_path):
    from tests.fake_upstream import Fault

    root = make_comfy_root(tmp_path)
    state = tmp_path / "state"
    config = write_json(tmp_path / "config.json", {"download": {"timeout_seconds": 0.5, "retries": 1}})
    upstream.add_fault(Fault(path=r"/api/download/models/9100101", delay=3, times=None))
    r = cli("get", f"{upstream.base}/api/download/models/9100101", "--folder", "loras", "--name", "x.safetensors",
            "--comfyui-root", str(root), "--state-dir", str(state), "--config", str(config), env=upstream.env())
    assert r.returncode == 1, r.stdout + r.stderr
    errors = json.loads((state / "status.json").read_text())["errors"]
    assert len(errors) == 1 and errors[0]["code"] in ("interrupted", "unreachable"), errors
    assert "timeout" in errors[0]["error"] and errors[0]["error"].startswith("Download failed: timeout")


def test_failure_words_follow_the_guide():
    from fixer.errors import ErrorInfo
    from fixer.transfer.failures import failure_event

    req = TransferRequest(url="https://civitai.com/api/download/models/1", folder="loras", filename="a.safetensors",
                          source="civitai")
    ev = failure_event(Transfer(request=req, target="/x", part="", state="failed",
                                error=ErrorInfo("login_required", "the why", needs_token="CIVITAI_API_KEY")))
    assert ev.error.message.startswith("Civitai API error: 401") and ev.details == "the why"
    assert ev.error.code == "login_required" and ev.error.needs_token == "CIVITAI_API_KEY"
    hf = TransferRequest(url="https://huggingface.co/o/r/resolve/main/b.safetensors", folder="vae",
                         filename="b.safetensors", source="huggingface")
    ev = failure_event(Transfer(request=hf, target="/y", part="", state="failed",
                                error=ErrorInfo("not_found_upstream", "gone")))
    assert "not found" in ev.error.message and "HuggingFace" in ev.error.message


# --- --resume continues every unfinished phase -----------------------------------------------------
def test_resume_after_resolve_downloads_what_it_chose(upstream, tmp_path):
    root, lora = lora_root(tmp_path, upstream)
    state = tmp_path / "state"
    assert cli("--resolve", "--comfyui-root", str(root), "--state-dir", str(state), env=upstream.env()).returncode == 0
    upstream.requests.clear()
    r = cli("--resume", "--state-dir", str(state), env=upstream.env())  # the ComfyUI and workflows of the last run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Continuing the last run: 1 download(s) not started." in r.stdout
    assert (root / "models/loras" / lora["filename"]).is_file()
    assert not [q for q in upstream.requests if q.path_qs.startswith(("/api/v1/", "/api/models"))]  # no new search


def test_resume_in_an_empty_state_dir_is_a_whole_run(upstream, tmp_path):
    root, lora = lora_root(tmp_path, upstream)
    r = cli("--resume", "--comfyui-root", str(root), "--state-dir", str(tmp_path / "fresh"), env=upstream.env())
    assert r.returncode == 0 and "Nothing to resume" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert "1 model(s) not searched yet" in r.stdout
    assert (root / "models/loras" / lora["filename"]).is_file()
    r = cli("--resume", "--comfyui-root", str(root), "--state-dir", str(tmp_path / "fresh"), env=upstream.env())
    assert r.returncode == 0 and "Nothing to resume: everything the last run set out to do is done." in r.stderr


# --- the guide's recovery step (--download again, get again) is idempotent ---------------------------
def test_resume_of_a_get_that_failed_says_what_it_continues_and_each_failure_once(upstream, tmp_path):
    root = make_comfy_root(tmp_path, {"models/vae/v.safetensors": ""})
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    state = tmp_path / "state"
    url = register_hf_file(upstream, "resume/once", "gone.safetensors", b"x" * 4096)
    upstream.add_fault(Fault(path=r"/resume/once/resolve/", status=404, times=None))  # removed from the Hub
    args = ("--comfyui-root", str(root), "--state-dir", str(state))
    assert cli("get", url, "--folder", "loras", *args, env=upstream.env()).returncode == 1
    r = cli("--resume", *args, env=upstream.env())
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Continuing the last run: 1 recorded download(s) not finished." in r.stdout, r.stdout
    failed = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and "gone.safetensors" in failed[0], r.stdout + r.stderr


def test_download_and_get_again_take_the_file_in_place_as_done(upstream, tmp_path):
    root, lora = lora_root(tmp_path, upstream)
    state = tmp_path / "state"
    cli("--resolve", "--comfyui-root", str(root), "--state-dir", str(state), env=upstream.env())
    first = cli("--download", "--comfyui-root", str(root), "--state-dir", str(state), env=upstream.env())
    assert first.returncode == 0, first.stdout + first.stderr
    again = cli("--download", "--comfyui-root", str(root), "--state-dir", str(state), env=upstream.env())
    assert again.returncode == 0, again.stdout + again.stderr
    out = again.stdout + again.stderr
    assert out.count(lora["filename"]) == 1 and "right size and sha256; not downloaded again" in out, out
    assert "already exists" not in out
    doc = json.loads((state / "status.json").read_text())
    assert doc["phase"] == "complete" and doc["data"]["downloads_successful"] == 1
    assert doc["data"]["workflows_scanned"] == 1 and doc["data"]["civitai_matches"] == 1  # kept from --resolve
    url = f"{upstream.base}/api/download/models/9100101"
    for _ in range(2):
        got = cli("get", url, "--folder", "loras", "--comfyui-root", str(root), "--state-dir", str(state),
                  env=upstream.env())
        assert got.returncode == 0, got.stdout + got.stderr
    assert (got.stdout + got.stderr).count(lora["filename"]) == 1


def test_a_different_file_under_the_name_is_not_taken_as_done(upstream, tmp_path):
    root, _ = lora_root(tmp_path, upstream)
    (root / "models/loras" / "other.safetensors").write_bytes(b"not it")
    r = cli("get", f"{upstream.base}/api/download/models/9100101", "--folder", "loras", "--name", "other.safetensors",
            "--comfyui-root", str(root), "--state-dir", str(tmp_path / "s"), env=upstream.env())
    assert r.returncode == 1 and "already exists but its sha256 is" in r.stdout, r.stdout + r.stderr
    assert (root / "models/loras/other.safetensors").read_bytes() == b"not it"


# --- a failing source falls through; catalog links follow CIVITAI_BASE_URL; ComfyUI's own Python -----
def test_a_catalog_link_that_fails_falls_through_to_the_next_source(upstream, tmp_path):
    root, lora = make_comfy_root(tmp_path), upstream.payloads["tiny-lora"]
    # The template package lives in the venv beside the ComfyUI folder, not in the Python running the CLI.
    pkg = tmp_path / "venv/lib/python3.11/site-packages/comfyui_workflow_templates_test/templates"
    pkg.mkdir(parents=True)
    write_json(pkg / "t.json", {"models": [{"name": lora["filename"], "directory": "loras",
                                            "url": f"https://huggingface.co/dead/repo/resolve/main/{lora['filename']}"}]})
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "LoraLoader", [lora["filename"], 1, 1],
               models=[{"name": lora["filename"], "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256",
                        "directory": "loras"}])]))
    state = tmp_path / "state"
    r = cli("--auto", "--comfyui-root", str(root), "--state-dir", str(state), env=upstream.env())
    assert r.returncode == 0, r.stdout + r.stderr
    landed = root / "models/loras" / lora["filename"]
    assert hashlib.sha256(landed.read_bytes()).hexdigest().upper() == lora["hashes"]["SHA256"]
    (res,) = json.loads((state / "output/resolutions.json").read_text())
    assert res["source"] == "civitai" and res["candidates"][0]["source"] == "catalog"
    doc = json.loads((state / "status.json").read_text())
    assert doc["data"]["downloads_successful"] == 1 and doc["data"]["downloads_failed"] == 0
    assert [e["code"] for e in doc["errors"]] == ["private_or_missing"]  # the dead link's own failure is still listed


def test_templates_beside_the_comfyui_folder_and_in_its_running_python_are_found(tmp_path):
    root = make_comfy_root(tmp_path)
    beside = tmp_path / ".venv/lib/python3.12/site-packages/comfyui_workflow_templates_a/templates"
    portable = tmp_path / "python_embeded/Lib/site-packages/comfyui_workflow_templates_b/templates"
    env = tmp_path / "elsewhere/env"
    running = env / "lib/python3.11/site-packages/comfyui_workflow_templates_c/templates"
    for d in (beside, portable, running):
        write_json(d / "t.json", {"models": []})
    (env / "bin").mkdir(parents=True)
    (env / "bin/python").symlink_to(sys.executable)
    (root / "main.py").write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([str(env / "bin/python"), "main.py"], cwd=root)
    try:
        deadline = __import__("time").monotonic() + 10
        while True:
            found = template_files(root)
            if running / "t.json" in found or __import__("time").monotonic() > deadline:
                break
        assert {beside / "t.json", portable / "t.json", running / "t.json"} <= set(found)
    finally:
        proc.kill()
        proc.wait()


def test_catalog_civitai_links_follow_civitai_base_url(tmp_path):
    src = CatalogSource(CatalogFiles(None))
    run = SearchRun(config=None, secrets={}, http=None, history=None)  # type: ignore[arg-type]
    run.civitai_base = "http://mirror.test:8080/civ"
    e = CatalogEntry("up.pth", "https://civitai.com/api/download/models/125843", "upscale_models", None, "list")
    c: Candidate = src._candidate(ModelRef("up.pth", "upscale_models"), run, e, 0.9, "listed")
    assert c.url == "http://mirror.test:8080/civ/api/download/models/125843"


# --- the README's main command on a fresh ComfyUI ---------------------------------------------------
def test_the_readme_main_command_succeeds_on_a_fresh_comfyui(tmp_path):
    root = make_comfy_root(tmp_path)
    (root / "user/default/workflows").rmdir()  # a fresh install: nothing saved yet
    r = cli("--auto", "--comfyui-root", str(root), "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No saved workflow in" in r.stderr and "nothing to check" in r.stderr


# --- rough edges a script trips on -------------------------------------------------------------------
def test_auto_json_is_json(upstream, tmp_path):
    root, _ = lora_root(tmp_path, upstream)
    r = cli("--auto", "--json", "--comfyui-root", str(root), "--state-dir", str(tmp_path / "s"), env=upstream.env())
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["phase"] == "complete" and doc["data"]["downloads_successful"] == 1


def test_a_model_that_needs_a_choice_is_decided_with_choose(upstream, tmp_path):
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json",
               make_workflow([node(1, "LoraLoader", ["tiny.safetensors", 1, 1])]))
    state = tmp_path / "s"
    lora_url = f"{upstream.base}/api/download/models/9100101"
    cand = {"source": "civitai", "url": lora_url, "local_path": None, "reason": "a near name", "confidence": 0.5,
            "filename": "tiny.safetensors", "folder": "loras", "size": None, "gated": False}
    write_json(state / "output/resolutions.json", [{"filename": "tiny.safetensors", "source": "not_found",
                                                    "state": "needs_choice", "expected_type": "loras",
                                                    "candidates": [cand]}])
    bad = cli("--resume", "--choose", "tiny.safetensors=7", "--comfyui-root", str(root), "--state-dir", str(state),
              env=upstream.env())
    assert bad.returncode == 2 and "give a number from 1 to 1" in bad.stderr
    r = cli("--resume", "--choose", "tiny.safetensors=1", "--comfyui-root", str(root), "--state-dir", str(state),
            env=upstream.env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "models/loras/tiny.safetensors").is_file()


def test_without_a_terminal_a_progress_line_comes_at_least_every_10_s(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    view = ConsoleProgress(out, live=False)
    t = Transfer(request=TransferRequest(url="u", folder="loras", filename="big.safetensors"), target="/t", part="",
                 state="downloading", bytes_done=10, total=100, speed=1.0)
    for _ in range(40):  # 40 progress events over 20 s of one download
        clock[0] += 0.5
        view(TransferProgress(t))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("progress")]
    assert len(lines) >= 2 and "big.safetensors" in lines[0] and console.PLAIN_EVERY <= 10


def test_skipped_node_check_says_not_checked(tmp_path):
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    r = cli("--scan", "--comfyui-root", str(root), "--state-dir", str(tmp_path / "s"))
    nodes = json.loads((tmp_path / "s/output/missing_nodes.json").read_text())
    assert nodes != [] and nodes["node_check"] == "not checked" and nodes["missing_nodes"] is None
    assert "Missing node types: not checked" in r.stdout


def test_a_missing_extra_model_paths_file_is_an_error(tmp_path):
    root = make_comfy_root(tmp_path)
    r = cli("--scan", "--comfyui-root", str(root), "--extra-model-paths", str(tmp_path / "nope.yaml"),
            "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2 and "nope.yaml: no such file" in r.stderr


# --- a ComfyUI root that is none, unreadable inputs --------------------------------------------------------------
def test_comfyui_root_must_look_like_a_comfyui(tmp_path):
    notcomfy = tmp_path / "notcomfy"
    notcomfy.mkdir()
    wf = write_json(tmp_path / "w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    r = cli("--auto", "--yes", "--comfyui-root", str(notcomfy), "--workflow", str(wf),
            "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2 and "main.py and folder_paths.py are missing" in r.stderr, r.stderr
    assert list(notcomfy.iterdir()) == []  # nothing created in the wrong place
    portable = tmp_path / "ComfyUI_windows_portable"
    make_comfy_root(portable)
    (portable / "python_embeded").mkdir()
    r = cli("--scan", "--comfyui-root", str(portable), "--workflow", str(wf), "--state-dir", str(tmp_path / "p"))
    assert r.returncode == 1 and "missing: 1" in r.stdout, r.stderr


@pytest.mark.parametrize("kind", ["broken_json", "png_without_workflow", "empty_folder"])
def test_an_unreadable_input_is_an_error_naming_the_file_and_why(tmp_path, kind):
    root = make_comfy_root(tmp_path)
    if kind == "broken_json":
        path, why = tmp_path / "w.json", "malformed JSON"
        path.write_text("{oops")
    elif kind == "png_without_workflow":
        path, why = tmp_path / "w.png", "no ComfyUI workflow is embedded"
        Image.new("RGB", (4, 4)).save(path)
    else:
        path, why = tmp_path / "empty", "holds no workflow file"
        path.mkdir()
    r = cli("--scan", "--comfyui-root", str(root), "--workflow", str(path), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2 and str(path) in r.stderr and why in r.stderr, r.stdout + r.stderr
    doc = json.loads((tmp_path / "s/status.json").read_text())
    assert doc["phase"] == "error" and doc["errors"][-1]["code"] in ("workflow_unreadable", "error")


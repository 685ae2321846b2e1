"""The agent guide's scripts run as the guide prints them (tests/data/seed_scripts, only the command changed)
against real runs on the fake upstream: two downloads that work (Civitai, Hugging Face), one that needs a login
the run does not have, one model no source has. They must print the true counts, and a run that dies must never
look alive to them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import DATA, ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream import payload_bytes
from tests.fake_upstream.api_routes import add_hf_repo
from tests.fake_upstream.file_routes import faults, hf_key, register_hf_file

SCRIPTS = DATA / "seed_scripts"
REPO, HF_NAME, SLOW = "seed/tests", "hf_model.safetensors", "slow_model.safetensors"
LOGIN_NAME = "fixture_tiny_checkpoint.safetensors"  # Civitai 9100102 answers 401 without a key
MISSING = "zzz_no_such_thing_anywhere.safetensors"


def hf_file(upstream, name: str, seed: str, n: int) -> dict:
    data = payload_bytes({"seed": seed, "recipe": "safetensors", "n_values": n})
    sha = hashlib.sha256(data).hexdigest()
    add_hf_repo(upstream, REPO, {**upstream.state.get("seed_repo", {}), name: (len(data), sha)})
    upstream.state.setdefault("seed_repo", {})[name] = (len(data), sha)
    register_hf_file(upstream, REPO, name, data)
    return {"name": name, "url": f"https://huggingface.co/{REPO}/resolve/main/{name}", "hash": sha,
            "hash_type": "sha256"}


@pytest.fixture
def world(tmp_path, upstream):
    """A ComfyUI whose only workflow needs: a Civitai LoRA, a Hugging Face checkpoint, a Civitai checkpoint
    that needs a login, and a LoRA no one has. The state dir is the scripts' working directory; the guide's
    config.json names the ComfyUI (the guide's command takes no other flag)."""
    root = make_comfy_root(tmp_path)
    lora = upstream.payloads["tiny-lora"]
    hf = hf_file(upstream, HF_NAME, "seed-hf", 40_000)
    wf = [node(1, "LoraLoader", [lora["filename"], 1, 1],
               models=[{"name": lora["filename"], "url": "https://civitai.com/api/download/models/9100101",
                        "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "loras"}]),
          node(2, "CheckpointLoaderSimple", [HF_NAME], models=[{**hf, "directory": "checkpoints"}]),
          node(3, "CheckpointLoaderSimple", [LOGIN_NAME], models=[{
              "name": LOGIN_NAME, "url": "https://civitai.com/api/download/models/9100102",
              "directory": "checkpoints"}]),
          node(4, "LoraLoader", [MISSING, 1, 1])]
    write_json(root / "user/default/workflows/w.json", make_workflow(wf))
    state = tmp_path / "state"
    state.mkdir()
    # The guide's config.json names the ComfyUI; it lives in the user's config folder (one beside shared
    # workflows is never read: it could send tokens elsewhere).
    write_json(tmp_path / "xdg/comfyfixer/config.json", {"comfyui_root": str(root)})
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_API_KEY", "XDG_CONFIG_HOME")}
    env = {**env, **upstream.env(), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    return {"up": upstream, "root": root, "state": state, "env": env, "wf": wf, "lora": lora}


def script(world, name: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """One of the guide's scripts, run in the state dir as the guide runs them (cwd = the tool's folder)."""
    return subprocess.run([sys.executable, str(SCRIPTS / name)], cwd=world["state"], env=world["env"],
                          capture_output=True, text=True, timeout=timeout, check=False)


def fixer(world, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fixer", *args], cwd=world["state"], env=world["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def status(world) -> dict:
    return json.loads((world["state"] / "status.json").read_text())


def test_the_guides_agent_and_minimal_check_print_the_true_counts(world):
    agent = script(world, "agent.py")
    out = agent.stdout
    # It sees `complete` or the process ending first (its 2 s poll decides); never `error` for a run that finished.
    assert "=== Results ===" in out and "Error occurred" not in out, out + agent.stderr
    assert "Missing models found: 4" in out
    assert "Resolved on Civitai: 2" in out and "Resolved on HuggingFace: 1" in out and "Not found: 1" in out
    assert "Downloads successful: 2" in out and "Downloads failed: 1" in out
    assert agent.returncode == 1  # the guide's agent: success only without failed downloads

    doc = status(world)
    assert doc["phase"] == "complete"  # the run got to its end; its failures are counted and listed
    data = doc["data"]
    assert {k: data[k] for k in ("workflows_scanned", "missing_models", "civitai_matches", "huggingface_matches",
                                 "downloads_successful", "downloads_failed", "current_download")} == {
        "workflows_scanned": 1, "missing_models": 4, "civitai_matches": 2, "huggingface_matches": 1,
        "downloads_successful": 2, "downloads_failed": 1, "current_download": None}
    errors = {e["code"]: e for e in doc["errors"]}
    login = errors["login_required"]
    assert login["error"].startswith("Civitai API error: 401") and LOGIN_NAME in login["error"]
    assert "CIVITAI_API_KEY" in login["details"] and login["needs_token"] == "CIVITAI_API_KEY"
    assert errors["model_not_found"]["error"] == f"Model not found on Civitai or HuggingFace: {MISSING}"
    assert all(set(e) >= {"timestamp", "error", "details", "code"} for e in doc["errors"])

    check = script(world, "minimal_status.py")
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == ["✓ Scanned 1 workflows", "✓ Downloaded 2 models"]


def test_resolutions_source_says_where_the_bytes_come_from(world):
    proc = fixer(world, "--auto")
    proc.communicate(timeout=120)
    rows = {r["filename"]: r for r in json.loads((world["state"] / "output/resolutions.json").read_text())}
    assert {n: (r["source"], r["found_by"]) for n, r in rows.items()} == {
        world["lora"]["filename"]: ("civitai", "embedded"), HF_NAME: ("huggingface", "embedded"),
        LOGIN_NAME: ("civitai", "embedded"), MISSING: ("not_found", None)}
    assert rows[world["lora"]["filename"]]["version_id"] == 9100101  # the guide's example fields
    assert rows[HF_NAME]["repo_id"] == REPO


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_dead_run_never_looks_alive_and_the_recovery_actions_fire(world, how):
    slow = hf_file(world["up"], SLOW, "seed-slow", 3 << 20)
    faults(world["up"], hf_key(REPO, SLOW)).rate = 1 << 20  # 6 MiB at 1 MiB/s: killed on the way
    write_json(world["root"] / "user/default/workflows/w.json",
               make_workflow([*world["wf"], node(5, "LoraLoader", [SLOW, 1, 1],
                                                 models=[{**slow, "directory": "loras"}])]))
    proc = fixer(world, "--auto")
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        try:
            doc = status(world)
        except (OSError, ValueError):
            doc = {}
        codes = {e.get("code") for e in doc.get("errors", [])}
        # Killed once the slow file has a partial on disk (its sidecar is written as the .part opens): the
        # status names the download when its slot is given, a moment before (racy under load).
        started = (world["root"] / "models/loras" / f"{SLOW}.part.json").exists()
        if {"login_required", "model_not_found"} <= codes and (doc.get("data") or {}).get("current_download") == SLOW \
                and started:
            break
        time.sleep(0.05)
    os.kill(proc.pid, getattr(signal, how))
    out, err = proc.communicate(timeout=30)
    if how == "SIGTERM":
        said = "interrupted (SIGTERM); run comfy-fixer --resume to continue"
        assert proc.returncode == 143 and said in err, out + err
        assert "Traceback" not in err and "Unclosed" not in err and ": None" not in out + err, err
    else:
        assert status(world)["phase"] in ("resolving", "downloading")  # what a killed process leaves behind
        shown = fixer(world, "--status")  # the guide's "monitor progress": finds the run dead and says so
        sout, _ = shown.communicate(timeout=30)
        assert shown.returncode == 0 and "Phase: error" in sout and "Run interrupted" in sout, sout
        assert "comfy-fixer --resume" in sout
    doc = status(world)
    assert doc["phase"] == "error" and doc["data"]["current_download"] is None
    assert doc["errors"][-1]["code"] == "run_interrupted"

    recovery = script(world, "recovery_actions.py")
    lines = recovery.stdout.splitlines()
    assert "Action: Check API key in ~/.secrets" in lines and "Action: Review output/resolutions.json" in lines
    assert any(line.startswith("Error: Civitai API error: 401") for line in lines), lines
    assert any(line.startswith("Error: Run interrupted") for line in lines), lines

    check = script(world, "minimal_status.py")
    assert check.stdout.strip() == "✗ Error occurred, check logs"  # never "Running: downloading"

    faults(world["up"], hf_key(REPO, SLOW)).rate = None
    resumed = fixer(world, "--resume")
    rout, rerr = resumed.communicate(timeout=120)
    assert "Continuing the last run:" in rout and "partial download(s)" in rout, rout + rerr
    assert (world["root"] / "models/loras" / SLOW).exists()
    assert resumed.returncode == 1  # the login failure and the missing model are still there, and said so
    assert status(world)["phase"] == "complete"


def test_status_with_nothing_run_is_idle(world):
    proc = fixer(world, "--status")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Phase: idle" in out, err
    proc = fixer(world, "--status", "--json")
    doc = json.loads(proc.communicate(timeout=30)[0])
    assert doc["phase"] == "idle" and doc["data"]["downloads_failed"] == 0 and doc["errors"] == []


def test_a_phase_that_says_its_number_of_items_starts_the_progress_at_0_of_them(tmp_path):
    """Fails on c217907: progress stayed 0 of 0 until an item ended (a run killed while resolving or during its
    first download left `total` 0, so the guide's agent script, which reports while `total` > 0, said nothing)."""
    from fixer.events import PhaseChanged, Progress
    from fixer.state import StatusDocument

    doc = StatusDocument(tmp_path / "status.json", min_interval=0)

    def progress() -> dict:
        return json.loads((tmp_path / "status.json").read_text())["progress"]

    doc(PhaseChanged("resolving", total=3))
    assert progress() == {"current": 0, "total": 3, "percent": 0.0}
    doc(Progress(2, 3))
    doc(PhaseChanged("downloading"))  # a phase that does not count items leaves the figures as they are
    assert progress() == {"current": 2, "total": 3, "percent": 66.7}

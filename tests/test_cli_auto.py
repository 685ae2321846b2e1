"""`comfy-fixer --auto`: scan -> resolve -> download -> verify in one command, against the fake upstream."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json


def run_auto(root, state, env, *extra, stdin=subprocess.DEVNULL, input=None):
    return subprocess.run([sys.executable, "-m", "fixer", "--auto", "--comfyui-root", str(root),
                           "--state-dir", str(state), *extra],
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, stdin=stdin if input is None else None, input=input)


def test_auto_downloads_relinks_and_reports_what_it_could_not_find(tmp_path, upstream):
    root = make_comfy_root(tmp_path, {"models/checkpoints/wrongplace.safetensors": "mine"})
    lora = upstream.payloads["tiny-lora"]
    wf = make_workflow([
        node(1, "LoraLoader", [lora["filename"], 1, 1],
             models=[{"name": lora["filename"], "url": "https://civitai.com/api/download/models/9100101",
                      "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "loras"}]),
        node(2, "VAELoader", ["wrongplace.safetensors"]),
        node(3, "LoraLoader", ["zzz_no_such_thing_anywhere.safetensors", 1, 1]),
    ])
    write_json(root / "user/default/workflows/w.json", wf)
    r = run_auto(root, tmp_path / "state", upstream.env())
    assert r.returncode == 1, r.stderr  # one model stays not found
    landed = root / "models/loras" / lora["filename"]
    assert hashlib.sha256(landed.read_bytes()).hexdigest().upper() == lora["hashes"]["SHA256"]
    assert (root / "models/vae/wrongplace.safetensors").read_text() == "mine"
    assert (root / "models/checkpoints/wrongplace.safetensors").exists()  # the user's copy is left alone
    assert "=== Summary ===" in r.stdout and "Not found: loras/zzz_no_such_thing_anywhere.safetensors" in r.stdout
    resolutions = json.loads((tmp_path / "state/output/resolutions.json").read_text())
    assert {x["filename"]: x["source"] for x in resolutions} == {
        lora["filename"]: "embedded", "wrongplace.safetensors": "local",
        "zzz_no_such_thing_anywhere.safetensors": "not_found"}
    status = json.loads((tmp_path / "state/status.json").read_text())
    assert status["phase"] in ("complete", "error") and status["data"]["summary"]["done"] == 2
    assert not list((root / "models").rglob("*.part"))


def test_auto_asks_first_and_v_lists_then_n_downloads_nothing(tmp_path, upstream):
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    # A pipe is not a terminal: without --yes the prompt only appears on a TTY, so drive the prompt function.
    from io import StringIO

    from fixer.cli import confirm
    from fixer.models import ModelRef

    refs = [ModelRef("v.safetensors", "vae")]
    assert confirm(refs, StringIO("v\nn\n")) is False
    assert confirm(refs, StringIO("y\n")) is True
    assert confirm(refs, StringIO("")) is False  # end of input is a no


def test_auto_with_nothing_missing_exits_0(tmp_path, upstream):
    root = make_comfy_root(tmp_path, {"models/vae/v.safetensors": ""})
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    r = run_auto(root, tmp_path / "state", upstream.env())
    assert r.returncode == 0 and "No model is missing." in r.stdout

"""The CLI pays at start-up only for what the command uses: no HTTP stack, numpy or huggingface_hub to scan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("aiohttp", "numpy", "huggingface_hub", "requests", "safetensors")

SCAN_THEN_LIST = """
import json, sys
from fixer.app.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def loaded_after(args: list[str], cwd: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", SCAN_THEN_LIST, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_scan_loads_no_http_stack_numpy_or_huggingface_hub(tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    wf = tmp_path / "w.json"
    wf.write_text(json.dumps({"nodes": [{"id": 1, "type": "CheckpointLoaderSimple",
                                         "widgets_values": ["missing.safetensors"]}]}))
    got = loaded_after(["--scan", "--comfyui-root", str(root), "--workflow", str(wf), "--state-dir",
                        str(tmp_path / "state"), "--json"], tmp_path)
    assert got["loaded"] == [], got


def test_pure_transfer_modules_do_not_load_the_http_stack(tmp_path):
    code = "import sys, fixer.transfer.policy, fixer.transfer.verify, fixer.transfer.resume; " \
           "print([m for m in ('aiohttp', 'numpy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr

"""The CLI pays at start-up only for what the command uses: no HTTP stack, numpy or huggingface_hub to scan."""

from __future__ import annotations

import json
import os
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


SEE_BLAS = ("import os, fixer.app.cli as cli\n"
            "cli._run = lambda argv: print(os.environ.get('OPENBLAS_NUM_THREADS')) or 0\n"
            "cli.main()\n")


def test_the_cli_process_keeps_openblas_to_one_thread_unless_the_user_set_it(tmp_path):
    """numpy (the safetensors check) would start a spinning OpenBLAS worker per core in the CLI's process."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    own = subprocess.run([sys.executable, "-c", SEE_BLAS], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert own.stdout.strip() == "1", own.stderr
    users = subprocess.run([sys.executable, "-c", SEE_BLAS], cwd=tmp_path, env={**env, "OPENBLAS_NUM_THREADS": "3"},
                           capture_output=True, text=True)
    assert users.stdout.strip() == "3", users.stderr


def test_main_called_as_a_library_leaves_the_environment_alone(monkeypatch):
    from fixer.app import cli

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(cli, "_run", lambda argv: 0)
    assert cli.main(["--status"]) == 0
    assert "OPENBLAS_NUM_THREADS" not in os.environ

"""The engine has one name, `fixer`, in every process: ComfyUI with the pack (imported twice, as ComfyUI
can), the scan worker and the CLI. Two names would mean two copies of every module: errors of one copy
not caught by the other, two services, settings saved in one and read from the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fixer.comfy import scan_worker
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json

TESTS = ROOT / "tests"


def engine_copies(modules: list[str]) -> set[str]:
    """The names the engine package was loaded under ("fixer", "<pack>.fixer", ...)."""
    return {m.rpartition(".fixer")[0] + ".fixer" if ".fixer" in m else "fixer"
            for m in modules if m == "fixer" or m.startswith("fixer.") or ".fixer" in m}


def imported_by(stderr: str) -> list[str]:
    """Module names from `python -X importtime`'s report."""
    return [line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")
            and "|" in line]


def test_comfyui_with_the_pack_loads_the_engine_once_as_fixer(tmp_path: Path) -> None:
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    code = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path[:0] = [{str(TESTS)!r}]
        from pathlib import Path
        import fake_comfy
        sys.modules["server"] = fake_comfy.make_server_module()
        sys.modules["folder_paths"] = fake_comfy.make_folder_paths(Path({str(root)!r}))
        sys.modules["nodes"] = fake_comfy.make_nodes_module()
        first = fake_comfy.load_pack(str(fake_comfy.PACK_DIR).replace(".", "_x_"))
        second = fake_comfy.load_pack("custom_nodes.ComfyFixerSmart")
        from fixer.comfy import runtime
        svc = runtime.service()
        wf = json.loads(Path({str(root / "user/default/workflows/w.json")!r}).read_text())
        report = asyncio.run(svc.scan(wf, "w"))
        svc.update_settings(__import__("fixer.app.settings", fromlist=["x"]).parse_patch({{"max_concurrent": 2}}))
        nodes_copy = sys.modules[second.__name__ + ".nodes"]
        print(json.dumps({{"modules": sorted(sys.modules), "missing": report["summary"]["missing"],
                          "seen_by_nodes": nodes_copy.engine_settings()[0].max_concurrent,
                          "routes": len(sys.modules["server"].PromptServer.instance.routes)}}))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert engine_copies(got["modules"]) == {"fixer"}
    assert got["missing"] == 1 and got["routes"] > 0
    assert got["seen_by_nodes"] == 2  # the second copy's nodes read the settings the routes' service saved


def test_the_scan_worker_loads_the_engine_once_as_fixer(tmp_path: Path) -> None:
    root = make_comfy_root(tmp_path)
    argv = scan_worker.child_command()
    proc = subprocess.Popen([argv[0], "-X", "importtime", *argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=scan_worker.PACKAGE_PARENT)
    assert proc.stdin is not None and proc.stdout is not None
    host = {"paths": {"vae": [str(root / "models" / "vae")]}, "exts": {"vae": [".safetensors"]}, "types": None}
    scan_worker.write_frame(proc.stdin, json.dumps({"state_dir": str(tmp_path / "state"), "comfyui_root": str(root),
                                                    "comfyui_version": None, "host": host}).encode())
    body = {"workflow": make_workflow([node(1, "VAELoader", ["v.safetensors"])]), "name": "w"}
    scan_worker.write_frame(proc.stdin, json.dumps(body).encode())
    assert json.loads(scan_worker.read_frame(proc.stdout)) == {"status": 200}
    assert json.loads(scan_worker.read_frame(proc.stdout))["summary"]["missing"] == 1
    proc.stdin.close()
    proc.wait(timeout=60)
    assert proc.stderr is not None
    modules = imported_by(proc.stderr.read().decode())
    assert "fixer.app.application" in modules and "fixer.app.service" not in modules
    assert engine_copies(modules) == {"fixer"}


def test_the_cli_loads_the_engine_once_as_fixer(tmp_path: Path) -> None:
    root = make_comfy_root(tmp_path)
    wf = write_json(tmp_path / "w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "fixer", "--scan", "--comfyui-root", str(root),
                        "--workflow", str(wf), "--state-dir", str(tmp_path / "state")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1, r.stderr
    modules = imported_by(r.stderr)
    assert "fixer.app.cli" in modules
    assert engine_copies(modules) == {"fixer"}


def test_the_adapters_import_the_engine_one_way_by_name() -> None:
    """No `if __package__` branches, no engine("x") string imports in the adapters or the runtime."""
    for path in (ROOT / "nodes.py", ROOT / "server_routes.py", ROOT / "fixer" / "comfy" / "runtime.py"):
        text = path.read_text(encoding="utf-8")
        assert "__package__" not in text and "import_module" not in text and "engine(" not in text, path.name
        assert "from .fixer" not in text, path.name

"""`comfy-fixer --scan` / `--status` as a user runs them: outputs, exit codes, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import OBJECT_INFO, ROOT, make_comfy_root, make_workflow, node, write_json


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fixer", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60, stdin=subprocess.DEVNULL)


def test_scan_writes_the_seed_outputs_and_exits_1_when_something_is_missing(tmp_path):
    root = make_comfy_root(tmp_path, {"models/loras/have.safetensors": ""})
    write_json(root / "user/default/workflows/a.json", make_workflow([
        node(1, "LoraLoader", ["have.safetensors", 1, 1]), node(2, "VAELoader", ["need.safetensors"]),
        node(3, "SomeCustomNode", cnr_id="comfyui-some-pack")]))
    state = tmp_path / "state"
    r = run_cli("--scan", "--comfyui-root", str(root), "--state-dir", str(state),
                "--object-info", str(OBJECT_INFO))
    assert r.returncode == 1, r.stderr
    assert "missing: 1" in r.stdout and "vae" in r.stdout and "Missing node types: 1" in r.stdout
    models = json.loads((state / "output/missing_models.json").read_text())
    assert [(m["filename"], m["expected_type"], m["workflow"], m["node_type"], m["node_id"]) for m in models] == [
        ("need.safetensors", "vae", "a.json", "VAELoader", "2")]
    nodes = json.loads((state / "output/missing_nodes.json").read_text())
    assert [n["node_type"] for n in nodes] == ["SomeCustomNode"]
    assert "need.safetensors" in (state / "output/summary_report.md").read_text()
    status = json.loads((state / "status.json").read_text())
    assert status["phase"] == "complete" and set(status) >= {"timestamp", "progress", "data", "errors"}
    (log,) = (state / "log").glob("scan_*.log")
    actions = [json.loads(line.split("ACTION: ", 1)[1]) for line in log.read_text().splitlines() if "ACTION: " in line]
    assert {"action": "model_missing", "name": "need.safetensors"}.items() <= actions[0].items()


def test_scan_exits_0_when_nothing_is_missing_and_json_is_machine_readable(tmp_path):
    root = make_comfy_root(tmp_path, {"models/vae/v.safetensors": ""})
    wf = write_json(tmp_path / "wf.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    r = run_cli("--comfyui-root", str(root), "--workflow", str(wf), "--state-dir", str(tmp_path / "s"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["summary"]["present"] == 1 and out["node_check"] == "skipped"


def test_unreadable_files_are_listed_and_the_run_goes_on(tmp_path):
    root = make_comfy_root(tmp_path)
    d = tmp_path / "wfs"
    write_json(d / "ok.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    (d / "bad.json").write_text("{oops")
    r = run_cli("--comfyui-root", str(root), "--workflow", str(d), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2  # an unreadable input is an input error, also when the others were scanned
    assert "Could not read:" in r.stdout and "bad.json: malformed JSON" in r.stdout
    assert "v.safetensors" in (tmp_path / "s/output/missing_models.json").read_text()
    assert "Traceback" not in r.stderr


def test_usage_errors_exit_2_with_a_message_that_says_what_to_do(tmp_path):
    r = run_cli("--scan", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "--comfyui-root" in r.stderr
    (tmp_path / "config.json").write_text("{not json")
    r = run_cli("--scan", "--state-dir", str(tmp_path), "--config", str(tmp_path / "config.json"))
    assert r.returncode == 2 and "config.json" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--scan", "--comfyui-root", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "x"))
    assert r.returncode == 2 and "is not a folder" in r.stderr


def test_config_json_supplies_root_and_workflow_directories(tmp_path):
    root = make_comfy_root(tmp_path)
    wf_dir = tmp_path / "elsewhere"
    write_json(wf_dir / "w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    (tmp_path / "config.json").write_text(json.dumps({"comfyui_root": str(root),
                                                      "workflow_directories": [str(wf_dir)]}))
    r = run_cli("--state-dir", str(tmp_path), "--config", str(tmp_path / "config.json"), "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["summary"]["missing"] == 1


def test_status_prints_the_last_run(tmp_path):
    root = make_comfy_root(tmp_path)
    wf = write_json(tmp_path / "wf.json", make_workflow([]))
    run_cli("--comfyui-root", str(root), "--workflow", str(wf), "--state-dir", str(tmp_path))
    r = run_cli("--status", "--state-dir", str(tmp_path))
    assert r.returncode == 0 and "Phase: complete" in r.stdout
    r = run_cli("--status", "--state-dir", str(tmp_path / "empty"))
    assert r.returncode == 0 and "Phase: idle" in r.stdout


def test_help_lists_the_flags_and_exit_codes():
    r = run_cli("--help")
    assert r.returncode == 0
    for flag in ("--scan", "--status", "--comfyui-root", "--workflow", "--state-dir", "--config", "--json",
                 "Exit codes"):
        assert flag in r.stdout


def test_a_run_asks_the_comfyui_server_once_and_walks_the_model_folders_once(tmp_path, monkeypatch):
    from fixer.app import cli
    from fixer.read import inventory

    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/a.json", make_workflow([node(1, "VAELoader", ["need.safetensors"])]))
    asked, walked = [], []
    monkeypatch.setattr(cli, "fetch_object_info", lambda url: asked.append(url) or {"VAELoader": {}})
    real_build = inventory.build_inventory
    monkeypatch.setattr(inventory, "build_inventory", lambda host: walked.append(host) or real_build(host))
    ctx = cli.make_context(cli.build_parser().parse_args(
        ["--resolve", "--comfyui-root", str(root), "--state-dir", str(tmp_path / "state"),
         "--server", "http://127.0.0.1:8188"]))
    report = cli.run_scan(ctx)  # what --auto and --resolve do first, before they fix
    assert [s.state for s in report.models] == ["missing"]
    assert ctx.host() is ctx.host() and ctx.inventory() is ctx.inventory()
    assert asked == ["http://127.0.0.1:8188"] and len(walked) == 1


def test_inside_comfyui_action_lines_go_to_the_state_log_not_the_console(tmp_path):
    import logging

    from fixer.actionlog import action
    from fixer.app import cli
    from fixer.app.service import FixerService
    from fixer.host.host import StandaloneHost

    class Console(logging.Handler):  # what ComfyUI's console handler on the root logger would print
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    root = make_comfy_root(tmp_path)
    FixerService(StandaloneHost.from_root(root), tmp_path / "comfy_state", comfyui_root=root)
    console, root_logger = Console(), logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(console)
    root_logger.setLevel(logging.DEBUG)
    try:
        action("probe_decision", name="x")
    finally:
        root_logger.removeHandler(console)
        root_logger.setLevel(old_level)
    # Not through pytest's caplog: newer pytest versions also capture loggers that do not propagate.
    assert not [line for line in console.lines if "probe_decision" in line]  # ComfyUI's console stays quiet
    assert "probe_decision" in (tmp_path / "comfy_state/log/comfyfixer.log").read_text()
    # and a CLI run in the same process still gets its decisions in its own run log
    wf = write_json(tmp_path / "wf.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    cli.main(["--comfyui-root", str(root), "--workflow", str(wf), "--state-dir", str(tmp_path / "cli_state")])
    (log,) = (tmp_path / "cli_state/log").glob("scan_*.log")
    assert '"action": "model_missing"' in log.read_text()


def test_scan_report_says_how_each_missing_models_folder_was_learned(tmp_path):
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/a.json", make_workflow([
        node(1, "VAELoader", ["need.safetensors"]),
        node(2, "MysteryLoraStack", ["style_lora.safetensors"])]))
    state = tmp_path / "state"
    r = run_cli("--scan", "--comfyui-root", str(root), "--state-dir", str(state))
    assert r.returncode == 1, r.stderr
    assert "Folders of the missing: " in r.stdout
    assert "1 core loader" in r.stdout and "1 guessed from the name" in r.stdout
    md = (state / "output/summary_report.md").read_text()
    assert "| vae | core loader | `need.safetensors` |" in md
    assert "| loras | guessed from the name | `style_lora.safetensors` |" in md

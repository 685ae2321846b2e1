"""The download commands end to end: `comfy-fixer get` killed with SIGKILL mid-way, then `--resume`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fixer.transfer import resume
from tests.conftest import ROOT, make_comfy_root
from tests.fake_upstream import file_routes as fr
from tests.fake_upstream import payload_bytes

MiB = 1 << 20


def run_cli(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fixer", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def cli_env(upstream) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_API_KEY")}
    return {**env, **upstream.env(), "HOME": os.environ.get("HOME", "/tmp")}


def on_disk_prefix(part: Path) -> int:
    sidecar = resume.load(part)
    return resume.prefix_end(sidecar.ranges) if sidecar else 0


def test_get_killed_mid_download_resumes_to_the_right_bytes(upstream, tmp_path):
    data = payload_bytes({"recipe": "safetensors-f16", "seed": "kill-test:", "n_values": 6 * MiB})
    url = fr.register_hf_file(upstream, "t/kill", "killme.safetensors", data)
    fr.faults(upstream, fr.hf_key("t/kill", "killme.safetensors")).rate = 1.5 * MiB  # per connection
    root = make_comfy_root(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "config.json").write_text(json.dumps({"download": {"connections_per_file": 2}}))
    target = root / "models" / "loras" / "killme.safetensors"
    part = Path(f"{target}.part")
    common = ["--comfyui-root", str(root), "--state-dir", str(state), "--config", str(state / "config.json")]
    env = cli_env(upstream)

    proc = run_cli(["get", url, "--folder", "loras", *common], env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not on_disk_prefix(part) >= 2 * MiB:
        assert not target.exists(), "a partial file carried the final name"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists() and part.exists()
    record = json.loads((state / "output" / "downloaded_models.json").read_text())["downloads"][0]
    assert record["state"] == "queued" and record["path"] == str(target)
    # The guide's progress said how many files the command works through from its start (the agent script
    # reports progress only while `total` > 0): 0 of 1 here.
    assert json.loads((state / "status.json").read_text())["progress"] == {"current": 0, "total": 1, "percent": 0.0}

    fr.faults(upstream, fr.hf_key("t/kill", "killme.safetensors")).rate = None
    upstream.requests.clear()
    done = run_cli(["--resume", *common], env)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, out + err
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not part.exists() and not Path(f"{part}.json").exists()
    pieces = [r.headers["Range"][6:].split("-") for r in upstream.requests
              if r.path_qs.startswith("/cdn/") and r.headers.get("Range", "").startswith("bytes=")]
    closed = [(int(a), int(b) + 1) for a, b in pieces if b]  # the open-ended one is the probe
    assert closed and all(start > 0 for start, _ in closed), "bytes already on disk were fetched again"
    assert sum(end - start for start, end in closed) < len(data)
    record = json.loads((state / "output" / "downloaded_models.json").read_text())["downloads"][0]
    assert record["state"] == "done" and record["sha256"] == hashlib.sha256(data).hexdigest()
    status = json.loads((state / "status.json").read_text())
    assert (status["phase"], status["progress"]) == ("complete", {"current": 1, "total": 1, "percent": 100.0})


def test_get_takes_name_and_sha256_from_civitai_and_writes_a_token_free_script(upstream, tmp_path):
    root = make_comfy_root(tmp_path)
    state = tmp_path / "state"
    env = {**cli_env(upstream), "CIVITAI_API_KEY": "civ_secret_key"}
    proc = run_cli(["get", f"{upstream.base}/api/download/models/9100101", "--folder", "loras",
                    "--comfyui-root", str(root), "--state-dir", str(state)], env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert (root / "models" / "loras" / "fixture_tiny_lora.safetensors").is_file()
    record = json.loads((state / "output" / "downloaded_models.json").read_text())["downloads"][0]
    assert record["expected_sha256"] == hashlib.sha256(upstream.payload("tiny-lora")).hexdigest()
    script = state / "output" / "download_001_fixture_tiny_lora.safetensors.sh"
    assert "$CIVITAI_API_KEY" in script.read_text()
    for path in (state / "output").iterdir():
        assert "civ_secret_key" not in path.read_text(), path
    log_text = "".join(p.read_text() for p in (state / "log").glob("*.log"))
    assert "civ_secret_key" not in log_text and "download_done" in log_text


def test_get_with_a_wrong_sha256_fails_and_keeps_nothing(upstream, tmp_path):
    root = make_comfy_root(tmp_path)
    proc = run_cli(["get", f"{upstream.base}/api/download/models/9100101", "--folder", "loras",
                    "--name", "lora.safetensors", "--sha256", "0" * 64, "--comfyui-root", str(root),
                    "--state-dir", str(tmp_path / "state")], cli_env(upstream))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "sha256 mismatch: expected " + "0" * 64 in out
    assert list((root / "models" / "loras").iterdir()) == []


def test_download_command_fetches_what_resolutions_json_chose(upstream, tmp_path):
    root = make_comfy_root(tmp_path)
    state = tmp_path / "state"
    (state / "output").mkdir(parents=True)
    sha = hashlib.sha256(upstream.payload("tiny-lora")).hexdigest()
    (state / "output" / "resolutions.json").write_text(json.dumps([
        {"filename": "styles/tiny.safetensors", "source": "civitai", "expected_type": "loras", "sha256": sha,
         "download_url": f"{upstream.base}/api/download/models/9100101", "size": 1200144},
        {"filename": "gone.safetensors", "source": "not_found", "expected_type": "loras", "download_url": None},
    ]))
    proc = run_cli(["--download", "--comfyui-root", str(root), "--state-dir", str(state)], cli_env(upstream))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert (root / "models" / "loras" / "styles" / "tiny.safetensors").is_file()
    status = json.loads((state / "status.json").read_text())
    assert status["phase"] == "complete"
    assert status["data"]["overall"]["bytes_done"] == 1200144


def test_get_accepts_a_hugging_face_blob_link(upstream, tmp_path):
    root = make_comfy_root(tmp_path)
    link = f"{upstream.base}/comfy-fixer-fixtures/tiny-model/blob/main/fixture_hf_model.safetensors"
    proc = run_cli(["get", link, "--folder", "checkpoints", "--name", "tiny.bin", "--comfyui-root", str(root),
                    "--state-dir", str(tmp_path / "state")], cli_env(upstream))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert (root / "models" / "checkpoints" / "tiny.bin").stat().st_size == 1100000


def test_get_from_another_allowed_host_names_the_file_from_content_disposition(upstream, tmp_path):
    root = make_comfy_root(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "config.json").write_text(json.dumps({"download": {"extra_allowed_hosts": ["localhost"]}}))
    storage = f"{upstream.cdn_base}/storage/civitai:9100101?X-Amz-Signature=fake0-x"
    proc = run_cli(["get", storage, "--folder", "loras", "--comfyui-root", str(root), "--state-dir", str(state),
                    "--config", str(state / "config.json")],
                   cli_env(upstream))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert (root / "models" / "loras" / "fixture_tiny_lora.safetensors").is_file()

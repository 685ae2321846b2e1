"""A clean machine is the README: `pip install .` into a fresh venv (no test extras) runs the main job end to end.

Slow (a venv and an install, ~30-60 s with a warm pip cache), so one venv serves the module. The
install is from a copy of the checkout: building in place would leave build/ and *.egg-info behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream import payload_bytes
from tests.fake_upstream.api_routes import add_hf_repo
from tests.fake_upstream.file_routes import register_hf_file

pytestmark = pytest.mark.slow
REPO = "clean-machine/tiny-lora"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("clean")
    source = base / "ComfyFixerSmart"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "tests", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".venv"))
    env_dir = base / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
                       capture_output=True, text=True, timeout=900, env=_plain_env(base))
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"\nfresh venv + pip install .: {time.monotonic() - started:.0f} s")
    return env_dir


def _plain_env(home: Path, **extra: str) -> dict[str, str]:
    """What a new user's shell has: no PYTHONPATH pointing at the checkout, no developer settings."""
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "PIP_INDEX_URL", "PIP_CACHE_DIR") if k in os.environ}
    return {**keep, "HOME": str(home), **extra}


def test_the_install_holds_only_the_declared_dependencies(venv):
    # safetensors (and the numpy it imports) check downloads at run time; test tools are not installed.
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import safetensors, numpy"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import pytest"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'pytest'" in r.stderr
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_auto_in_a_fresh_venv_downloads_and_verifies_a_safetensors_file(venv, tmp_path, upstream):
    data = payload_bytes({"seed": "clean machine", "recipe": "safetensors", "n_values": 50_000})
    sha = hashlib.sha256(data).hexdigest()
    add_hf_repo(upstream, REPO, {"clean_lora.safetensors": (len(data), sha)})
    register_hf_file(upstream, REPO, "clean_lora.safetensors", data)
    root = make_comfy_root(tmp_path)
    hint = [{"name": "clean_lora.safetensors", "url": f"https://huggingface.co/{REPO}/resolve/main/clean_lora.safetensors",
             "hash": sha, "hash_type": "sha256", "directory": "loras"}]
    write_json(root / "user/default/workflows/w.json",
               make_workflow([node(1, "LoraLoader", ["clean_lora.safetensors", 1, 1], models=hint)]))
    r = subprocess.run([str(venv / "bin" / "comfy-fixer"), "--auto", "--yes", "--comfyui-root", str(root),
                        "--state-dir", str(tmp_path / "state")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=_plain_env(tmp_path, **upstream.env()))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert (root / "models/loras/clean_lora.safetensors").read_bytes() == data
    assert not list(root.rglob("*.part"))
    log = (tmp_path / "state" / "log").rglob("*.log")
    assert any('"verify"' in p.read_text() and sha in p.read_text() for p in log)


def test_the_tests_pass_from_a_checkout_named_like_a_github_zip_with_nothing_beside_it(tmp_path):
    """`ComfyFixerSmart-main` is no package name, and nothing outside the checkout is there to read."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    checkout = tmp_path / "ComfyFixerSmart-main"
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith("tests/e2e/node_modules/"):
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, checkout / rel)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cli_scan.py",
                        "tests/test_sources_civitai.py"],
                       cwd=checkout, capture_output=True, text=True, timeout=600, env=_plain_env(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "error" not in r.stdout.splitlines()[-1]

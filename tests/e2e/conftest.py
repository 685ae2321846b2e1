"""End-to-end fixtures: a real ComfyUI with this pack, the fake upstream, headless Chromium.

Opt-in. Without COMFYUI_DIR every test here is skipped with the reason (see it with `pytest -rs`).
Set up once with scripts/setup_e2e.sh, then:

    COMFYUI_DIR=/path/ComfyUI [COMFY_PYTHON=/path/venv/bin/python] \
    [COMFY_FRONTEND_ROOT=/path/comfyui_frontend_package/static] pytest tests/e2e -rs

COMFY_PYTHON defaults to $COMFYUI_DIR/../comfy-venv/bin/python (where setup_e2e.sh puts it).
Each test runs against the frontend ComfyUI pins and, when COMFY_FRONTEND_ROOT names a newer build,
against that one too. Screenshots and result.json go to tests/e2e/artifacts/<frontend>/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.comfyui_proc import ARTIFACTS, E2E, comfy_python, start_comfyui  # noqa: E402

NOT_SET = ("COMFYUI_DIR is not set: the end-to-end tests need a real ComfyUI checkout "
           "(set it up with scripts/setup_e2e.sh, then run with COMFYUI_DIR=/path/to/ComfyUI)")


def comfyui_dir() -> Path:
    value = os.environ.get("COMFYUI_DIR")
    if not value:
        pytest.skip(NOT_SET)
    path = Path(value).expanduser().resolve()
    # Opted in but not ready: say what is missing instead of skipping quietly.
    problems = []
    if not (path / "main.py").is_file():
        problems.append(f"{path} has no main.py (not a ComfyUI checkout)")
    if not Path(comfy_python(path)).exists():
        problems.append(f"no Python at {comfy_python(path)} (set COMFY_PYTHON or run scripts/setup_e2e.sh)")
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        problems.append("tests/e2e/node_modules/playwright-core is missing (run npm install in tests/e2e)")
    if not shutil.which("node"):
        problems.append("node is not installed")
    if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        problems.append("no /usr/bin/chromium (apt-get install chromium, or set CHROMIUM)")
    if problems:
        pytest.fail("e2e environment not ready: " + "; ".join(problems))
    return path


@pytest.fixture(scope="session")
def upstream():
    comfyui_dir()  # skip before starting anything
    from tests.fake_upstream import FakeUpstream

    up = FakeUpstream().start()
    serve_valid_hf_checkpoint(up)
    yield up
    up.stop()


HF_CHECKPOINT = "fixture_hf_model.safetensors"


def serve_valid_hf_checkpoint(up) -> None:
    """Serve a well-formed safetensors file as HF's fixture_hf_model.safetensors.

    The shared fixture's bytes (payload "tiny-hf-file") are a repeated string, not safetensors, so
    the pack rightly refuses them after download ("safetensors header length mismatch"). The two
    fixture repos get the same valid file instead, keeping the search result the fixture describes.
    """
    for repo, gated in (("comfy-fixer-fixtures/tiny-model", False), ("comfy-fixer-fixtures/gated-tiny", "manual")):
        data = serve_hf_safetensors(up, repo, HF_CHECKPOINT, "e2e hf checkpoint", gated=gated)
    up.state["e2e_hf_checkpoint"] = data


def serve_hf_safetensors(up, repo: str, path: str, seed: str, *, gated: bool | str = False) -> bytes:
    """Serve a valid ~1.1 MB safetensors file at `path` of HF `repo` (API entry and bytes); returns the bytes."""
    import hashlib

    from tests.fake_upstream import file_routes, payload_bytes
    from tests.fake_upstream.api_routes import add_hf_repo

    data = payload_bytes({"recipe": "safetensors-f16", "seed": seed, "n_values": 550_000})
    add_hf_repo(up, repo, {path: (len(data), hashlib.sha256(data).hexdigest())}, gated=gated)
    file_routes.register_hf_file(up, repo, path, data, gated=bool(gated))
    return data


FRONTENDS = ["pinned", "newest"]


@pytest.fixture(scope="module", params=FRONTENDS)
def frontend(request) -> tuple[str, str | None]:
    if request.param == "newest":
        root = os.environ.get("COMFY_FRONTEND_ROOT")
        if not root:
            pytest.skip("COMFY_FRONTEND_ROOT is not set: no newer frontend build to test against "
                        "(COMFY_FRONTEND_VERSION=1.58.1 scripts/setup_e2e.sh unpacks one)")
        return "newest", root
    return "pinned", None


@pytest.fixture(scope="module")
def comfy(frontend, upstream, tmp_path_factory):
    """A fresh ComfyUI per frontend, with files placed for the relink cases before it starts."""
    label, root = frontend
    shutil.rmtree(ARTIFACTS / label, ignore_errors=True)  # screenshots of this run only
    base = tmp_path_factory.mktemp(f"comfy-{label}")
    for rel, data in SEED_FILES.items():
        (base / "models" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "models" / rel).write_bytes(data)
    comfy = start_comfyui(comfyui_dir(), base, env=upstream.env(), front_end_root=root)
    comfy.label = label
    yield comfy
    comfy.stop()
    ARTIFACTS.joinpath(label).mkdir(parents=True, exist_ok=True)
    shutil.copy(comfy.log_path, ARTIFACTS / label / "comfyui.log")


# Files the user "already has" in other places: the relink cases of the flow.
SEED_FILES = {
    "checkpoints/fixture_vae.safetensors": b"vae bytes in the wrong folder\n" * 64,  # wrong folder
    "loras/style_lora.safetensors": b"a lora one folder up\n" * 64,  # same folder, other subfolder
}

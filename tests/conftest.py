"""Shared factories: a ComfyUI-style folder tree, workflows built from nodes, the fake upstream."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"  # every fixture the tests read lives in the checkout
OBJECT_INFO = DATA / "comfyui" / "object_info.json"
sys.path.insert(0, str(ROOT))
# Before anything imports huggingface_hub (its constants read this once): a developer's `hf auth login`
# token never reaches a test, in this process or the ones tests start.
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
# The per-user config folder (fixer.config.user_config_dir) of the developer is never read by a test.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="comfyfixer-test-config-")

from fixer.constants import CLIENT_HEADER  # noqa: E402
from fixer.host.host import StandaloneHost  # noqa: E402

# What the panel sends on every call (web/lib/api.js): test clients of the routes send it too.
PAGE_HEADERS = {CLIENT_HEADER: "panel"}


def make_comfy_root(base: Path, files: dict[str, bytes | str] | None = None) -> Path:
    """A ComfyUI-like folder: models/<folder>/... files (empty placeholders unless content given)."""
    root = base / "ComfyUI"
    for d in ("models/checkpoints", "models/loras", "models/vae", "models/text_encoders",
              "models/diffusion_models", "user/default/workflows", "custom_nodes"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# stand-in\n")
    (root / "folder_paths.py").write_text("# stand-in\n")
    for rel, content in (files or {}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def node(node_id: int, node_type: str, widgets: Any = None, mode: int = 0, **props: Any) -> dict:
    return {"id": node_id, "type": node_type, "mode": mode, "inputs": [], "outputs": [],
            "properties": props, "widgets_values": [] if widgets is None else widgets}


def make_workflow(nodes: list[dict], **extra: Any) -> dict:
    return {"id": "wf", "revision": 0, "last_node_id": len(nodes), "last_link_id": 0, "nodes": nodes,
            "links": [], "groups": [], "config": {}, "extra": extra.pop("extra", {}), "version": 0.4, **extra}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def comfy_root(tmp_path: Path) -> Path:
    return make_comfy_root(tmp_path)


@pytest.fixture
def object_info() -> dict:
    return json.loads(OBJECT_INFO.read_text())


@pytest.fixture
def host_for():
    def make(root: Path, object_info: dict | None = None) -> StandaloneHost:
        host = StandaloneHost.from_root(root)
        return host.with_object_info(object_info, "object_info") if object_info is not None else host
    return make


@pytest.fixture
def upstream(monkeypatch):
    """The fake Civitai + Hugging Face on 127.0.0.1, with the environment pointing at it."""
    from tests.fake_upstream import FakeUpstream

    with FakeUpstream() as up:
        for k, v in up.env().items():
            monkeypatch.setenv(k, v)
        yield up

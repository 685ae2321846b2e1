"""Real workflows nobody here wrote: the official templates (PyPI comfyui-workflow-templates-json)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from fixer.constants import map_legacy
from fixer.host.host import StandaloneHost
from fixer.read.inventory import build_inventory
from fixer.read.scan import scan_paths
from tests.conftest import make_comfy_root

TEMPLATES = Path(str(resources.files("comfyui_workflow_templates_json") / "templates"))


def _nodes(wf: dict):
    yield from wf.get("nodes") or []
    for sg in (wf.get("definitions") or {}).get("subgraphs") or []:
        yield from sg.get("nodes") or []


def embedded_truth() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(folder, name) of embedded models some node uses, and of those declared but never used."""
    used, declared = set(), set()
    for f in sorted(TEMPLATES.glob("*.json")):
        wf = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(wf, dict) or "nodes" not in wf:
            continue
        values, entries = set(), list(wf.get("models") or [])
        for n in _nodes(wf):
            wv = n.get("widgets_values")
            values |= {v for v in (wv.values() if isinstance(wv, dict) else wv or []) if isinstance(v, str)}
            entries += (n.get("properties") or {}).get("models") or []
        for e in entries:
            (used if e["name"] in values else declared).add((map_legacy(e["directory"]), e["name"]))
    return used, declared - used


@pytest.fixture(scope="module")
def truth():
    used, unused = embedded_truth()
    assert len(used) > 300  # the pinned package carries hundreds of embedded models
    return used, unused


def test_every_embedded_model_a_node_uses_is_missing_in_its_embedded_folder(tmp_path, truth):
    used, unused = truth
    report = scan_paths([str(TEMPLATES)], StandaloneHost.from_root(make_comfy_root(tmp_path)))
    missing = {(s.ref.folder, s.ref.name) for s in report.by_state("missing")}
    assert used <= missing
    assert {(s.ref.folder, s.ref.name) for s in report.by_state("unused")} == unused
    assert len(report.workflows) >= 640


def test_with_the_files_in_place_nothing_is_missing(tmp_path, truth):
    used, _ = truth
    root = make_comfy_root(tmp_path)
    host = StandaloneHost.from_root(root)
    folders = host.folders()
    for folder, name in used:
        target = Path(folders[folder][0] if folder in folders else root / "models" / folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    host = StandaloneHost.from_root(root)  # picks up folders created for custom-pack keys
    report = scan_paths([str(TEMPLATES)], host, build_inventory(host))
    assert not {(s.ref.folder, s.ref.name) for s in report.by_state("missing")} & used

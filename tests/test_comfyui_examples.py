"""Real workflows nobody here wrote: ComfyUI's own examples (github.com/comfyanonymous/ComfyUI_examples).

Opt-in: set COMFYUI_EXAMPLES_DIR to a checkout of that repository at the commit truth.json pins. Each file is
scanned as `comfy-fixer --scan` does (an empty ComfyUI folder, node types checked against the real 0.3.64
object_info) and compared with tests/data/comfyui_examples/truth.json, derived independently of the scan by
build_truth.py there. Each kind of miss is listed with the files it happened in.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from fixer.host.host import StandaloneHost
from fixer.models import ScanReport
from fixer.read.scan import scan_paths
from tests.conftest import make_comfy_root

DATA = Path(__file__).parent / "data"
TRUTH = json.loads((DATA / "comfyui_examples" / "truth.json").read_text(encoding="utf-8"))
NO_WORKFLOW = "no ComfyUI workflow is embedded"
Ref = tuple[str, str, str, str]  # (node type, input, value, folder)


@pytest.fixture(scope="module")
def examples() -> Path:
    where = os.environ.get("COMFYUI_EXAMPLES_DIR")
    if not where:
        pytest.skip(f"COMFYUI_EXAMPLES_DIR is not set: to run, point it at a checkout of {TRUTH['corpus']} "
                    f"at commit {TRUTH['commit']}")
    path = Path(where).expanduser()
    if not path.is_dir():
        pytest.fail(f"COMFYUI_EXAMPLES_DIR={where} is not a folder")
    if (path / ".git").exists():
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=False).stdout.strip()
        if head != TRUTH["commit"]:
            pytest.fail(f"{where} is at {head or 'an unknown commit'}; truth.json is for {TRUTH['commit']}: "
                        f"run `git -C {where} checkout {TRUTH['commit']}`")
    return path


@pytest.fixture(scope="module")
def report(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> ScanReport:
    host = StandaloneHost.from_root(make_comfy_root(tmp_path_factory.mktemp("comfy")))
    host.with_object_info(json.loads((DATA / "comfyui" / "object_info.json").read_text(encoding="utf-8")),
                          "object_info")
    return scan_paths([str(examples)], host)


def _files(examples: Path, **want: Any) -> dict[str, dict[str, Any]]:
    """truth.json's entries for the files present in the checkout, those with each `want` key's value."""
    return {rel: t for rel, t in TRUTH["files"].items()
            if (examples / rel).is_file() and all(t.get(k) == v for k, v in want.items())}


def _found(report: ScanReport) -> dict[str, dict[tuple[str, str, str], tuple[str, str | None, str]]]:
    """Per file: (node type, input, name or a name the node accepts) -> (name, folder, state)."""
    out: dict[str, dict[tuple[str, str, str], tuple[str, str | None, str]]] = defaultdict(dict)
    for status in report.models:
        ref = status.ref
        names = {ref.name, *ref.alternatives}
        for u in ref.usages:
            for name in names:
                out[u.workflow][(u.node_type, u.input_name or "", name)] = (ref.name, ref.folder, status.state)
    return out


def _summary(kinds: dict[str, list[str]], total: int) -> str:
    lines = [f"{len(v)} {kind} (of {total} references)" for kind, v in kinds.items() if v]
    for kind, rows in kinds.items():
        lines += [f"  {kind}: {r}" for r in rows]
    return "\n".join(lines)


def test_every_file_with_a_workflow_is_read_and_the_others_say_why(examples: Path, report: ScanReport) -> None:
    problems = {p.path: p.error for p in report.problems}
    with_workflow = _files(examples, workflow=True)
    refused = [f"{rel}: {problems[rel]}" for rel in with_workflow if rel in problems]
    unread = [rel for rel in with_workflow if rel not in report.workflows]
    without = _files(examples, workflow=False)
    unclear = [f"{rel}: {problems.get(rel, 'no message')}" for rel in without
               if NO_WORKFLOW not in problems.get(rel, "")]
    # Files the truth could not be derived for (absent from the copy it was built from): each is an example
    # workflow its README links, so it must at least be read.
    underived = [f"{rel}: {problems[rel]}" for rel, t in TRUTH["files"].items()
                 if "not_derived" in t and (examples / rel).is_file() and rel in problems]
    assert len(with_workflow) >= 100
    assert not (refused or unread or unclear or underived), _summary(
        {"refused": refused, "not read": unread, "without a clear message": unclear,
         "example not read": underived}, len(with_workflow))


def test_every_model_reference_is_found_in_the_folder_its_node_reads(examples: Path, report: ScanReport) -> None:
    found = _found(report)
    files = _files(examples, workflow=True)
    kinds: dict[str, list[str]] = {"missed": [], "wrong folder": [], "not missing": [], "false positive": []}
    total = 0
    for rel, t in files.items():
        mine = found.get(rel, {})
        expected = {(node_type, name, value) for node_type, name, value, _ in t["refs"]}
        for node_type, name, value, folder in t["refs"]:
            total += 1
            hit = mine.get((node_type, name, value))
            if hit is None:
                kinds["missed"].append(f"{rel}: {node_type}.{name} = {value!r} ({folder})")
            elif hit[1] != folder:
                kinds["wrong folder"].append(f"{rel}: {node_type}.{name} = {value!r} in {hit[1]}, not {folder}")
            elif hit[2] != "missing":
                kinds["not missing"].append(f"{rel}: {value!r} is {hit[2]} in an empty ComfyUI folder")
        for (node_type, name, value), (ref_name, folder, _) in mine.items():
            if value == ref_name and (node_type, name, value) not in expected \
                    and not any((node_type, name, alt) in expected for alt in _aliases(mine, ref_name)):
                kinds["false positive"].append(f"{rel}: {node_type}.{name} = {value!r} ({folder})")
    assert total >= 300
    assert not any(kinds.values()), _summary(kinds, total)


def _aliases(mine: dict[tuple[str, str, str], tuple[str, str | None, str]], ref_name: str) -> set[str]:
    """The names one reference is found under (a prompt's `embedding:x` is found as x.pt and x)."""
    return {value for (_, _, value), hit in mine.items() if hit[0] == ref_name}


def test_node_types_missing_are_those_the_real_comfyui_lacks(examples: Path, report: ScanReport) -> None:
    mine: dict[str, set[str]] = defaultdict(set)
    for n in report.missing_nodes:
        for u in n.usages:
            mine[u.workflow].add(n.node_type)
    kinds: dict[str, list[str]] = {"not reported": [], "reported wrongly": []}
    files = _files(examples, workflow=True)
    for rel, t in files.items():
        expected = set(t["missing_nodes"])
        kinds["not reported"] += [f"{rel}: {x}" for x in sorted(expected - mine[rel])]
        kinds["reported wrongly"] += [f"{rel}: {x}" for x in sorted(mine[rel] - expected)]
    assert not any(kinds.values()), _summary(kinds, sum(len(t["missing_nodes"]) for t in files.values()))

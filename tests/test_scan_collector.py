"""A CLI scan pauses Python's cyclic garbage collector while it reads each file (a parsed workflow is a tree
of thousands of containers the collector would walk over and over); so the scan must leave no reference
cycle behind, and never pause the collector from a thread other than the main one (a host's worker)."""

from __future__ import annotations

import gc
import json
import threading

from fixer.host.host import StandaloneHost
from fixer.read import scan as scan_module
from fixer.read.chains import attach_chains
from fixer.read.extract import extract
from fixer.read.scan import scan_paths
from tests.conftest import make_comfy_root
from tests.graphs import detailer_in_a_subgraph


def test_following_chains_through_subgraphs_leaves_no_cycle_for_the_collector():
    wf = detailer_in_a_subgraph().workflow()
    refs = extract("workflow", wf, "detailer.json").models
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        attach_chains("workflow", wf, refs)
        left = gc.collect()  # unreachable objects only a cycle kept alive
    finally:
        if was_enabled:
            gc.enable()
    assert left == 0
    lora = next(r for r in refs if r.name == "moss_glow.safetensors")
    assert lora.usages[0].anchors == (("checkpoints", "moonlit_merge_q.safetensors"),)


def test_the_collector_is_paused_per_file_on_the_main_thread_only(tmp_path, monkeypatch):
    folder = tmp_path / "workflows"
    folder.mkdir()
    for i in range(3):
        (folder / f"w{i}.json").write_text(json.dumps(detailer_in_a_subgraph().workflow()))
    host = StandaloneHost.from_root(make_comfy_root(tmp_path, {}))
    pauses: list[str] = []
    real_disable = gc.disable

    def disable() -> None:
        pauses.append(threading.current_thread().name)
        real_disable()

    monkeypatch.setattr(scan_module.gc, "disable", disable)
    report = scan_paths([str(folder)], host)
    assert len(report.workflows) == 3 and pauses == ["MainThread"] * 3
    assert gc.isenabled()  # given back after each file

    scanned: list[int] = []
    t = threading.Thread(target=lambda: scanned.append(len(scan_paths([str(folder)], host).workflows)),
                         name="host-worker")
    t.start()
    t.join()
    assert scanned == [3] and pauses == ["MainThread"] * 3 and gc.isenabled()

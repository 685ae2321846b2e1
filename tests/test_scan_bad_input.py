"""Bad input: each broken file is a clear per-file error, never a traceback, and the run goes on."""

from __future__ import annotations

from fixer.read.scan import scan_paths
from tests.conftest import make_workflow, node, write_json


def test_broken_files_are_listed_and_the_good_ones_still_scanned(tmp_path, comfy_root, host_for):
    d = tmp_path / "wfs"
    write_json(d / "good.json", make_workflow([node(1, "VAELoader", ["ok.safetensors"])]))
    (d / "malformed.json").write_text('{"nodes": [')
    (d / "not_a_workflow.json").write_text('{"hello": "world"}')
    (d / "list.json").write_text("[1, 2, 3]")
    (d / "latin1.json").write_bytes(b'{"nodes": [], "name": "caf\xe9"}')
    (d / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    (d / "deep.json").write_text("[" * 100000 + "]" * 100000)
    report = scan_paths([str(d)], host_for(comfy_root))
    errors = {p.path: p.error for p in report.problems}
    assert [s.ref.name for s in report.models] == ["ok.safetensors"]
    assert errors["malformed.json"].startswith("malformed JSON at line 1")
    assert "not a ComfyUI workflow" in errors["not_a_workflow.json"]
    assert "not a ComfyUI workflow" in errors["list.json"]
    assert "not UTF-8" in errors["latin1.json"]
    assert "truncated" in errors["truncated.png"]
    assert "nests too deeply" in errors["deep.json"]


def test_a_nonexistent_path_is_a_per_file_error(tmp_path, comfy_root, host_for):
    report = scan_paths([str(tmp_path / "nope.json")], host_for(comfy_root))
    assert "cannot read the file" in report.problems[0].error


def test_a_100000_node_workflow_is_scanned(tmp_path, comfy_root, host_for):
    nodes = [node(i, "LoraLoader", [f"lora_{i % 500}.safetensors", 1, 1]) for i in range(100_000)]
    write_json(tmp_path / "huge.json", make_workflow(nodes))
    report = scan_paths([str(tmp_path / "huge.json")], host_for(comfy_root))
    assert len(report.models) == 500
    assert sum(len(s.ref.usages) for s in report.models) == 100_000


def test_garbage_shapes_inside_a_workflow_do_not_crash(comfy_root, host_for):
    from fixer.read.scan import scan_workflow_data

    wf = {"nodes": [None, 1, "x", {"type": 5}, {"type": "VAELoader", "widgets_values": "notalist"},
                    {"type": "VAELoader", "widgets_values": [["nested"]], "properties": "bad"},
                    {"type": "LoraLoader", "widgets_values": {"lora_name": 7}}],
          "definitions": {"subgraphs": [None, {"id": 3}]}, "extra": {"groupNodes": {"g": None}},
          "models": [None, {"name": 5}, {"name": "m.safetensors", "directory": 9}]}
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    assert report.problems == []
    assert [(s.ref.name, s.state) for s in report.models] == [("m.safetensors", "unused")]

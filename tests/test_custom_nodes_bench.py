"""How benchmarks/custom_nodes_bench.py scores a scan report against the probed truth."""

from __future__ import annotations

from benchmarks.custom_nodes_bench import Score, score_workflow

WF = "pack/example.json"
TRUTH = {
    "folders": {
        "text_encoders": {"paths": ["models/text_encoders", "models/clip"], "exts": [".safetensors"]},
        "clip_gguf": {"paths": ["models/text_encoders", "models/clip"], "exts": [".gguf"]},
        "ultralytics": {"paths": ["models/ultralytics"], "exts": [".pt"]},
        "ultralytics_bbox": {"paths": ["models/ultralytics/bbox"], "exts": [".pt"]},
        "loras": {"paths": ["models/loras"], "exts": [".safetensors"]},
        "checkpoints": {"paths": ["models/checkpoints"], "exts": [".safetensors"]},
    },
    "input_folders": {"CLIPLoaderGGUF.clip_name": {"": "clip_gguf"},
                      "UltralyticsDetectorProvider.model_name": {"bbox/": "ultralytics_bbox"}},
    "workflows": {WF: {
        "references": [
            {"node": "1", "type": "CLIPLoaderGGUF", "input": "clip_name", "value": "t5.gguf", "folder": "clip_gguf"},
            {"node": "2", "type": "UltralyticsDetectorProvider", "input": "model_name",
             "value": "bbox/face.pt", "folder": "ultralytics_bbox"},
            {"node": "3", "type": "LoraLoader", "input": None, "value": "style", "folder": "loras"},
        ],
        "self_downloading": [{"node": "4", "type": "RIFE VFI", "input": "ckpt_name", "value": "rife47.pth"}],
        "unknown_node_types": ["NotInstalledLoader"],
    }},
}


def row(node, name, folder, *, state="missing", source="probe", node_type="X"):
    return {"name": name, "folder": folder, "source": source, "state": state, "node": node, "type": node_type,
            "input": None, "workflow": WF}


def scored(rows) -> Score:
    score = Score()
    score_workflow(score, WF, rows, TRUTH)
    return score


def test_a_reference_is_matched_by_node_and_name_without_extension():
    s = scored([row("3", "style.safetensors", "loras", source="prompt")])
    assert (s.refs, s.found, s.right) == (3, 1, 1)
    assert len(s.missed) == 2


def test_another_folder_key_naming_the_same_directory_is_the_right_folder():
    s = scored([row("1", "t5.gguf", "text_encoders"), row("2", "bbox/face.pt", "ultralytics")])
    assert s.right == 2 and s.wrong == []


def test_a_folder_that_is_another_directory_is_wrong():
    s = scored([row("3", "style.safetensors", "checkpoints", source="keyword")])
    assert s.right == 0 and len(s.wrong) == 1


def test_a_reference_reported_without_a_folder_counts_as_folder_unknown():
    s = scored([row("1", "t5.gguf", None, source="unknown")])
    assert (s.found, s.right, s.unknown) == (1, 0, 1)


def test_a_self_downloading_value_reported_missing_is_a_false_positive_but_by_node_is_not():
    assert len(scored([row("4", "rife47.pth", None)]).fp_self) == 1
    assert scored([row("4", "rife47.pth", None, state="by_node")]).fp_self == []


def test_prompt_text_reported_beyond_the_truth_is_a_prompt_false_positive():
    s = scored([row("9", "lazyneg.safetensors", "embeddings", source="prompt")])
    assert len(s.fp_prompt) == 1 and s.fp_other == []


def test_reports_on_node_types_that_are_not_installed_are_left_out():
    s = scored([row("7", "x.safetensors", "checkpoints", node_type="NotInstalledLoader")])
    assert s.fp_other == [] and s.found == 0


def test_a_reports_folder_is_read_under_the_seeds_key_expected_type():
    from benchmarks.custom_nodes_bench import usages

    report = {"models": [{"filename": "a.safetensors", "expected_type": "loras", "folder_source": "probe",
                          "state": "missing", "nodes": [{"node_id": 3, "node_type": "X", "input_name": "lora"}]}]}
    assert [(r["name"], r["folder"], r["node"]) for r in usages(report)] == [("a.safetensors", "loras", "3")]

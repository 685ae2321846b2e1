"""The Report node inside ComfyUI: the Download node's source spec is where a file comes from, not a
missing model."""

from __future__ import annotations

import pytest
from conftest import make_workflow, node
from test_nodes import comfy  # noqa: F401  (the fake ComfyUI with this pack's nodes loaded)

SPEC = "hf:comfy-fixer-fixtures/tiny-model/fixture_hf_model.safetensors"


@pytest.mark.parametrize("with_workflow", [False, True])
def test_report_never_lists_the_download_nodes_source_as_a_model(comfy, with_workflow):  # noqa: F811
    prompt = {"1": {"class_type": "ComfyFixerDownloadModel", "inputs": {"source": SPEC, "folder": "checkpoints"}},
              "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ["1", 0]}},
              "3": {"class_type": "LoraLoader", "inputs": {"lora_name": "gone.safetensors"}}}
    workflow = make_workflow([node(1, "ComfyFixerDownloadModel", [SPEC, "checkpoints", "", ""]),
                              node(2, "CheckpointLoaderSimple", []), node(3, "LoraLoader", ["gone.safetensors", 1, 1])])
    extra = {"workflow": workflow} if with_workflow else None
    text = comfy.Report().report(prompt=prompt, extra_pnginfo=extra)["result"][0]
    assert "fixture_hf_model" not in text and "hf:" not in text
    assert "Models: 1 needed, 1 missing" in text and "[missing] loras/gone.safetensors" in text
    assert "[ok] ComfyFixerDownloadModel" in text

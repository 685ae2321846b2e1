"""The utility nodes, run as ComfyUI runs them (fake ComfyUI modules, the fake upstream, a temp tree)."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys

import pytest
from conftest import make_workflow, node
from fake_comfy import PACK_DIR, install_comfy, make_comfy_utils

TINY_LORA = "fixture_tiny_lora.safetensors"  # Civitai version 9100101, payload "tiny-lora"


@pytest.fixture
def comfy(monkeypatch, comfy_root):
    server = install_comfy(monkeypatch, comfy_root)
    comfy_mod, utils, updates = make_comfy_utils()
    monkeypatch.setitem(sys.modules, "comfy", comfy_mod)
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    import server_routes

    # As __init__.py does inside ComfyUI: the nodes reach ComfyUI's objects through the runtime.
    monkeypatch.setattr(server_routes.comfy_runtime, "_links", server_routes.comfy_links(server.PromptServer.instance))
    spec = importlib.util.spec_from_file_location("comfyfixer_nodes_under_test", PACK_DIR / "nodes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.progress_updates = updates
    return mod


def lora_sha256(up) -> str:
    return up.payloads["tiny-lora"]["hashes"]["SHA256"].lower()


def test_folder_choices_are_comfyuis_model_folders(comfy):
    inputs = comfy.DownloadModel.INPUT_TYPES()
    folders, options = inputs["required"]["folder"]
    assert "loras" in folders and "diffusion_models" in folders
    assert "custom_nodes" not in folders and "configs" not in folders  # never offered: the node refuses them
    assert options["default"] == "checkpoints"
    assert set(inputs["optional"]) == {"file_name", "sha256"}


def test_bad_source_is_refused_before_the_graph_runs(comfy):
    assert "civitai:<versionId>" in comfy.DownloadModel.VALIDATE_INPUTS("not a source")
    assert comfy.DownloadModel.VALIDATE_INPUTS("civitai:9100101") is True
    assert comfy.DownloadModel.VALIDATE_INPUTS(None) is True  # linked input: checked at run time


def test_file_name_output_links_into_a_loader_combo(comfy):
    # ComfyUI 0.3.x validate_node_input: `not received_type != input_type` must hold for a COMBO list.
    combo = ["a.safetensors", "b.safetensors"]
    assert not (comfy.DownloadModel.RETURN_TYPES[0] != combo)


async def test_civitai_source_downloads_into_the_folder_with_progress(comfy, comfy_root, upstream):
    import folder_paths

    folder_paths.filename_list_cache["loras"] = ([], {}, 0.0)
    (out,) = await comfy.DownloadModel().fetch("civitai:9100101", "loras")
    assert out == TINY_LORA
    target = comfy_root / "models" / "loras" / TINY_LORA
    assert hashlib.sha256(target.read_bytes()).hexdigest() == lora_sha256(upstream)
    assert "loras" not in folder_paths.filename_list_cache
    last = comfy.progress_updates[-1] if comfy.progress_updates else None
    assert last is not None and last[0] == last[1] == target.stat().st_size


async def test_present_file_is_not_fetched_again(comfy, comfy_root, upstream):
    (comfy_root / "models" / "loras" / "mine.safetensors").write_bytes(b"x")
    (out,) = await comfy.DownloadModel().fetch("civitai:9100101", "loras", "mine.safetensors")
    assert out == "mine.safetensors"
    assert upstream.requests == []


async def test_hf_source_lands_under_a_given_subfolder_name(comfy, comfy_root, upstream):
    from fake_upstream.file_routes import register_hf_file

    register_hf_file(upstream, "me/tiny", "weights/tiny.safetensors", upstream.payload("tiny-lora"))
    (out,) = await comfy.DownloadModel().fetch("hf:me/tiny/weights/tiny.safetensors", "unet", "flux/tiny.safetensors",
                                               lora_sha256(upstream))
    assert out == "flux/tiny.safetensors"
    # "unet" is the legacy name of diffusion_models, whose first path is models/unet.
    assert (comfy_root / "models" / "unet" / "flux" / "tiny.safetensors").is_file()


async def test_wrong_sha256_fails_the_node_and_keeps_nothing(comfy, comfy_root, upstream):
    from fixer.errors import DownloadError

    with pytest.raises(DownloadError, match="mismatch"):
        await comfy.DownloadModel().fetch("civitai:9100101", "loras", "", "0" * 64)
    assert list((comfy_root / "models" / "loras").iterdir()) == []


@pytest.mark.parametrize("source,name", [("hf:comfy-fixer-fixtures/hostile-files/evil.py", ""),
                                         ("civitai:9100666", ""), ("civitai:9100101", "run.sh")])
async def test_a_download_node_never_writes_a_script_into_a_model_folder(comfy, comfy_root, upstream, source, name):
    from fixer.errors import UnsafeFileType

    with pytest.raises(UnsafeFileType, match="is not a type this folder lists"):
        await comfy.DownloadModel().fetch(source, "loras", name)
    assert list((comfy_root / "models" / "loras").iterdir()) == []


async def test_unknown_folder_is_refused(comfy):
    from fixer.errors import ConfigError

    with pytest.raises(ConfigError, match="no model folder 'ipadapter'"):
        await comfy.DownloadModel().fetch("civitai:9100101", "ipadapter")


def test_is_changed_follows_the_target_file(comfy, comfy_root):
    changed = comfy.DownloadModel.IS_CHANGED
    assert math.isnan(changed("hf:a/b/x.safetensors", "loras"))
    target = comfy_root / "models" / "loras" / "x.safetensors"
    target.write_bytes(b"one")
    first = changed("hf:a/b/x.safetensors", "loras")
    assert first == changed("hf:a/b/x.safetensors", "loras")
    target.write_bytes(b"second")
    assert changed("hf:a/b/x.safetensors", "loras") != first


def test_report_lists_models_and_node_types_with_their_state(comfy, comfy_root):
    (comfy_root / "models" / "checkpoints" / "base.safetensors").write_bytes(b"x")
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
              "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "gone.safetensors", "model": ["1", 0],
                                                           "clip": ["1", 1], "strength_model": 1.0,
                                                           "strength_clip": 1.0}}}
    workflow = make_workflow([node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                              node(2, "LoraLoader", ["gone.safetensors", 1.0, 1.0]),
                              node(3, "SomePackNode", [], mode=2, cnr_id="some-pack")])
    out = comfy.Report().report(prompt=prompt, extra_pnginfo={"workflow": workflow})
    text = out["result"][0]
    assert out["ui"]["text"] == [text]
    assert "Models: 2 needed, 1 present, 1 missing" in text
    assert "[present] checkpoints/base.safetensors" in text
    assert "[missing] loras/gone.safetensors  (node 2 LoraLoader.lora_name)" in text
    assert "[ok] CheckpointLoaderSimple" in text and "[ok] LoraLoader" in text
    assert "[missing] SomePackNode  (nodes 3)  pack: some-pack" in text


def test_report_from_an_api_prompt_alone(comfy):
    prompt = {"5": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "absent.safetensors"}}}
    text = comfy.Report().report(prompt=prompt)["result"][0]
    assert "[missing] checkpoints/absent.safetensors" in text and "[ok] CheckpointLoaderSimple" in text


def test_report_of_a_graph_that_needs_no_model_says_so(comfy):
    prompt = {"1": {"class_type": "KSampler", "inputs": {}}}
    text = comfy.Report().report(prompt=prompt)["result"][0]
    assert text.splitlines()[0] == "Models: 0 needed"


async def test_civitai_source_is_not_asked_again_once_its_file_is_there(comfy, upstream):
    await comfy.DownloadModel().fetch("civitai:9100101", "loras")
    assert TINY_LORA in comfy.DownloadModel.IS_CHANGED("civitai:9100101", "loras")  # the file, not NaN
    upstream.clear()
    (out,) = await comfy.DownloadModel().fetch("civitai:9100101", "loras")
    assert out == TINY_LORA and upstream.requests == []

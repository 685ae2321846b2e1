"""`comfy-fixer --resolve`: resolutions.json in the file contract schema, written without downloading anything."""

from __future__ import annotations

import json

from fixer.app.cli import main
from tests.conftest import make_comfy_root, make_workflow, node, write_json


def test_resolve_writes_seed_schema_and_portable_copy(upstream, tmp_path, capsys):
    root = make_comfy_root(tmp_path)
    wf = write_json(root / "user/default/workflows/wf.json", make_workflow([
        node(1, "CLIPLoader", ["clip_l.safetensors", "flux"]),
        node(2, "LoraLoader", ["fixture_tiny_lora.safetensors", 1.0, 1.0]),
        node(3, "LoraLoader", ["zz_no_such_lora_anywhere.safetensors", 1.0, 1.0]),
    ]))
    state = tmp_path / "state"
    code = main(["--resolve", "--portable", "--comfyui-root", str(root), "--workflow", str(wf),
                 "--state-dir", str(state)])
    assert code == 1  # one model has no source
    rows = {r["filename"]: r for r in json.loads((state / "output" / "resolutions.json").read_text())}
    # `source` is where the bytes come from; how the link was found is `found_by`
    assert rows["clip_l.safetensors"]["source"] == "huggingface"
    assert rows["clip_l.safetensors"]["found_by"] == "catalog"
    assert rows["clip_l.safetensors"]["expected_type"] == "text_encoders"
    assert rows["fixture_tiny_lora.safetensors"]["source"] == "civitai"
    assert rows["fixture_tiny_lora.safetensors"]["ids"]["version_id"] == 9100101
    assert rows["fixture_tiny_lora.safetensors"]["download_url"].endswith("/api/download/models/9100101")
    nf = rows["zz_no_such_lora_anywhere.safetensors"]
    assert nf["source"] == "not_found" and nf["download_url"] is None and nf["tried"]
    assert not [r for r in upstream.requests if "/api/download/" in r.path_qs or "/resolve/" in r.path_qs]
    portable = json.loads((state / "output" / "portable" / "wf.portable.json").read_text())
    assert {m["name"] for m in portable["models"]} == {"clip_l.safetensors", "fixture_tiny_lora.safetensors"}
    assert (state / "log" / "search_history.log").exists()
    assert "2 of 3 missing model(s) have a source" in capsys.readouterr().out

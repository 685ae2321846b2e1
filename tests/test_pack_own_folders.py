"""A folder a node pack reads under models/ itself, without registering it (BrushNet lists models/inpaint):
a file its loader wants goes there, created by the download, as the pack expects.

Only a folder learned from an installed pack's definition counts; a workflow's `directory` or a keyword guess
naming a folder ComfyUI does not have is still refused with what to install.
"""

from __future__ import annotations

import hashlib
import os

from fixer.app.application import Application
from fixer.config import Config
from fixer.host.folder_probe import folder_map_of
from fixer.host.host import StandaloneHost, target_root, with_pack_folders
from fixer.host.static_folders import read_pack
from fixer.models import ModelRef, ModelStatus
from tests.conftest import make_comfy_root, make_workflow, node, write_json
from tests.test_cli_auto import run_auto
from tests.test_static_folders import write_pack

# A folder the pack lists itself under models/, as many packs do (BrushNet through a helper, others inline).
OWN_FOLDER_PACK = {"nodes.py": """
    import os
    import folder_paths

    class PaintLoader:
        @classmethod
        def INPUT_TYPES(s):
            own = os.path.join(folder_paths.models_dir, "inpaint")
            return {"required": {"paint": (sorted(os.listdir(own)) if os.path.isdir(own) else [],)}}

    NODE_CLASS_MAPPINGS = {"PaintLoader": PaintLoader}
"""}


def test_a_folder_a_pack_lists_itself_under_models_is_read_as_that_folder(tmp_path):
    """Fails on 3ac7c4e (folder unknown): `os.listdir(os.path.join(folder_paths.models_dir, "luts"))` in
    INPUT_TYPES. A legacy directory (models/clip is text_encoders' second place, where a download would not go)
    and a deeper subfolder (names the node joins to models/tensorrt/rife) stay unknown rather than wrong."""
    defs = read_pack(write_pack(tmp_path, "own-folders", {"nodes.py": """
        import os
        import folder_paths

        class OwnFolders:
            @classmethod
            def INPUT_TYPES(cls):
                luts = os.path.join(folder_paths.models_dir, "luts")
                return {"required": {
                    "lut_file": (os.listdir(luts), {"default": "Cinematic.cube"}),
                    "font": (["None"] + os.listdir(os.path.join(folder_paths.models_dir, "fonts")),),
                    "clip": (os.listdir(os.path.join(folder_paths.models_dir, "clip")),),
                    "engine": (os.listdir(os.path.join(folder_paths.models_dir, "tensorrt", "rife")),)}}

        NODE_CLASS_MAPPINGS = {"OwnFolders": OwnFolders}
    """}))
    fm = folder_map_of(defs["OwnFolders"])
    assert fm is not None
    assert [fm.locate(i, "a.safetensors") for i in ("lut_file", "font", "clip", "engine")] == [
        ("luts", "a.safetensors"), ("fonts", "a.safetensors"), None, None]


def test_a_folder_nothing_registers_is_added_under_models_only_as_a_plain_key(tmp_path):
    models = str(tmp_path / "models")
    registered = {"loras": [str(tmp_path / "elsewhere/loras")]}
    out = with_pack_folders(registered, models, ["inpaint", "loras", "../up", "custom_nodes", "a/b", "", "clip"])
    assert out == {**registered, "inpaint": [os.path.join(models, "inpaint")]}
    assert with_pack_folders(registered, None, ["inpaint"]) == registered  # models/ unknown: nothing added


def test_only_a_folder_learned_from_a_pack_gets_a_destination(tmp_path):
    """Fails on 259e5ad: a pack's own unregistered folder had no destination (the fix refused it)."""
    root = make_comfy_root(tmp_path)
    app = Application(tmp_path / "state", Config(), StandaloneHost.from_root(root), comfyui_root=root)
    ref = ModelRef(name="brushnet/x.safetensors", folder="inpaint", folder_source="static")
    from_pack = ModelStatus(ref, "missing")
    assert app.dest_of(from_pack, app.host.folders()) == str(root / "models" / "inpaint" / "brushnet" / "x.safetensors")
    for said_by in ("hint", "keyword"):  # a workflow's word or a guess: ComfyUI has no such folder, refused
        other = ModelStatus(ModelRef(name="x.safetensors", folder="inpaint", folder_source=said_by), "missing")
        assert app.dest_of(other, app.host.folders()) is None
    assert target_root(app.write_folders([from_pack.ref]), "inpaint") == str(root / "models" / "inpaint")


def test_auto_downloads_into_the_folder_a_pack_reads_itself(tmp_path, upstream):
    """Fails on 3ac7c4e: "ComfyUI has no model folder 'inpaint': ... install the node pack that registers it"
    while the pack was installed and lists models/inpaint itself (on 259e5ad for BrushNet's helper pattern)."""
    root = make_comfy_root(tmp_path)
    write_pack(root, "paint-pack", OWN_FOLDER_PACK)
    lora = upstream.payloads["tiny-lora"]
    wf = make_workflow([node(1, "PaintLoader", [lora["filename"]], models=[
        {"name": lora["filename"], "url": "https://civitai.com/api/download/models/9100101",
         "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "inpaint"}])])
    write_json(root / "user/default/workflows/w.json", wf)
    assert not (root / "models/inpaint").exists()

    r = run_auto(root, tmp_path / "state", upstream.env(), "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    landed = root / "models/inpaint" / lora["filename"]
    assert hashlib.sha256(landed.read_bytes()).hexdigest().upper() == lora["hashes"]["SHA256"]
    # Once there, the scan finds it where the pack reads it: nothing left to fetch.
    again = run_auto(root, tmp_path / "state", upstream.env(), "--yes")
    assert again.returncode == 0 and "missing: 0" in again.stdout, again.stdout

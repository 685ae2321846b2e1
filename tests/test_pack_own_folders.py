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
from fixer.host.host import StandaloneHost, target_root, with_pack_folders
from fixer.models import ModelRef, ModelStatus
from tests.conftest import make_comfy_root, make_workflow, node, write_json
from tests.test_cli_auto import run_auto
from tests.test_static_folders import write_pack

# BrushNet's way: the folder from folder_paths when registered, else models/<name> itself.
OWN_FOLDER_PACK = {"nodes.py": """
    import os
    import folder_paths

    def files_in(folder_name):
        try:
            dirs = folder_paths.get_folder_paths(folder_name)
        except KeyError:
            dirs = [os.path.join(folder_paths.models_dir, folder_name)]
        found = {}
        for d in dirs:
            for f in os.listdir(d) if os.path.isdir(d) else []:
                found[f] = d
        return found

    class PaintLoader:
        @classmethod
        def INPUT_TYPES(self):
            self.paint_files = files_in("inpaint")
            return {"required": {"paint": ([f for f in self.paint_files],)}}

    NODE_CLASS_MAPPINGS = {"PaintLoader": PaintLoader}
"""}


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
    assert app.dest_of(from_pack) == str(root / "models" / "inpaint" / "brushnet" / "x.safetensors")
    for said_by in ("hint", "keyword"):  # a workflow's word or a guess: ComfyUI has no such folder, refused
        other = ModelStatus(ModelRef(name="x.safetensors", folder="inpaint", folder_source=said_by), "missing")
        assert app.dest_of(other) is None
    assert target_root(app.write_folders([from_pack.ref]), "inpaint") == str(root / "models" / "inpaint")


def test_auto_downloads_into_the_folder_a_pack_reads_itself(tmp_path, upstream):
    """Fails on 259e5ad: "ComfyUI has no model folder 'inpaint': ... install the node pack that registers it"
    while the pack was installed and reads models/inpaint itself."""
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

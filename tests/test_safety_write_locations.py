"""Write locations come only from ComfyUI's registered model folders, on every path that writes a file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixer.app.run import FixRun
from fixer.app.service import FixerService
from fixer.config import Config
from fixer.errors import UnsafePath
from fixer.events import EventBus
from fixer.host.host import FolderPathsHost, StandaloneHost, model_folders, target_root, write_location_reason
from fixer.models import Candidate, ModelRef
from fixer.read.scan import scan_workflow_data
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_comfy import make_folder_paths

# Directory hints a shared workflow can carry to make a download land where Python runs it.
HOSTILE_DIRECTORIES = [
    "../venv/lib/python3.11/site-packages", "../../python_embeded/Lib/site-packages", "../../x", "/tmp/x",
    "..\\..\\x", "loras/../../x", "C:\\x", "c:x", "//server/share", "custom_nodes", "configs", "loras/./x",
    "loras//x", "",
]


@pytest.fixture
def folders(comfy_root: Path) -> dict[str, list[str]]:
    return StandaloneHost.from_root(comfy_root).folders()


def snapshot(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")}


@pytest.mark.parametrize("directory", HOSTILE_DIRECTORIES)
def test_target_root_refuses_every_directory_that_is_not_a_model_folder(folders, directory):
    with pytest.raises(UnsafePath) as e:
        target_root(folders, directory)
    assert "Refusing to write into" in str(e.value)


def test_target_root_accepts_a_registered_key_a_legacy_key_and_a_plain_subfolder(comfy_root, folders):
    models = os.path.realpath(comfy_root / "models")
    assert target_root(folders, "loras") == os.path.join(models, "loras")
    assert target_root(folders, "loras/sdxl") == os.path.join(models, "loras", "sdxl")
    assert target_root(folders, "clip") == os.path.join(models, "text_encoders")  # legacy key, mapped
    assert target_root(folders, "unet") == os.path.join(models, "unet")  # diffusion_models' first path


def test_an_unknown_folder_is_refused_naming_it_and_what_to_do_instead_of_invented(comfy_root, folders):
    with pytest.raises(UnsafePath) as e:
        target_root(folders, "ipadapter")
    assert "no model folder 'ipadapter'" in str(e.value) and "install the node pack" in str(e.value)
    assert not (comfy_root / "models" / "ipadapter").exists()


def test_a_subfolder_that_is_a_symlink_out_of_the_folder_is_refused(comfy_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (comfy_root / "models" / "loras" / "sdxl").symlink_to(outside, target_is_directory=True)
    folders = StandaloneHost.from_root(comfy_root).folders()
    assert "through a symlink" in write_location_reason(folders, "loras/sdxl")
    with pytest.raises(UnsafePath):
        target_root(folders, "loras/sdxl")


def test_non_model_keys_are_never_model_folders(folders):
    fp = make_folder_paths(Path("/nowhere"))
    assert "custom_nodes" in fp.folder_names_and_paths
    fp.folder_names_and_paths["configs"] = (["/nowhere/models/configs"], {".yaml"})
    assert not {"custom_nodes", "configs"} & set(model_folders(FolderPathsHost(fp).folders()))
    assert "configs" in folders and "configs" not in model_folders(folders)


def hinted_lora(name: str, directory: str, node_type: str = "SomePackLoader") -> dict:
    hint = {"name": name, "url": "https://huggingface.co/attacker/repo/resolve/main/" + name, "directory": directory}
    return node(1, node_type, [name], models=[hint])


@pytest.mark.parametrize("directory", HOSTILE_DIRECTORIES[:-1])
def test_a_reference_whose_workflow_names_a_foreign_directory_is_unsafe(comfy_root, directory):
    wf = make_workflow([hinted_lora("zz_fix.pth", directory)])
    report = scan_workflow_data(wf, "wf.json", StandaloneHost.from_root(comfy_root))
    (status,) = report.models
    assert status.state == "unsafe"
    assert repr(directory) in status.ref.unsafe_reason


def test_a_hostile_directory_beside_a_core_loader_still_makes_the_reference_unsafe(comfy_root):
    wf = make_workflow([hinted_lora("zz_fix.pth", "../venv/lib/python3.11/site-packages", "CheckpointLoaderSimple")])
    (status,) = scan_workflow_data(wf, "wf.json", StandaloneHost.from_root(comfy_root)).models
    assert status.state == "unsafe"


def test_a_folder_key_this_comfyui_lacks_stays_missing_in_it(comfy_root):
    """Official templates name newer ComfyUI's folders: reported missing there; a fix refuses the write."""
    wf = make_workflow([hinted_lora("upscaler.safetensors", "latent_upscale_models")])
    (status,) = scan_workflow_data(wf, "wf.json", StandaloneHost.from_root(comfy_root)).models
    assert (status.state, status.ref.folder) == ("missing", "latent_upscale_models")


def test_a_registered_folder_with_a_plain_subfolder_is_honoured(comfy_root):
    wf = make_workflow([hinted_lora("style.safetensors", "loras/sdxl")])
    (status,) = scan_workflow_data(wf, "wf.json", StandaloneHost.from_root(comfy_root)).models
    assert (status.state, status.ref.folder) == ("missing", "loras/sdxl")


def run_fix(root: Path, state: Path, candidate: Candidate, folder: str | None) -> dict:
    ref = ModelRef("zz_fix.pth", folder)
    run = FixRun([ref], config=Config(), secrets={}, bus=EventBus(), folders=StandaloneHost.from_root(root).folders(),
                 inventory=None, state_dir=state, chosen={ref.name: candidate})
    return asyncio.run(run.run())


@pytest.mark.parametrize("folder", ["custom_nodes", "../../x", "ipadapter"])
def test_a_fix_run_fails_the_row_and_writes_nothing_for_a_foreign_folder(tmp_path, folder):
    root = make_comfy_root(tmp_path)
    before = snapshot(root)
    c = Candidate("embedded", "zz_fix.pth", folder, 1.0, "workflow", url="http://127.0.0.1:9/zz_fix.pth")
    data = run_fix(root, tmp_path / "state", c, folder)
    (row,) = data["models"]
    assert row["state"] == "failed" and "Refusing to write into" in row["error"]["message"]
    assert snapshot(root) == before


def test_a_local_copy_is_never_relinked_into_a_foreign_folder(tmp_path):
    root = make_comfy_root(tmp_path, {"models/loras/mine.safetensors": "mine"})
    before = snapshot(root)
    c = Candidate("local", "mine.safetensors", "custom_nodes", 1.0, "on disk",
                  local_path=str(root / "models/loras/mine.safetensors"))
    (row,) = run_fix(root, tmp_path / "state", c, "custom_nodes")["models"]
    assert row["state"] == "failed"
    assert snapshot(root) == before


@pytest.mark.parametrize("folder", ["custom_nodes", "configs", "../../x", "loras/../../x"])
def test_panel_relink_refuses_a_foreign_folder(tmp_path, folder):
    root = make_comfy_root(tmp_path, {"models/loras/mine.safetensors": "mine"})
    svc = FixerService(StandaloneHost.from_root(root), tmp_path / "state", comfyui_root=root)
    before = snapshot(root)
    with pytest.raises(UnsafePath):
        asyncio.run(svc.relink(make_workflow([node(1, "LoraLoader", ["copy.safetensors", 1, 1])]), "wf.json",
                               "copy.safetensors", folder, str(root / "models/loras/mine.safetensors")))
    assert snapshot(root) == before


def test_download_node_refuses_a_non_model_folder(tmp_path):
    import nodes as pack_nodes

    root = make_comfy_root(tmp_path)
    fp = make_folder_paths(root)
    before = snapshot(root)
    with pytest.raises(UnsafePath):
        asyncio.run(pack_nodes.fetch_model("hf:attacker/repo/zz_fix.pth", "custom_nodes", "", "", fp))
    assert snapshot(root) == before


def cli(root: Path, state: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fixer", *args, "--comfyui-root", str(root),
                           "--state-dir", str(state)], env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


def test_auto_with_only_refused_references_downloads_nothing_and_exits_1(tmp_path):
    root = make_comfy_root(tmp_path)
    write_json(root / "user/default/workflows/w.json",
               make_workflow([hinted_lora("zz_fix.pth", "../venv/lib/python3.11/site-packages")]))
    before = snapshot(root)
    r = cli(root, tmp_path / "state", "--auto", "--yes")
    assert r.returncode == 1 and "1 refused reference(s)" in r.stdout, r.stdout + r.stderr
    assert snapshot(root) == before


def test_get_refuses_a_folder_that_is_not_a_model_folder(tmp_path):
    root = make_comfy_root(tmp_path)
    before = snapshot(root)
    r = cli(root, tmp_path / "state", "get", "hf:attacker/repo/zz_fix.pth", "--folder", "custom_nodes")
    assert r.returncode == 2 and "Refusing to write into 'custom_nodes'" in r.stderr
    assert "Traceback" not in r.stderr and snapshot(root) == before


def test_download_from_a_tampered_resolutions_file_refuses_that_entry_and_fetches_the_rest(tmp_path, upstream):
    root = make_comfy_root(tmp_path)
    state = tmp_path / "state"
    lora = upstream.payloads["tiny-lora"]
    write_json(state / "output/resolutions.json", [
        {"filename": "zz_fix.pth", "source": "huggingface", "expected_type": "../venv/lib/python3.11/site-packages",
         "download_url": f"{upstream.base}/api/download/models/9100101"},
        {"filename": lora["filename"], "source": "civitai", "expected_type": "loras",
         "download_url": f"{upstream.base}/api/download/models/9100101", "sha256": lora["hashes"]["SHA256"].lower()}])
    before = snapshot(tmp_path)
    r = cli(root, state, "--download", env=upstream.env())
    assert r.returncode == 1 and "Refusing to write into" in r.stdout and "Traceback" not in r.stderr
    assert (root / "models/loras" / lora["filename"]).is_file()
    new = snapshot(tmp_path) - before
    assert {p for p in new if not p.startswith(("state", "ComfyUI/models/loras/"))} == set()


def test_resume_ignores_the_write_location_a_tampered_record_carries(tmp_path):
    root = make_comfy_root(tmp_path)
    state = tmp_path / "state"
    elsewhere = tmp_path / "venv/site-packages"
    write_json(state / "output/downloaded_models.json", {"downloads": [
        {"name": "zz_fix.pth", "filename": "zz_fix.pth", "folder": "custom_nodes", "state": "failed",
         "dest_root": str(elsewhere), "url": "http://127.0.0.1:9/zz_fix.pth"}]})
    r = cli(root, state, "--resume")
    assert r.returncode == 1 and "Refusing to write into 'custom_nodes'" in r.stdout
    assert not elsewhere.exists() and "Traceback" not in r.stderr


def test_a_file_in_a_folder_only_an_uninstalled_pack_registers_is_present_inside_comfyui(tmp_path):
    root = make_comfy_root(tmp_path, {"models/ipadapter/ip.safetensors": "x"})
    host = FolderPathsHost(make_folder_paths(root))  # the pack that registers 'ipadapter' is not loaded
    wf = make_workflow([hinted_lora("ip.safetensors", "ipadapter", "IPAdapterModelLoader")])
    (status,) = scan_workflow_data(wf, "wf.json", host).models
    assert (status.state, status.local.path) == ("present", str(root / "models/ipadapter/ip.safetensors"))


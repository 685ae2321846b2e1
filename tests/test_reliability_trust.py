"""Issue 17, the seams a stranger reaches through what we are told: a pasted or resolved file's type, a
download that never ends, and the pack a workflow claims. Each case is hostile on purpose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixer.app.service import FixerService
from fixer.errors import UnsafeFileType
from fixer.host.host import StandaloneHost, file_type_reason, target_root
from tests.conftest import make_workflow, node


def service(root: Path, state: Path) -> FixerService:
    return FixerService(StandaloneHost.from_root(root), state, comfyui_root=root)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- a file type the folder does not list


@pytest.mark.parametrize("link", ["hf:comfy-fixer-fixtures/hostile-files/evil.py", "civitai:9100666"])
async def test_a_pasted_script_is_refused_before_anything_is_written(comfy_root, tmp_path, upstream, link):
    svc = service(comfy_root, tmp_path / "state")
    before = files_under(comfy_root / "models")
    wf = make_workflow([node(1, "LoraLoader", ["my_lora.safetensors", 1.0, 1.0])])
    with pytest.raises(UnsafeFileType) as e:
        await svc.paste_link(wf, "shared", "my_lora.safetensors", link)
    assert e.value.code == "unsafe_file_type"
    assert "'evil.py'" in str(e.value) and "a .py file is not a type this folder lists" in str(e.value)
    assert svc._task is None  # no run started
    assert files_under(comfy_root / "models") == before


@pytest.mark.parametrize("name", ["evil.py", "sub/run.sh", "tool.exe", "x.safetensors.bat", "noext", "a.SAFETENSORS.pyc"])
def test_every_write_location_refuses_a_file_type_the_folder_does_not_list(comfy_root, name):
    host = StandaloneHost.from_root(comfy_root)
    with pytest.raises(UnsafeFileType):
        target_root(host.folders(), "loras", name=name, extensions=host.extensions)


def test_a_folder_lists_its_registered_types_else_the_model_formats(comfy_root):
    host = StandaloneHost.from_root(comfy_root)
    root = target_root(host.folders(), "loras", name="style.SafeTensors", extensions=host.extensions)
    assert root == os.path.realpath(comfy_root / "models" / "loras")
    assert file_type_reason("x.gguf", {".safetensors"}) is not None  # the registered list is the folder's word
    assert file_type_reason("x.gguf", set()) is None  # a pack's own key registering none: the model formats
    assert file_type_reason("x.yaml", {".yaml"}) is None
    assert file_type_reason("x.py", {"folder"}) is not None

"""The seams a stranger reaches through what we are told: a pasted or resolved file's type, a
download that never ends, and the pack a workflow claims. Each case is hostile on purpose."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from fixer.app.service import FixerService
from fixer.config import DownloadConfig
from fixer.errors import UnsafeFileType
from fixer.host.host import StandaloneHost, file_type_reason, target_root
from fixer.models import Transfer, TransferRequest
from fixer.transfer import RetryPolicy, TransferManager
from tests.conftest import make_workflow, node
from tests.fake_upstream.file_routes import civitai_key, faults, register_civitai_file


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
        await svc.paste_link(wf, "from_a_stranger", "my_lora.safetensors", link)
    assert e.value.code == "unsafe_file_type"
    assert "'evil.py'" in str(e.value) and "a .py file is not a type this folder lists" in str(e.value)
    assert svc._task is None  # no run started
    assert files_under(comfy_root / "models") == before


@pytest.mark.parametrize("name", ["evil.py", "sub/run.sh", "tool.exe", "x.safetensors.bat", "noext",
                                  "a.SAFETENSORS.pyc"])
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


# ---------------------------------------------------------------- a download that never ends

MiB = 1 << 20


def fetch_endless(upstream, dest: Path, *, declared: int | None, **config) -> Transfer:
    """Download the fake's endless body (Civitai version 9100777: 200, chunked, no length, forever). A `.bin`:
    no content check of a model format would refuse the bytes afterwards, only the ceiling can."""
    url = register_civitai_file(upstream, 9100777, "endless.bin", b"\x5a" * 65536)
    faults(upstream, civitai_key(9100777)).endless = True

    async def go() -> Transfer:
        mgr = TransferManager(DownloadConfig(timeout_seconds=5, **config), {},
                              retry=RetryPolicy(retries=1, base=0.01, cap=0.02))
        t = await mgr.submit(TransferRequest(url=url, folder="loras", filename="endless.bin",
                                             expected_size=declared, model_name="endless.bin"), str(dest))
        await asyncio.wait_for(mgr.wait(), 60)
        return t
    return asyncio.run(go())


def test_an_endless_stream_of_undeclared_size_stops_at_the_configured_ceiling(tmp_path, upstream):
    t = fetch_endless(upstream, tmp_path, declared=None, max_undeclared_bytes=8 * MiB, min_free_margin_bytes=0)
    assert t.state == "failed" and t.error is not None, t.error
    assert (t.error.code, t.error.part_kept) == ("download_too_large", False)
    assert "more than 8,388,608 bytes" in t.error.message and "max_undeclared_bytes" in t.error.message
    assert "partial file removed" in t.error.message
    assert os.listdir(tmp_path) == []  # no .part, no sidecar, no target: it could never complete


def test_an_endless_stream_of_a_declared_size_fails_past_that_size(tmp_path, upstream):
    t = fetch_endless(upstream, tmp_path, declared=3 * MiB)
    assert t.state == "failed" and t.error is not None, t.error
    assert t.error.code == "download_too_large"
    assert "more than 3,145,728 bytes" in t.error.message and "declared size" in t.error.message
    assert os.listdir(tmp_path) == []


def test_an_endless_stream_stops_where_the_free_space_less_the_reserve_ends(tmp_path, upstream, monkeypatch):
    # The disk's free space as the engine reads it, held still: on a disk other processes write to, a real
    # reading moves by more than the 4 MiB margin between the test's look and the engine's.
    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr("fixer.transfer.engine.shutil.disk_usage", lambda _where: real)
    free = real.free
    # A reserve that leaves 4 MiB to fill: the configured maximum (64 GiB) is not what stops it.
    t = fetch_endless(upstream, tmp_path, declared=None, min_free_margin_bytes=free - 4 * MiB)
    assert t.state == "failed" and t.error is not None, t.error
    assert t.error.code == "download_too_large"
    assert "free space" in t.error.message and "partial file removed" in t.error.message
    assert os.listdir(tmp_path) == []


async def test_a_run_refuses_a_file_type_its_folder_does_not_list_as_a_failed_row(comfy_root, tmp_path, upstream):
    # (A name like `evil.py` is not a model reference at all: the scan never makes it a row.) A type the scan
    # takes for a model but this folder does not list: the workflow's own models[] entry links a real file.
    hint = {"name": "model.gguf", "url": f"{upstream.base}/api/download/models/9100101", "directory": "checkpoints"}
    wf = make_workflow([node(1, "CheckpointLoaderSimple", ["model.gguf"], models=[hint])])
    svc = service(comfy_root, tmp_path / "state")
    before = files_under(comfy_root / "models")
    await svc.start_fix(wf, "from_a_stranger")
    await svc._task
    await svc.retry("model.gguf", hint["url"])  # the user picks the workflow's own link
    await svc._task
    [row] = svc.status()["data"]["models"]
    assert (row["name"], row["state"], row["error"]["code"]) == ("model.gguf", "failed", "unsafe_file_type"), row
    assert "a .gguf file is not a type this folder lists" in row["error"]["message"]
    assert files_under(comfy_root / "models") == before

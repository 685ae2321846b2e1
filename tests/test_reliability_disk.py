"""Disk: a model folder on a small real filesystem (a tmpfs this test mounts; skipped, with the reason
printed, where mounting is not allowed). Too little space is refused before downloading; filling up
mid-way is a clear error that removes the partial file it cannot finish and harms nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from fixer.config import DownloadConfig
from fixer.models import TransferRequest
from fixer.transfer import RetryPolicy, TransferManager
from tests.fake_upstream.file_routes import faults, hf_key, register_hf_file

REPO = "disk/tests"
MiB = 1 << 20


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        reason = f"cannot mount a 3 MiB tmpfs here ({(r.stderr or r.stdout).strip() or r.returncode})"
        print(reason)
        pytest.skip(reason)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fetch(url: str, dest: Path, name: str, during=None):
    async def go():
        mgr = TransferManager(DownloadConfig(min_free_margin_bytes=0, timeout_seconds=5), {},
                              retry=RetryPolicy(retries=1, base=0.01, cap=0.02))
        t = await mgr.submit(TransferRequest(url=url, folder="loras", filename=name, model_name=name), str(dest))
        if during:
            await asyncio.to_thread(during, t)
        await mgr.wait()
        return t
    return asyncio.run(go())


def test_not_enough_space_is_refused_before_a_byte_is_written(small_fs, upstream):
    url = register_hf_file(upstream, REPO, "big.bin", random.Random(1).randbytes(4 * MiB))
    t = fetch(url, small_fs, "big.bin")
    assert t.state == "failed" and "Not enough disk space" in (t.error.message if t.error else ""), t.error
    assert os.listdir(small_fs) == []


def test_disk_filling_up_mid_download_is_a_clear_error_and_the_part_it_cannot_finish_is_removed(small_fs, upstream):
    data = random.Random(2).randbytes(2 * MiB)
    url = register_hf_file(upstream, REPO, "fill.bin", data)
    faults(upstream, hf_key(REPO, "fill.bin")).rate = MiB // 2  # per connection: 2 MiB in ~2 s on its 2 connections
    other = small_fs / "someone_elses.safetensors"
    other.write_bytes(b"keep me" * 1000)
    filler = small_fs / "filler.tmp"

    def fill_the_disk(t) -> None:
        # Mid-download: the .part exists and bytes flow (the sidecar records a range only when a piece
        # completes, and the 2 MiB file now comes as two 1 MiB pieces that end together, so waiting for a
        # recorded range raced the download's end under load). ~2 s of transfer are left to fill into.
        deadline = time.monotonic() + 20
        while not (t.part and os.path.exists(t.part)) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.2)
        with open(filler, "wb") as f:  # another program takes the rest of the space
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    t = fetch(url, small_fs, "fill.bin", during=fill_the_disk)
    assert t.state == "failed", t.error
    message = t.error.message if t.error else ""
    assert (t.error.code, t.error.part_kept) == ("disk_full", False), t.error
    assert "disk filled up" in message and "fill.bin" in message and "removed" in message, t.error
    assert not (small_fs / "fill.bin").exists()
    # The .part could never finish on this disk: kept, it would only hold the space the user needs.
    assert sorted(os.listdir(small_fs)) == ["filler.tmp", "someone_elses.safetensors"]
    assert other.read_bytes() == b"keep me" * 1000
    filler.unlink()  # space is back: the next run downloads it whole
    faults(upstream, hf_key(REPO, "fill.bin")).rate = None
    t = fetch(url, small_fs, "fill.bin")
    assert t.state == "done", t.error
    assert hashlib.sha256((small_fs / "fill.bin").read_bytes()).digest() == hashlib.sha256(data).digest()

"""downloaded_models.json for a burst of downloads: the records that wait for the records thread together are
written in one rewrite, and each download still starts only once its own record is on disk (for --resume).
One rewrite per record made a 30-file fix rewrite the growing file 60 times, O(n^2), and its largest download
(last in the workflow) wait for all of them before its first byte (benchmarks/many_files_bench.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixer.models import TransferRequest
from fixer.transfer import TransferManager, records
from fixer.transfer.records import DOWNLOADED_FILE
from tests.test_transfer_engine import FAST, cfg, tiny_hf_url

N = 12


async def test_a_burst_of_downloads_is_recorded_in_a_few_rewrites(upstream, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "output"
    dest = tmp_path / "loras"
    rewrites: list[list[str]] = []  # the states each rewrite held
    real = records.write_text_atomic

    def counted(path: Path, text: str) -> None:
        if Path(path).name == DOWNLOADED_FILE:
            rewrites.append([e["state"] for e in json.loads(text)["downloads"]])
        real(path, text)

    monkeypatch.setattr(records, "write_text_atomic", counted)
    started: list[tuple[str, set[str]]] = []  # (file, the targets recorded on disk when its first piece began)
    from fixer.transfer import engine

    real_open = engine.FileJob._open_part

    def opening(job: engine.FileJob, sidecar: object) -> None:
        on_disk = {e["path"] for e in records.read_records(out / DOWNLOADED_FILE)}
        started.append((job.t.target, on_disk))
        real_open(job, sidecar)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.FileJob, "_open_part", opening)
    mgr = TransferManager(cfg(max_concurrent=3), {}, output_dir=out, retry=FAST)
    for i in range(N):
        await mgr.submit(TransferRequest(url=tiny_hf_url(upstream), folder="loras", filename=f"m{i}.gguf"), str(dest))
    done = await mgr.wait()
    assert all(t.state == "done" for t in done) and len(done) == N
    saved = json.loads((out / DOWNLOADED_FILE).read_text())["downloads"]
    assert len(saved) == N and {e["state"] for e in saved} == {"done"}
    assert all(e["dest_root"] == str(dest) for e in saved)
    # The N records queued together, before any download ended, share their rewrites (one each: N of them).
    before_any_done = next(i for i, states in enumerate(rewrites) if "done" in states)
    assert before_any_done <= 2, rewrites[:before_any_done]
    assert started and all(target in on_disk for target, on_disk in started)

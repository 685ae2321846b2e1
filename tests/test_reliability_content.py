"""Hostile content in workflows and model folders: a per-file error or a safe reading, never a traceback or a
memory blow-up."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from fixer.app.report import summary_markdown, summary_text, write_scan_outputs
from fixer.errors import WorkflowError
from fixer.read import readers
from fixer.read.inventory import build_inventory
from fixer.read.readers import iter_workflow_files, read_documents
from fixer.read.scan import scan_paths
from fixer.read.walk import walk_files
from tests.conftest import ROOT, make_workflow, node, write_json

MiB = 2**20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png(*chunks: bytes) -> bytes:
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    return PNG_SIGNATURE + ihdr + b"".join(chunks) + chunk(b"IEND", b"")


@functools.cache
def bomb(inflated: int) -> bytes:
    """zlib data of a few hundred KiB that inflates to `inflated` bytes of spaces."""
    c = zlib.compressobj(1)
    block = b" " * MiB
    return b"".join(c.compress(block) for _ in range(inflated // MiB)) + c.flush()


def honest_workflow(name: str = "honest.safetensors") -> dict:
    return make_workflow([node(1, "LoraLoader", [name, 1.0, 1.0])])


def missing(report) -> list[str]:
    return sorted(s.ref.name for s in report.models if s.state == "missing")


@pytest.mark.parametrize("kind", ["zTXt", "iTXt"])
def test_a_compressed_png_text_that_inflates_to_gibs_is_a_per_file_error(tmp_path, kind):
    data = bomb(128 * MiB)  # twice the bound; a real attack inflates further at the same cost to us
    body = b"workflow\x00\x00" + data if kind == "zTXt" else b"workflow\x00\x01\x00\x00\x00" + data
    p = tmp_path / "bomb.png"
    p.write_bytes(png(chunk(kind.encode(), body)))
    tracemalloc.start()
    try:
        with pytest.raises(WorkflowError, match="inflates to more than 64 MiB"):
            read_documents(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 160 * MiB


def test_png_image_data_is_skipped_not_loaded(tmp_path):
    wf = json.dumps(honest_workflow()).encode()
    p = tmp_path / "big.png"
    p.write_bytes(png(chunk(b"IDAT", bytes(64 * MiB)), chunk(b"tEXt", b"workflow\x00" + wf)))
    tracemalloc.start()
    try:
        docs = read_documents(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [kind for kind, _ in docs] == ["workflow"]
    assert peak < 16 * MiB


def test_a_workflow_file_over_the_size_bound_is_refused_unread(tmp_path, monkeypatch):
    p = tmp_path / "huge.json"
    with open(p, "wb") as f:
        f.truncate(200 * MiB)  # sparse: its size is all that is looked at
    monkeypatch.setattr(readers, "parse_json_bytes", lambda *a: pytest.fail("read a file over the bound"))
    with pytest.raises(WorkflowError, match="200 MiB, more than the 64 MiB a workflow file can be"):
        read_documents(p)


def test_json_whose_parse_would_multiply_in_memory_is_refused_before_parsing(tmp_path):
    p = tmp_path / "dicts.json"
    p.write_bytes(b"[" + b"{}," * 5_000_000 + b"{}]")  # 15 MB of text, ~450 MB once parsed
    tracemalloc.start()
    try:
        with pytest.raises(WorkflowError, match="more than 4000000 values"):
            read_documents(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * MiB


def test_lone_surrogates_in_a_workflow_are_read_as_replacement_characters_and_reports_stay_valid(
        tmp_path, comfy_root, host_for):
    wf = honest_workflow("broken\\ud800name.safetensors")
    text = json.dumps(wf).replace("\\\\ud800", "\\ud800")  # a JSON escape of a lone surrogate
    text = text.replace('"LoraLoader"', '"Lora\\udfffLoader"', 1)
    assert "\\ud800" in text and "\\\\ud800" not in text
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "w.json").write_text(text)
    report = scan_paths([str(tmp_path / "wf")], host_for(comfy_root))
    assert report.problems == []
    assert "broken\ufffdname.safetensors" in [s.ref.name for s in report.models]
    state = tmp_path / "state"
    write_scan_outputs(report, state)
    for out in (state / "output").glob("*.json"):
        json.loads(out.read_bytes().decode("utf-8"))  # strict UTF-8, no surrogate escapes
        assert b"\\ud" not in out.read_bytes().lower()
    summary_text(report).encode("utf-8")
    summary_markdown(report, []).encode("utf-8")


def test_paired_surrogate_escapes_stay_one_character(tmp_path):
    p = tmp_path / "emoji.json"
    p.write_text(json.dumps(make_workflow([node(1, "LoraLoader", ["smile\U0001F600.safetensors", 1, 1])])))
    (_, wf), = read_documents(p)
    assert wf["nodes"][0]["widgets_values"][0] == "smile\U0001F600.safetensors"


def test_a_workflow_file_name_that_is_not_utf8_is_scanned_under_a_printable_label(tmp_path, comfy_root, host_for):
    folder = tmp_path / "wf"
    folder.mkdir()
    raw_name = os.path.join(os.fsencode(folder), b"caf\xe9.json")
    with open(raw_name, "w") as f:
        json.dump(honest_workflow(), f)
    report = scan_paths([str(folder)], host_for(comfy_root))
    assert report.workflows == ["caf\ufffd.json"] and missing(report) == ["honest.safetensors"]


def test_a_model_file_name_that_is_not_utf8_is_skipped_with_a_warning(comfy_root, host_for, caplog):
    loras = os.fsencode(comfy_root / "models" / "loras")
    open(os.path.join(loras, b"bad\xff.safetensors"), "wb").close()
    open(os.path.join(loras, b"good.safetensors"), "wb").close()
    with caplog.at_level(logging.WARNING, logger="fixer"):
        inv = build_inventory(host_for(comfy_root))
    assert sorted(f.relpath for f in inv.files) == ["good.safetensors"]
    assert "bad\ufffd.safetensors" in caplog.text and "not valid UTF-8" in caplog.text


def loops(folder: Path) -> None:
    """Two links back up the tree: a plain followlinks walk lists each file 2**40 times."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    os.symlink("..", folder / "sub" / "up")
    os.symlink("..", folder / "sub" / "again")


def test_a_walk_through_symlink_loops_visits_each_real_folder_once(tmp_path):
    write_json(tmp_path / "a.json", {})
    write_json(tmp_path / "sub" / "b.json", {})
    loops(tmp_path)
    walked = list(itertools.islice(walk_files(str(tmp_path)), 100))  # a looping walk never ends: look at 100
    assert sorted(rel for rel, _ in walked) == ["a.json", "sub/b.json"]


def test_a_workflow_folder_with_symlink_loops_lists_each_file_once(tmp_path):
    folder = tmp_path / "wf"
    write_json(folder / "a.json", honest_workflow())
    write_json(folder / "sub" / "b.json", honest_workflow())
    loops(folder)
    started = time.monotonic()
    found = list(iter_workflow_files([str(folder)]))
    assert time.monotonic() - started < 30  # a guard against hanging, not a speed target
    assert [p.name for p in found] == ["a.json", "b.json"]


def test_a_model_folder_with_symlink_loops_lists_each_file_once(comfy_root, host_for):
    loras = comfy_root / "models" / "loras"
    (loras / "sub").mkdir()
    (loras / "sub" / "x.safetensors").write_bytes(b"")
    loops(loras)
    inv = build_inventory(host_for(comfy_root))
    assert [f.relpath for f in inv.files if f.folder == "loras"] == ["sub/x.safetensors"]


def hostile_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    write_json(folder / "honest.json", honest_workflow())
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "latin1.json").write_bytes(json.dumps(honest_workflow("x.safetensors")).encode().replace(b"x.", b"\xe9."))
    (folder / "dicts.json").write_bytes(b"[" + b"{}," * 5_000_000 + b"{}]")
    (folder / "bigint.json").write_text('{"nodes": [' + "9" * 100_000 + "]}")
    (folder / "bomb.png").write_bytes(png(chunk(b"zTXt", b"workflow\x00\x00" + bomb(128 * MiB))))
    (folder / "cut.png").write_bytes(png(chunk(b"tEXt", b"workflow\x00{")))
    (folder / "fake.webp").write_bytes(b"RIFF\xff\xff\xff\xffWEBPVP8X" + bytes(64))
    (folder / "surrogate.json").write_text(json.dumps(honest_workflow("s.safetensors")).replace("s.saf", "\\udc80.saf"))
    with open(folder / "huge.json", "wb") as f:
        f.truncate(200 * MiB)
    loops(folder)


def test_one_bad_workflow_never_breaks_the_scan(tmp_path, comfy_root, host_for):
    folder = tmp_path / "wf"
    hostile_folder(folder)
    report = scan_paths([str(folder)], host_for(comfy_root))
    assert missing(report) == ["honest.safetensors", "\ufffd.safetensors"]
    unreadable = {p.path for p in report.problems}
    assert "sys." not in " ".join(p.error for p in report.problems)  # reasons for a person, not Python's advice
    assert unreadable == {"deep.json", "latin1.json", "dicts.json", "bigint.json", "bomb.png", "cut.png",
                          "fake.webp", "huge.json"}


def test_the_cli_scan_of_hostile_files_exits_cleanly_with_valid_outputs(tmp_path, comfy_root):
    folder = tmp_path / "wf"
    hostile_folder(folder)
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "fixer", "--scan", "--workflow", str(folder), "--comfyui-root",
                        str(comfy_root),
                        "--state-dir", str(state)], capture_output=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr.decode()  # 2: unreadable files are an input error; the rest is reported
    assert b"Traceback" not in r.stderr and b"Traceback" not in r.stdout
    rows = json.loads((state / "output" / "missing_models.json").read_bytes().decode("utf-8"))
    assert {row["filename"] for row in rows} == {"honest.safetensors", "\ufffd.safetensors"}

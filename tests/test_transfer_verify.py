"""Checks before a file takes its final name, the batch report, and the curl scripts."""

from __future__ import annotations

import json
import struct

import pytest

from fixer.errors import IntegrityError
from fixer.models import TransferRequest
from fixer.transfer import scripts, verify


def make_safetensors(n_values: int = 16, truncate: int = 0) -> bytes:
    header = json.dumps({"w": {"dtype": "F16", "shape": [n_values], "data_offsets": [0, 2 * n_values]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    data = struct.pack("<Q", len(header)) + header + b"\x01\x02" * n_values
    return data[: len(data) - truncate] if truncate else data


def test_valid_safetensors_passes(tmp_path):
    p = tmp_path / "ok.safetensors"
    p.write_bytes(make_safetensors())
    verify.check_file(p, p.stat().st_size, "ok.safetensors")


def test_truncated_safetensors_reports_expected_and_actual_size(tmp_path):
    p = tmp_path / "cut.safetensors"
    full = len(make_safetensors())
    p.write_bytes(make_safetensors(truncate=10))
    with pytest.raises(IntegrityError, match=rf"expected {full} bytes \(from its header\), got {full - 10} bytes"):
        verify.check_safetensors(p, "cut.safetensors")


def test_garbage_header_is_an_integrity_error(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", 4) + b"{{{{" + b"\0" * 8)
    with pytest.raises(IntegrityError, match="safetensors header"):
        verify.check_safetensors(p, "bad.safetensors")


def test_sha256_mismatch_shows_both_hashes():
    with pytest.raises(IntegrityError, match="expected aa.*got bb"):
        verify.check_sha256("bb" * 32, "AA" * 32, "x")


def test_batch_check_sorts_files_into_verified_and_failed_and_never_raises(tmp_path):
    good = tmp_path / "good.safetensors"
    good.write_bytes(make_safetensors())
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(make_safetensors(truncate=4))
    pickle_file = tmp_path / "m.ckpt"
    pickle_file.write_bytes(b"x" * 10)
    verified, failed = verify.verify_batch([
        ("good.safetensors", str(good), good.stat().st_size),
        ("cut.safetensors", str(cut), cut.stat().st_size),
        ("gone.safetensors", str(tmp_path / "gone.safetensors"), 5),
        ("m.ckpt", str(pickle_file), 10),
    ])
    assert [v.name for v in verified] == ["good.safetensors", "m.ckpt"]
    assert verified[0].warning is None and "pickle" in (verified[1].warning or "")
    assert {f.name for f in failed} == {"cut.safetensors", "gone.safetensors"}


def test_script_reads_tokens_from_the_environment_and_checks_the_hash(tmp_path):
    req = TransferRequest(url="https://civitai.com/api/download/models/7?token=SECRET", folder="loras",
                          filename="a b.safetensors", sha256="AB" * 32, source="civitai")
    path = scripts.write_script(tmp_path, req, "/models/loras/a b.safetensors", 123)
    text = path.read_text()
    assert path.name == "download_001_a_b.safetensors.sh"
    assert "SECRET" not in text and "$CIVITAI_API_KEY" in text
    assert "-C -" in text and "ab" * 32 in text and "expected_size=123" in text


def test_script_counter_persists_across_runs(tmp_path):
    req = TransferRequest(url="https://huggingface.co/o/r/resolve/main/x.safetensors", folder="vae",
                          filename="x.safetensors")
    scripts.write_script(tmp_path, req, "/m/x.safetensors")
    second = scripts.write_script(tmp_path, req, "/m/x.safetensors")
    assert second.name.startswith("download_002_")
    assert (tmp_path / "download_counter.txt").read_text().strip() == "2"
    assert "$HF_TOKEN" in second.read_text()

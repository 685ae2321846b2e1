"""The safetensors structural check: safetensors itself reads the file; hostile headers are integrity errors at
bounded cost (a header with more values than a model has never reaches the library)."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from fixer.config import DownloadConfig
from fixer.errors import IntegrityError
from fixer.models import TransferRequest
from fixer.transfer import RetryPolicy, download_one, verify
from tests.fake_upstream import file_routes as fr


def pack(header: bytes | dict, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def two_tensors() -> bytes:
    return pack({"__metadata__": {"format": "pt"},
                 "a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]},
                 "b": {"dtype": "F4", "shape": [4], "data_offsets": [12, 14]}}, bytes(range(14)))


def check(tmp_path, data: bytes) -> None:
    p = tmp_path / "m.safetensors"
    p.write_bytes(data)
    verify.check_safetensors(p, "m.safetensors")


def test_a_well_formed_file_passes(tmp_path):
    check(tmp_path, two_tensors())


def test_a_file_safetensors_reads_is_accepted_even_where_a_hand_parser_was_stricter(tmp_path):
    """A header naming one tensor twice loads in ComfyUI (safetensors keeps the last); the hand-written
    parser the check used to be refused it, so a file every loader reads was deleted after download."""
    one = b'"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}'
    twice = b"{" + one + b"," + one + b"}"
    check(tmp_path, pack(twice, b"\0\0"))


def test_the_structure_is_judged_by_the_safetensors_library(tmp_path, monkeypatch):
    import safetensors

    def refuse(path: str, framework: str) -> None:
        raise safetensors.SafetensorError("Error while deserializing header: judged by the library")

    monkeypatch.setattr(safetensors, "safe_open", refuse)
    with pytest.raises(IntegrityError, match="judged by the library"):
        check(tmp_path, two_tensors())


@pytest.mark.parametrize("header", [
    {"__metadata__": None, "a": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}, "b": 7},
    b'{"a":{"dtype":"F16","shape":[1e999],"data_offsets":[0,2]}}',
    b'{"a":{"dtype":"F16","shape":[NaN],"data_offsets":[0,2]}}',
    b'{"a":{"dtype":"F16","shape":[Infinity],"data_offsets":[0,2]}}',
    b'{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,' + b"9" * 5000 + b"]}}",
    b"[" * 200_000 + b"]" * 200_000,
    {"a": {"dtype": "F16", "shape": [[[1]]], "data_offsets": [0, 2]}},
    b'{"\\ud800":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}',
    b'{"a\xff":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}',
    {"a": {"dtype": "F16", "shape": [True], "data_offsets": [0, 2]}},
    {"a": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 2]}},
    {"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 2]}},
    {"a": {"dtype": "F16", "shape": [1], "data_offsets": [2, 0]}},
    {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 2]}},
    {"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}},
    {"__metadata__": {"n": 1}},
    [],
])
def test_a_hostile_header_is_an_integrity_error(tmp_path, header):
    with pytest.raises(IntegrityError, match="safetensors header mismatch: expected a well-formed file, got "):
        check(tmp_path, pack(header, b"\0\0"))


def test_a_header_with_more_values_than_the_bound_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "MAX_HEADER_VALUES", 1000)
    names = {f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(200)}
    import safetensors

    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("parsed a header over the bound"))
    with pytest.raises(IntegrityError, match="more than 1000 values"):
        check(tmp_path, pack(names, bytes(200)))


def test_a_header_length_over_100_mib_is_refused_without_reading_it(tmp_path):
    with pytest.raises(IntegrityError, match="header length"):
        check(tmp_path, struct.pack("<Q", 101 * 2**20) + b"{}" + b"\0" * 64)


@pytest.mark.parametrize("offsets, what", [
    ([[0, 12], [13, 15]], "invalid offset"),  # a gap
    ([[0, 12], [10, 12]], "invalid offset"),  # an overlap (sorted, the second starts inside the first)
    ([[2, 14], [14, 16]], "invalid offset"),  # data not starting at 0
])
def test_tensor_spans_must_tile_the_data(tmp_path, offsets, what):
    header = {"a": {"dtype": "F16", "shape": [6], "data_offsets": offsets[0]},
              "b": {"dtype": "F16", "shape": [(offsets[1][1] - offsets[1][0]) // 2], "data_offsets": offsets[1]}}
    with pytest.raises(IntegrityError, match=what):
        check(tmp_path, pack(header, bytes(max(o[1] for o in offsets))))


def test_bytes_after_the_last_tensor_are_an_integrity_error(tmp_path):
    with pytest.raises(IntegrityError, match=r"data size mismatch: expected \d+ bytes \(from its header\)"):
        check(tmp_path, two_tensors() + b"\0")


@seed(20261128)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(
    [b"", b"0", b"1", b"9", b"-", b"[", b"]", b"{", b"}", b",", b'"', b"1e999", b"NaN", b"F4", b"U8", b"\\ud800"])),
    min_size=1, max_size=3), tail=st.integers(-3, 3))
def test_the_check_agrees_with_safetensors_own_reader(tmp_path, cuts, tail):
    """Mutated headers: the check here accepts exactly what safetensors (with numpy) accepts."""
    import safetensors  # the test extras' reference reader (with numpy), not the code under test

    text = json.dumps({"__metadata__": {"format": "pt"},
                       "a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]},
                       "b": {"dtype": "U8", "shape": [2], "data_offsets": [12, 14]}}, separators=(",", ":")).encode()
    for pos, token in cuts:
        pos %= len(text)
        text = text[:pos] + token + text[pos + 1:]
    data = pack(text, bytes(14))
    data = data[:len(data) + tail] if tail < 0 else data + bytes(tail)
    p = tmp_path / "m.safetensors"
    p.write_bytes(data)
    try:
        with safetensors.safe_open(str(p), framework="np"):
            theirs = True
    except Exception:
        theirs = False
    try:
        verify.check_safetensors(p, "m.safetensors")
        ours = True
    except IntegrityError:
        ours = False
    assert ours == theirs, text


async def test_a_download_with_a_hostile_header_fails_and_leaves_no_part(tmp_path, upstream):
    data = pack(b'{"a":{"dtype":"F16","shape":[1e999],"data_offsets":[0,2]}}', b"\0\0")
    url = fr.register_hf_file(upstream, "o/hostile", "m.safetensors", data)
    req = TransferRequest(url=url, folder="loras", filename="m.safetensors")
    t = await download_one(req, str(tmp_path), DownloadConfig(min_free_margin_bytes=0, timeout_seconds=5.0), {},
                           retry=RetryPolicy(retries=1, base=0.01, cap=0.05))
    assert t.state == "failed" and t.error is not None
    assert "safetensors header mismatch" in t.error.message and "number out of range" in t.error.message
    assert sorted(p.name for p in tmp_path.rglob("*")) == []

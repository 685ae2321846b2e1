"""Pure rules of the transfer engine: hosts, tokens, redirects, retries, piece planning, sidecar ranges."""

from __future__ import annotations

import os

import pytest

from fixer.errors import HostNotAllowed
from fixer.transfer import resume
from fixer.transfer.engine import MIN_PIECE, RetryPolicy, plan_pieces, retry_delay
from fixer.transfer.policy import (auth_headers, check_redirect, check_start_url, redact, strip_secret_query,
                                   token_name_for)

SECRETS = {"HF_TOKEN": "hf_secret", "CIVITAI_API_KEY": "civ_secret"}


@pytest.fixture(autouse=True)
def real_endpoints(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("CIVITAI_BASE_URL", raising=False)


def test_huggingface_and_civitai_https_links_are_allowed():
    check_start_url("https://huggingface.co/org/repo/resolve/main/x.safetensors")
    check_start_url("https://civitai.com/api/download/models/123")


def test_plain_http_to_a_public_host_is_refused():
    with pytest.raises(HostNotAllowed, match="plain http"):
        check_start_url("http://huggingface.co/org/repo/resolve/main/x.safetensors")


def test_unknown_host_is_refused_with_the_config_key_to_allow_it():
    with pytest.raises(HostNotAllowed, match="extra_allowed_hosts"):
        check_start_url("https://models.example.com/x.safetensors")


def test_host_added_in_config_is_allowed():
    check_start_url("https://models.example.com/x.safetensors", ["models.example.com"])


def test_endpoint_hosts_from_the_environment_are_allowed_over_loopback_http(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8123")
    check_start_url("http://127.0.0.1:8123/org/repo/resolve/main/x.safetensors")


def test_credentials_in_the_url_are_refused():
    with pytest.raises(HostNotAllowed, match="embedded credentials"):
        check_start_url("https://user:pw@huggingface.co/x")


def test_hf_token_goes_only_to_huggingface_and_civitai_key_only_to_civitai():
    hf = "https://huggingface.co/org/repo/resolve/main/x.safetensors"
    civ = "https://civitai.com/api/download/models/1"
    assert auth_headers(hf, SECRETS, hf) == {"Authorization": "Bearer hf_secret"}
    assert auth_headers(civ, SECRETS, civ) == {"Authorization": "Bearer civ_secret"}
    other = "https://models.example.com/x"
    assert auth_headers(other, SECRETS, other) == {}


def test_token_is_dropped_on_a_redirect_to_another_host():
    start = "https://huggingface.co/org/repo/resolve/main/x.safetensors"
    assert auth_headers("https://cdn-lfs.hf.co/repos/x?sig=1", SECRETS, start) == {}
    assert auth_headers("https://huggingface.co/new/name/resolve/main/x", SECRETS, start) != {}


def test_shared_local_origin_tells_civitai_from_hf_by_path(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://127.0.0.1:9000")
    assert token_name_for("http://127.0.0.1:9000/api/download/models/5") == "CIVITAI_API_KEY"
    assert token_name_for("http://127.0.0.1:9000/org/repo/resolve/main/x.bin") == "HF_TOKEN"


def test_redirect_to_plain_http_off_loopback_is_refused():
    with pytest.raises(HostNotAllowed, match="only https"):
        check_redirect("https://civitai.com/api/download/models/1", "http://storage.example.com/x")


def test_redirect_from_a_public_host_to_this_machine_is_refused():
    with pytest.raises(HostNotAllowed, match="this machine"):
        check_redirect("https://civitai.com/api/download/models/1", "https://127.0.0.1/x")


def test_https_redirect_to_a_cdn_is_followed():
    check_redirect("https://huggingface.co/a/b/resolve/main/x", "https://cas-bridge.xethub.hf.co/x?X-Amz-Signature=s")


def test_redact_hides_tokens_and_signatures():
    shown = redact("https://civitai.com/api/download/models/1?token=abc&type=Model&X-Amz-Signature=zz")
    assert "abc" not in shown and "zz" not in shown and "type=Model" in shown


def test_token_query_parameter_is_stripped_so_the_header_carries_it():
    assert strip_secret_query("https://civitai.com/api/download/models/1?token=abc&type=Model") == \
        "https://civitai.com/api/download/models/1?type=Model"


def test_retry_after_wins_over_backoff():
    assert retry_delay(3, 7.0, RetryPolicy(base=1.0)) == 7.0


def test_backoff_doubles_with_jitter_and_is_capped():
    policy = RetryPolicy(base=1.0, cap=5.0)
    assert retry_delay(0, None, policy, rand=lambda: 1.0) == 1.0
    assert retry_delay(2, None, policy, rand=lambda: 0.0) == 2.0  # 4 s halved by the jitter
    assert retry_delay(10, None, policy, rand=lambda: 1.0) == 5.0


def test_pieces_cover_only_the_missing_ranges_in_file_order():
    total = 64 * MIN_PIECE
    pieces = plan_pieces(resume.gaps([(0, 10 * MIN_PIECE)], total), total, connections=8)
    assert pieces[0][0] == 10 * MIN_PIECE and pieces[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_ranges_merge_and_gaps_and_prefix():
    done = resume.merge([(10, 20), (0, 5), (5, 8), (18, 30)])
    assert done == [(0, 8), (10, 30)]
    assert resume.gaps(done, 40) == [(8, 10), (30, 40)]
    assert resume.prefix_end(done) == 8
    assert resume.covered(done) == 28


def test_sidecar_round_trips_and_matches_only_the_same_remote_file(tmp_path):
    part = tmp_path / "x.safetensors.part"
    part.write_bytes(b"")
    resume.save(part, resume.Sidecar(url="u", validator="etag1", total=100, ranges=[(0, 50)]))
    loaded = resume.load(part)
    assert loaded is not None and loaded.ranges == [(0, 50)]
    assert loaded.matches("u", "etag1", 100)
    assert not loaded.matches("u", "etag2", 100)
    assert not loaded.matches("u", None, 100)  # no validator: the bytes cannot be trusted


def test_unreadable_sidecar_means_start_over(tmp_path):
    part = tmp_path / "x.part"
    resume.sidecar_path(part).write_text("{not json")
    assert resume.load(part) is None


def test_positional_io_fallbacks_write_and_read_at_offsets(tmp_path, monkeypatch):
    """Windows has no pwritev/pwrite/preadv/pread: the seek-under-a-lock path must give the same bytes."""
    from fixer.transfer import engine

    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT)
    try:
        for name in ("pwritev", "pwrite", "preadv", "pread"):
            monkeypatch.delattr(os, name, raising=False)
        engine._pwrite_all(fd, [b"world"], 6)
        engine._pwrite_all(fd, [b"hello", b" "], 0)
        buf = bytearray(11)
        assert engine._pread_into(fd, memoryview(buf), 0) == 11
        assert bytes(buf) == b"hello world"
    finally:
        os.close(fd)

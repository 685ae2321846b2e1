"""Pure rules of the transfer engine: hosts, tokens, redirects, retries, piece planning, sidecar ranges."""

from __future__ import annotations

import os

import pytest

from fixer.errors import HostNotAllowed
from fixer.transfer import resume
from fixer.transfer.pieces import plan_pieces
from fixer.transfer.policy import (
    auth_headers,
    check_address,
    check_redirect,
    check_start_url,
    redact,
    strip_secret_query,
    token_name_for,
)
from fixer.transfer.settings import MIN_PIECE
from fixer.upstream.http import RetryPolicy, retry_delay

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


def test_a_mid_sized_file_gets_every_connection_with_one_piece_each():
    mib = 1 << 20  # under a per-connection cap (25 MB/s at a CDN) a file on fewer connections is slower
    assert len(plan_pieces([(0, 16 * mib)], 16 * mib, connections=8)) == 8
    assert len(plan_pieces([(0, 3 * mib)], 3 * mib, connections=8)) == 3  # pieces of at least 1 MiB
    big = plan_pieces([(0, 256 * mib)], 256 * mib, connections=8)
    assert len(big) == 32  # large files: several pieces per connection, so the hashed prefix keeps up


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
    from fixer.transfer import pieces

    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT)
    try:
        for name in ("pwritev", "pwrite", "preadv", "pread"):
            monkeypatch.delattr(os, name, raising=False)
        pieces.pwrite_all(fd, [b"world"], 6)
        pieces.pwrite_all(fd, [b"hello", b" "], 0)
        buf = bytearray(11)
        assert pieces.pread_into(fd, memoryview(buf), 0) == 11
        assert bytes(buf) == b"hello world"
    finally:
        os.close(fd)


def test_an_endpoint_allows_its_own_port_not_every_port_of_its_host(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8123")
    check_start_url("http://127.0.0.1:8123/org/repo/resolve/main/x.safetensors")
    with pytest.raises(HostNotAllowed, match="not an allowed download host"):
        check_start_url("http://127.0.0.1:6379/org/repo/resolve/main/x.safetensors")


def test_an_endpoint_allows_its_own_scheme_only(monkeypatch):
    monkeypatch.setenv("CIVITAI_BASE_URL", "https://mirror.example.com")
    check_start_url("https://mirror.example.com/api/download/models/1")
    with pytest.raises(HostNotAllowed, match="not an allowed download host"):
        check_start_url("https://mirror.example.com:8443/api/download/models/1")


def test_an_extra_host_with_a_port_allows_that_origin_only():
    check_start_url("https://models.example.com:8443/x.safetensors", ["models.example.com:8443"])
    with pytest.raises(HostNotAllowed, match="not an allowed download host"):
        check_start_url("https://models.example.com:9443/x.safetensors", ["models.example.com:8443"])


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.10", "172.16.5.4", "169.254.169.254", "0.0.0.0",
                                     "100.64.0.1", "::", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                                     "127.0.0.1", "::1"])
def test_a_name_resolving_to_a_non_public_address_is_refused(address):
    with pytest.raises(HostNotAllowed, match="public addresses"):
        check_address("cdn.example.com", address)


def test_a_name_resolving_to_a_public_address_is_allowed():
    check_address("cdn.example.com", "93.184.216.34")
    check_address("cdn.example.com", "2606:2800:220:1:248:1893:25c8:1946")


def test_loopback_is_allowed_only_when_a_configured_endpoint_is_loopback(monkeypatch):
    with pytest.raises(HostNotAllowed):
        check_address("localhost", "127.0.0.1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8123")
    check_address("localhost", "127.0.0.1")
    with pytest.raises(HostNotAllowed):
        check_address("cdn.example.com", "10.0.0.5")  # loopback, not the private network


def test_a_host_the_user_configured_may_live_on_their_own_network():
    check_address("nas.lan", "192.168.1.20", ["nas.lan"])


@pytest.mark.parametrize("location", ["https://10.0.0.8/x", "https://169.254.169.254/latest/meta-data",
                                      "https://[::ffff:127.0.0.1]/x", "https://0.0.0.0/x", "https://[fe80::1]/x"])
def test_redirect_to_a_private_link_local_unspecified_or_mapped_address_is_refused(location):
    with pytest.raises(HostNotAllowed, match="public addresses|this machine"):
        check_redirect("https://huggingface.co/a/b/resolve/main/x", location)


def test_pieces_are_handed_out_in_file_order_then_the_slowest_tail_is_stolen():
    from fixer.transfer.pieces import PieceQueue
    from fixer.transfer.settings import STEAL_MIN

    queue = PieceQueue([(0, 10 * STEAL_MIN), (10 * STEAL_MIN, 12 * STEAL_MIN)])
    first, second = queue.take(), queue.take()
    assert (first.start, second.start) == (0, 10 * STEAL_MIN) and len(queue) == 0
    first.pos = 2 * STEAL_MIN  # a slow connection: 8 x STEAL_MIN still to come
    queue.done(second)
    tail = queue.take()
    assert (tail.start, tail.end) == (6 * STEAL_MIN, 10 * STEAL_MIN) and first.end == 6 * STEAL_MIN


def test_a_piece_too_small_to_split_is_not_stolen():
    from fixer.transfer.pieces import PieceQueue
    from fixer.transfer.settings import STEAL_MIN

    queue = PieceQueue([(0, STEAL_MIN - 1)])
    assert queue.take() is not None and queue.take() is None

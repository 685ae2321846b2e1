"""Fault matrix: every injected network fault ends with a verified file or a clear error, never a bad final file.

Each test states the fault it injects on the fake upstream and checks the one promise of the
engine: either the final name holds exactly the right bytes (sha256 checked here, independently
of the engine), or the transfer failed with a message naming the file and nothing exists under
the final name. Retries use millisecond backoffs so the whole matrix runs in seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import time
from pathlib import Path

import pytest

from fixer.config import DownloadConfig
from fixer.models import Transfer, TransferRequest
from fixer.transfer import RetryPolicy, TransferManager
from tests.fake_upstream import Fault
from tests.fake_upstream.file_routes import civitai_key, faults, hf_key, register_civitai_file, register_hf_file

REPO = "faults/matrix"
FAST_RETRY = RetryPolicy(retries=4, base=0.01, cap=0.05, max_retry_after=0.3)


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def config(**kw) -> DownloadConfig:
    base = dict(connections_per_file=4, timeout_seconds=1.0, min_free_margin_bytes=0, retries=4)
    return DownloadConfig(**{**base, **kw})


def fetch(url: str, dest: Path, name: str, *, sha256: str | None = None, cfg: DownloadConfig | None = None,
          retry: RetryPolicy = FAST_RETRY, size: int | None = None) -> Transfer:
    async def go() -> Transfer:
        mgr = TransferManager(cfg or config(), {}, retry=retry)
        t = await mgr.submit(TransferRequest(url=url, folder="checkpoints", filename=name, sha256=sha256,
                                             expected_size=size, source="huggingface", model_name=name), str(dest))
        await mgr.wait()
        return t
    return asyncio.run(go())


def serve(up, name: str, data: bytes) -> str:
    return register_hf_file(up, REPO, name, data)


def assert_verified(t: Transfer, dest: Path, name: str, data: bytes) -> None:
    assert t.state == "done", t.error
    final = dest / name
    assert hashlib.sha256(final.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not list(dest.glob("*.part*")), "no .part or sidecar is left beside a verified file"


def assert_clear_failure(t: Transfer, dest: Path, name: str, *words: str) -> None:
    assert t.state == "failed"
    assert t.error and name in t.error, t.error
    for w in words:
        assert w.lower() in t.error.lower(), t.error
    assert not (dest / name).exists(), "nothing may appear under the final name after a failure"


def cdn_gets(up) -> list:
    return [r for r in up.requests if r.path_qs.startswith("/cdn/") and r.method == "GET"]


# --- connection resets ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [3, 17, 29])
def test_resets_at_random_offsets_repeated_end_in_a_verified_file(tmp_path, upstream, seed):
    rng = random.Random(seed)
    data = blob(10 << 20, seed)
    url = serve(upstream, f"r{seed}.safetensors.bin", data)
    f = faults(upstream, hf_key(REPO, f"r{seed}.safetensors.bin"))
    f.reset_at = rng.randrange(1, len(data) - 1)
    f.reset_times = rng.randint(2, 4)
    t = fetch(url, tmp_path, f"r{seed}.safetensors.bin")
    assert_verified(t, tmp_path, f"r{seed}.safetensors.bin", data)
    assert f.reset_times == 0, "every injected reset was hit"


def test_reset_on_a_single_stream_resumes_from_the_offset_reached(tmp_path, upstream):
    data = blob(3 << 20)
    url = serve(upstream, "single.bin", data)
    faults(upstream, hf_key(REPO, "single.bin")).reset_at = 2 << 20
    t = fetch(url, tmp_path, "single.bin")
    assert_verified(t, tmp_path, "single.bin", data)
    ranges = [r.headers.get("Range") for r in cdn_gets(upstream)]
    resumed = [int(r.split("=")[1].split("-")[0]) for r in ranges[1:] if r]
    assert resumed and resumed[0] >= 1 << 20, f"the retry continued near the reset, not at 0: {ranges}"


def test_truncated_body_every_time_fails_clearly_and_keeps_the_part_for_resume(tmp_path, upstream):
    # Content-Length says the full size; the body always stops at the same byte (a broken proxy).
    data = blob(1 << 20)
    url = serve(upstream, "trunc.bin", data)
    f = faults(upstream, hf_key(REPO, "trunc.bin"))
    f.reset_at, f.reset_times = 700_000, None
    t = fetch(url, tmp_path, "trunc.bin", retry=RetryPolicy(retries=2, base=0.01, cap=0.02))
    assert_clear_failure(t, tmp_path, "trunc.bin", "gave up", "resume")
    assert (tmp_path / "trunc.bin.part").exists() and (tmp_path / "trunc.bin.part.json").exists()
    f.reset_at = None  # the proxy is fixed: the next run continues from the kept bytes
    t = fetch(url, tmp_path, "trunc.bin")
    assert_verified(t, tmp_path, "trunc.bin", data)
    last = cdn_gets(upstream)[-1].headers.get("Range", "")
    assert last.startswith("bytes=") and not last.startswith("bytes=0-"), last


# --- status codes -----------------------------------------------------------------------------------

def test_429_with_retry_after_waits_that_long_then_completes(tmp_path, upstream):
    data = blob(256 << 10)
    url = serve(upstream, "ra.bin", data)
    upstream.add_fault(Fault(path=r"^/cdn/", status=429, headers={"Retry-After": "1"}, times=1))
    began = time.monotonic()
    t = fetch(url, tmp_path, "ra.bin", retry=RetryPolicy(retries=4, base=0.01, cap=0.05, max_retry_after=5))
    assert_verified(t, tmp_path, "ra.bin", data)
    assert time.monotonic() - began >= 0.95, "Retry-After: 1 was honoured, not replaced by the 10 ms backoff"


def test_429_without_retry_after_backs_off_and_completes(tmp_path, upstream):
    data = blob(256 << 10)
    url = serve(upstream, "nora.bin", data)
    rule = upstream.add_fault(Fault(path=r"^/cdn/", status=429, times=3))
    t = fetch(url, tmp_path, "nora.bin")
    assert_verified(t, tmp_path, "nora.bin", data)
    assert rule.hits == 3


def test_huge_retry_after_is_capped_instead_of_hanging_the_run(tmp_path, upstream):
    data = blob(256 << 10)
    url = serve(upstream, "cap.bin", data)
    upstream.add_fault(Fault(path=r"^/cdn/", status=429, headers={"Retry-After": "86400"}, times=2))
    began = time.monotonic()
    t = fetch(url, tmp_path, "cap.bin")  # max_retry_after=0.3
    assert_verified(t, tmp_path, "cap.bin", data)
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_burst_on_resolve_and_cdn_is_retried_to_a_verified_file(tmp_path, upstream, status):
    data = blob(9 << 20, status)
    url = serve(upstream, f"b{status}.bin", data)
    # Four failures in a row: one fewer than the attempts allowed (retries=4).
    upstream.add_fault(Fault(path=r"/resolve/", status=status, times=2))
    upstream.add_fault(Fault(path=r"^/cdn/", status=status, times=2))
    t = fetch(url, tmp_path, f"b{status}.bin")
    assert_verified(t, tmp_path, f"b{status}.bin", data)


def test_5xx_that_never_ends_fails_clearly_with_no_final_file(tmp_path, upstream):
    url = serve(upstream, "down.bin", blob(64 << 10))
    upstream.add_fault(Fault(path=r"^/cdn/", status=503, times=None))
    t = fetch(url, tmp_path, "down.bin", retry=RetryPolicy(retries=2, base=0.01, cap=0.02))
    assert_clear_failure(t, tmp_path, "down.bin", "503", "try again later")


# --- wrong content ----------------------------------------------------------------------------------

def test_wrong_bytes_fail_the_hash_check_and_nothing_is_kept(tmp_path, upstream):
    data = blob(9 << 20)
    url = serve(upstream, "wrong.bin", data)
    faults(upstream, hf_key(REPO, "wrong.bin")).wrong_bytes = True
    t = fetch(url, tmp_path, "wrong.bin", sha256=hashlib.sha256(data).hexdigest())
    assert_clear_failure(t, tmp_path, "wrong.bin", "sha256 mismatch")
    assert not (tmp_path / "wrong.bin.part").exists(), "bytes that failed verification are not kept for resume"


def test_size_announced_differently_from_the_expected_size_is_refused_before_writing(tmp_path, upstream):
    data = blob(64 << 10)
    url = serve(upstream, "size.bin", data)
    t = fetch(url, tmp_path, "size.bin", size=len(data) + 1)
    assert_clear_failure(t, tmp_path, "size.bin", "size mismatch")
    assert not (tmp_path / "size.bin.part").exists()


def test_etag_changing_mid_download_restarts_and_never_mixes_two_versions(tmp_path, upstream):
    # Civitai's storage gives no content hash, only an ETag: the restart is what keeps the file whole.
    data = blob(9 << 20, 5)
    url = register_civitai_file(upstream, 9900001, "moving.bin", data)
    faults(upstream, civitai_key(9900001)).etag_change_after = 1  # the second ranged GET sees v2
    t = fetch(url, tmp_path, "moving.bin")
    assert t.state == "done", t.error
    got = (tmp_path / "moving.bin").read_bytes()
    v2 = bytes(b ^ 0x5A for b in data)
    assert got == v2, "the file is wholly the new version, not old bytes with new ones spliced in"


def test_etag_changing_on_hf_fails_clearly_against_the_linked_etag(tmp_path, upstream):
    data = blob(9 << 20, 6)
    url = serve(upstream, "moving2.bin", data)
    faults(upstream, hf_key(REPO, "moving2.bin")).etag_change_after = 1
    t = fetch(url, tmp_path, "moving2.bin")
    assert_clear_failure(t, tmp_path, "moving2.bin", "mismatch")


# --- range support ------------------------------------------------------------------------------

def test_range_ignored_downloads_one_whole_stream(tmp_path, upstream):
    data = blob(9 << 20, 7)
    url = serve(upstream, "norange.bin", data)
    faults(upstream, hf_key(REPO, "norange.bin")).ignore_range = True
    t = fetch(url, tmp_path, "norange.bin")
    assert_verified(t, tmp_path, "norange.bin", data)
    assert len(cdn_gets(upstream)) == 1, "no ranged workers against a server that answers 200"


def test_range_ignored_and_a_reset_restarts_from_zero_to_a_verified_file(tmp_path, upstream):
    data = blob(2 << 20, 8)
    url = serve(upstream, "norange2.bin", data)
    f = faults(upstream, hf_key(REPO, "norange2.bin"))
    f.ignore_range, f.reset_at = True, 1 << 20
    t = fetch(url, tmp_path, "norange2.bin")
    assert_verified(t, tmp_path, "norange2.bin", data)


# --- redirects ------------------------------------------------------------------------------------

def test_redirect_loop_fails_clearly(tmp_path, upstream):
    url = serve(upstream, "loop.bin", blob(1024))
    faults(upstream, hf_key(REPO, "loop.bin")).redirect_loop = True
    t = fetch(url, tmp_path, "loop.bin")
    assert_clear_failure(t, tmp_path, "loop.bin", "too many redirects")


@pytest.mark.parametrize("location", ["http://198.51.100.7/x.bin", "ftp://localhost/x.bin", "file:///etc/passwd"])
def test_redirect_to_plain_http_elsewhere_or_another_scheme_is_refused_without_following(tmp_path, upstream,
                                                                                         location):
    url = serve(upstream, "away.bin", blob(1024))
    faults(upstream, hf_key(REPO, "away.bin")).redirect_to = location
    t = fetch(url, tmp_path, "away.bin")
    assert t.state == "failed" and "Refusing to download" in (t.error or ""), t.error
    assert not (tmp_path / "away.bin").exists() and not (tmp_path / "away.bin.part").exists()
    assert not cdn_gets(upstream)


def test_start_url_on_a_host_not_allowed_is_refused_before_any_request(tmp_path, upstream):
    t = fetch("https://downloads.example.net/model.safetensors", tmp_path, "m.safetensors")
    assert t.state == "failed" and "not an allowed download host" in (t.error or "")
    assert not upstream.requests and not list(tmp_path.iterdir())


# --- slow, silent and absent servers ------------------------------------------------------------

def test_trickle_that_never_finishes_is_a_clear_stall_error_not_a_hang(tmp_path, upstream):
    url = serve(upstream, "slow.bin", blob(512 << 10))
    faults(upstream, hf_key(REPO, "slow.bin")).trickle = 2000  # bytes/s, forever
    began = time.monotonic()
    t = fetch(url, tmp_path, "slow.bin", cfg=config(timeout_seconds=0.4),
              retry=RetryPolicy(retries=1, base=0.01, cap=0.02))
    assert_clear_failure(t, tmp_path, "slow.bin", "stalled")
    assert time.monotonic() - began < 10


def test_trickle_once_then_normal_speed_completes(tmp_path, upstream):
    data = blob(512 << 10)
    url = serve(upstream, "slow2.bin", data)
    f = faults(upstream, hf_key(REPO, "slow2.bin"))
    f.trickle, f.trickle_times = 2000, 1
    t = fetch(url, tmp_path, "slow2.bin", cfg=config(timeout_seconds=0.4))
    assert_verified(t, tmp_path, "slow2.bin", data)


def test_server_that_accepts_but_never_answers_times_out_and_is_retried(tmp_path, upstream):
    data = blob(64 << 10)
    url = serve(upstream, "mute.bin", data)
    upstream.add_fault(Fault(path=r"^/cdn/", delay=1.2, times=1))
    t = fetch(url, tmp_path, "mute.bin", cfg=config(timeout_seconds=0.4))
    assert_verified(t, tmp_path, "mute.bin", data)


def test_connection_refused_fails_clearly_after_retries(tmp_path, upstream):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = fetch(f"http://127.0.0.1:{port}/org/repo/resolve/main/gone.bin", tmp_path, "gone.bin",
              retry=RetryPolicy(retries=2, base=0.01, cap=0.02))
    assert_clear_failure(t, tmp_path, "gone.bin", "cannot reach 127.0.0.1")


def test_dns_failure_fails_clearly_after_retries(tmp_path, upstream, monkeypatch):
    real = socket.getaddrinfo

    def no_such_host(host, *a, **kw):  # answered here: no DNS query leaves the machine
        if host == "models.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    t = fetch("https://models.invalid/m.bin", tmp_path, "dns.bin", cfg=config(extra_allowed_hosts=["models.invalid"]),
              retry=RetryPolicy(retries=2, base=0.01, cap=0.02))
    assert_clear_failure(t, tmp_path, "dns.bin", "cannot reach models.invalid")


def test_one_failing_file_does_not_stop_the_others(tmp_path, upstream):
    good = blob(512 << 10, 11)
    url_good = serve(upstream, "good.bin", good)
    url_bad = serve(upstream, "bad.bin", blob(1024))
    faults(upstream, hf_key(REPO, "bad.bin")).redirect_loop = True

    async def go():
        mgr = TransferManager(config(), {}, retry=FAST_RETRY)
        a = await mgr.submit(TransferRequest(url=url_bad, folder="x", filename="bad.bin"), str(tmp_path))
        b = await mgr.submit(TransferRequest(url=url_good, folder="x", filename="good.bin"), str(tmp_path))
        await mgr.wait()
        return a, b

    bad, ok = asyncio.run(go())
    assert bad.state == "failed"
    assert_verified(ok, tmp_path, "good.bin", good)
    assert os.listdir(tmp_path) == ["good.bin"]


def test_wrong_bytes_from_hf_are_caught_by_the_linked_etag_when_no_hash_was_given(tmp_path, upstream):
    # Hugging Face's X-Linked-Etag of an LFS file is its sha256: the engine checks against it.
    data = blob(512 << 10, 12)
    url = serve(upstream, "wrong2.bin", data)
    faults(upstream, hf_key(REPO, "wrong2.bin")).wrong_bytes = True
    t = fetch(url, tmp_path, "wrong2.bin")
    assert_clear_failure(t, tmp_path, "wrong2.bin", "sha256 mismatch")

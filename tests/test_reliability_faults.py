"""Fault matrix: every injected network fault ends with a verified file or a clear error, never a bad final file.

Each test states the fault it injects on the fake upstream and checks the one promise of the
engine: either the final name holds exactly the right bytes (sha256 checked here, independently
of the engine), or the transfer failed with a message naming the file and nothing exists under
the final name. Retries use millisecond backoffs so the whole matrix runs in seconds.
tests/test_transfer_engine.py proves the single cases (one drop, 429 with Retry-After, 500 twice,
stalls, no ranges, redirect loop, plain-http redirect, wrong bytes with a known hash); this file
extends the matrix past them: repeated resets, bursts, hangs, refused/DNS, hashes learnt from HF.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
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
    assert t.error and name in t.error.message, t.error
    for w in words:
        assert w.lower() in t.error.message.lower(), t.error
    assert not (dest / name).exists(), "nothing may appear under the final name after a failure"


def cdn_gets(up) -> list:
    return [r for r in up.requests if r.path_qs.startswith("/cdn/") and r.method == "GET"]


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


def test_429_without_retry_after_backs_off_and_completes(tmp_path, upstream):
    data = blob(256 << 10)
    url = serve(upstream, "nora.bin", data)
    rule = upstream.add_fault(Fault(path=r"^/cdn/", status=429, times=3))
    t = fetch(url, tmp_path, "nora.bin")
    assert_verified(t, tmp_path, "nora.bin", data)
    assert rule.hits == 3


def test_retry_after_beyond_the_cap_fails_at_once_saying_how_long_the_server_asked(tmp_path, upstream):
    data = blob(256 << 10)
    url = serve(upstream, "cap.bin", data)
    rule = upstream.add_fault(Fault(path=r"^/cdn/", status=429, headers={"Retry-After": "86400"}, times=None))
    t = fetch(url, tmp_path, "cap.bin")  # max_retry_after=0.3
    assert_clear_failure(t, tmp_path, "cap.bin", "Hugging Face asks to wait 86400 s (rate limit)", "try again later",
                         "HF_TOKEN")
    assert rule.hits == 1, "a wait beyond the cap is not slept through, nor asked again"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_burst_on_resolve_and_cdn_is_retried_to_a_verified_file(tmp_path, upstream, status):
    data = blob(9 << 20, status)
    url = serve(upstream, f"b{status}.bin", data)
    # Four failures in a row: one fewer than the attempts allowed (retries=4).
    upstream.add_fault(Fault(path=r"/resolve/", status=status, times=2))
    upstream.add_fault(Fault(path=r"^/cdn/", status=status, times=2))
    t = fetch(url, tmp_path, f"b{status}.bin")
    assert_verified(t, tmp_path, f"b{status}.bin", data)


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


def test_etag_changing_mid_download_when_the_resolver_knew_the_hash_fails_clearly(tmp_path, upstream):
    data = blob(9 << 20, 6)
    url = serve(upstream, "moving2.bin", data)
    faults(upstream, hf_key(REPO, "moving2.bin")).etag_change_after = 1
    t = fetch(url, tmp_path, "moving2.bin", sha256=hashlib.sha256(data).hexdigest())
    assert_clear_failure(t, tmp_path, "moving2.bin", "mismatch")


@pytest.mark.parametrize("location", ["ftp://localhost/x.bin", "file:///etc/passwd", "http://198.51.100.7/x.bin"])
def test_redirect_to_another_scheme_or_plain_http_off_loopback_is_refused_without_following(tmp_path, upstream,
                                                                                         location):
    url = serve(upstream, "away.bin", blob(1024))
    faults(upstream, hf_key(REPO, "away.bin")).redirect_to = location
    t = fetch(url, tmp_path, "away.bin")
    assert t.state == "failed" and "Refusing to download" in (t.error.message if t.error else ""), t.error
    assert not (tmp_path / "away.bin").exists() and not (tmp_path / "away.bin.part").exists()
    assert not cdn_gets(upstream)


def test_redirect_to_a_name_that_resolves_to_a_private_address_is_refused_before_connecting(tmp_path, upstream,
                                                                                          monkeypatch):
    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host, *a, **kw):  # a public-looking CDN name that answers with an intranet address
        asked.append(host)
        if host == "cdn.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443))]
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = serve(upstream, "inner.bin", blob(1024))
    faults(upstream, hf_key(REPO, "inner.bin")).redirect_to = "https://cdn.rebind.test/model.bin"
    t = fetch(url, tmp_path, "inner.bin")
    assert t.state == "failed" and t.error is not None, t.error
    assert "10.0.0.7" in t.error.message and "public addresses" in t.error.message, t.error
    assert "cdn.rebind.test" in asked and not (tmp_path / "inner.bin.part").exists()


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
              cfg=config(extra_allowed_hosts=[f"127.0.0.1:{port}"]),  # endpoints allow their own port only
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


def test_wrong_bytes_from_hf_are_caught_by_the_linked_etag_when_no_hash_was_given(tmp_path, upstream):
    # Hugging Face's X-Linked-Etag of an LFS file is its sha256: the engine checks against it.
    data = blob(512 << 10, 12)
    url = serve(upstream, "wrong2.bin", data)
    faults(upstream, hf_key(REPO, "wrong2.bin")).wrong_bytes = True
    t = fetch(url, tmp_path, "wrong2.bin")
    assert_clear_failure(t, tmp_path, "wrong2.bin", "sha256 mismatch")

"""The downloader against the fake upstream, one injected fault per test."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

from fixer.config import DownloadConfig
from fixer.events import EventBus, TransferDone, TransferProgress, VerificationReport
from fixer.models import TransferRequest
from fixer.transfer import RetryPolicy, TransferManager, download_one, resume
from tests.fake_upstream import Fault
from tests.fake_upstream import file_routes as fr

FAST = RetryPolicy(retries=3, base=0.01, cap=0.05)
MiB = 1 << 20
TINY_HF = "comfy-fixer-fixtures/tiny-model"
TINY_HF_SHA = "38431bb0d638dfc4b7bb483bb90b3635714c0d160f45bf2db3a9ff095de37829"
TINY_LORA_SHA = "918a1a96cdfff4248358c71d9cc53f8a02342c59326b341923c83dcefe224ea1"


def cfg(**kw) -> DownloadConfig:
    kw.setdefault("min_free_margin_bytes", 0)
    kw.setdefault("timeout_seconds", 5.0)
    return DownloadConfig(**kw)


def blob(size: int, seed: bytes = b"fixer") -> bytes:
    unit = hashlib.sha256(seed).digest() * 2048  # 64 KiB of non-repeating-looking bytes
    return (unit * (size // len(unit) + 1))[:size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def get(up, url: str, dest: Path, name: str = "model.gguf", config: DownloadConfig | None = None,
              secrets: dict | None = None, **req):
    r = TransferRequest(url=url, folder="loras", filename=name, **req)
    return await download_one(r, str(dest), config or cfg(), secrets or {}, retry=FAST)


def tiny_hf_url(up, repo: str = TINY_HF) -> str:
    return f"{up.base}/{repo}/resolve/main/fixture_hf_model.safetensors"


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.rglob("*"))


# ----------------------------------------------------------------- the normal paths ----------------


# The HF tiny fixture's bytes (payload "tiny-hf-file") are a repeated seed, not a safetensors file, so
# tests store it under a name whose format has no header check.
async def test_hf_lfs_file_arrives_via_the_cdn_verified(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, "fixture_hf_model.gguf", sha256=TINY_HF_SHA)
    assert t.state == "done", t.error
    assert t.sha256 == TINY_HF_SHA
    assert leftovers(tmp_path) == ["fixture_hf_model.gguf"]
    assert any(r.host.startswith("localhost") for r in upstream.requests)


async def test_bytes_that_are_not_safetensors_are_refused_under_a_safetensors_name(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, "fixture_hf_model.safetensors", sha256=TINY_HF_SHA)
    assert t.state == "failed"
    assert "safetensors header length mismatch" in t.error.message
    assert leftovers(tmp_path) == []


async def test_civitai_download_follows_the_307_to_signed_storage(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/api/download/models/9100101", tmp_path, "lora.safetensors",
                  sha256=TINY_LORA_SHA.upper(), expected_size=1200144)
    assert t.state == "done", t.error
    assert (tmp_path / "lora.safetensors").stat().st_size == 1200144
    assert any(r.path_qs.startswith("/storage/") for r in upstream.requests)


async def test_large_file_is_fetched_over_several_ranged_connections(upstream, tmp_path):
    data = blob(24 * MiB)
    url = fr.register_hf_file(upstream, "t/big", "big.bin", data)
    t = await get(upstream, url, tmp_path, "big.bin", sha256=sha(data), config=cfg(connections_per_file=4))
    assert t.state == "done", t.error
    ranges = {r.headers.get("Range") for r in upstream.requests if r.path_qs.startswith("/cdn/")}
    assert len(ranges) >= 4
    assert (tmp_path / "big.bin").read_bytes() == data


def safetensors_blob(size: int) -> bytes:
    """A valid safetensors file of `size` bytes: one uint8 tensor after a 128-byte padded header."""
    header = json.dumps({"t": {"dtype": "U8", "shape": [size - 136], "data_offsets": [0, size - 136]}})
    return (128).to_bytes(8, "little") + header.encode().ljust(128) + blob(size - 136)


async def test_the_safetensors_check_imports_load_once_every_connection_streams(upstream, tmp_path, monkeypatch):
    # numpy's import (~80 ms, mostly holding the GIL) on its thread held up the event loop while it opened the
    # connections, each starting late; it loads once all of them stream, still well before the last byte.
    import fixer.transfer.engine as engine

    data = safetensors_blob(24 * MiB)
    url = fr.register_hf_file(upstream, "t/st", "st.safetensors", data)
    asked_when_warmed: list[int] = []

    def ranges_asked() -> int:
        return len({r.headers.get("Range") for r in upstream.requests if r.path_qs.startswith("/cdn/")})

    monkeypatch.setattr(engine, "warm_safetensors", lambda: asked_when_warmed.append(ranges_asked()))
    t = await get(upstream, url, tmp_path, "st.safetensors", sha256=sha(data), config=cfg(connections_per_file=4))
    assert t.state == "done", t.error
    assert len(asked_when_warmed) == 1 and asked_when_warmed[0] >= 4  # the probe and the other three ranges


async def test_subfolder_in_the_name_is_created_inside_the_folder(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, "SDXL/sub/x.gguf")
    assert t.state == "done", t.error
    assert (tmp_path / "SDXL" / "sub" / "x.gguf").is_file()


# ----------------------------------------------------------------- faults that are retried ------------


async def test_connection_dropped_mid_file_continues_and_hash_matches(upstream, tmp_path):
    data = blob(3 * MiB)
    url = fr.register_hf_file(upstream, "t/reset", "r.bin", data)
    fr.faults(upstream, fr.hf_key("t/reset", "r.bin")).reset_at = 2 * MiB + 123
    t = await get(upstream, url, tmp_path, "r.bin", sha256=sha(data), config=cfg(connections_per_file=1))
    assert t.state == "done", t.error
    resumed = [r.headers.get("Range") for r in upstream.requests if r.path_qs.startswith("/cdn/")]
    assert len(resumed) == 2 and resumed[1] != "bytes=0-"  # the second request continued, not restarted
    assert (tmp_path / "r.bin").read_bytes() == data


async def test_429_is_retried_after_the_retry_after_delay(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"^/cdn/", status=429, headers={"Retry-After": "0"}, times=1))
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, sha256=TINY_HF_SHA)
    assert t.state == "done", t.error
    assert sum(r.path_qs.startswith("/cdn/") for r in upstream.requests) == 2


async def test_500_twice_then_success(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"/resolve/", status=500, times=2))
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, sha256=TINY_HF_SHA)
    assert t.state == "done", t.error
    assert sum("/resolve/" in r.path_qs for r in upstream.requests) == 3


async def test_5xx_that_never_ends_fails_with_a_clear_message(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"/resolve/", status=503, times=None))
    t = await get(upstream, tiny_hf_url(upstream), tmp_path)
    assert t.state == "failed"
    assert "HTTP 503" in t.error.message and "gave up after 4 attempts" in t.error.message


async def test_trickling_server_times_out_as_stalled(upstream, tmp_path):
    data = blob(2 * MiB)
    url = fr.register_hf_file(upstream, "t/slow", "s.bin", data)
    fr.faults(upstream, fr.hf_key("t/slow", "s.bin")).trickle = 400.0
    t = await download_one(TransferRequest(url=url, folder="loras", filename="s.bin"), str(tmp_path),
                           cfg(timeout_seconds=0.3), {}, retry=RetryPolicy(retries=1, base=0.01))
    assert t.state == "failed"
    assert "stalled" in t.error.message
    assert not (tmp_path / "s.bin").exists()


async def test_a_slow_link_still_reports_progress_several_times_a_second(upstream, tmp_path):
    from fixer import events

    data = blob(400 * 1024)
    url = fr.register_hf_file(upstream, "t/crawl", "c.bin", data)
    fr.faults(upstream, fr.hf_key("t/crawl", "c.bin")).trickle = 300_000.0  # small pieces, under 512 KiB a second
    bus = events.EventBus()
    seen: list[int] = []
    bus.subscribe(lambda e: seen.append(e.transfer.bytes_done) if isinstance(e, events.TransferProgress) else None)
    t = await download_one(TransferRequest(url=url, folder="loras", filename="c.bin"), str(tmp_path),
                           cfg(connections_per_file=1), {}, bus=bus, retry=FAST)
    assert t.state == "done", t.error
    assert len({b for b in seen if 0 < b < len(data)}) >= 3  # progress between the first and the last byte


async def test_trickle_once_then_normal_speed_succeeds(upstream, tmp_path):
    data = blob(2 * MiB)
    url = fr.register_hf_file(upstream, "t/slow1", "s.bin", data)
    f = fr.faults(upstream, fr.hf_key("t/slow1", "s.bin"))
    f.trickle, f.trickle_times = 400.0, 1
    t = await get(upstream, url, tmp_path, "s.bin", sha256=sha(data), config=cfg(timeout_seconds=0.3))
    assert t.state == "done", t.error


# ----------------------------------------------------------------- the file changed -----------------


async def test_no_range_support_falls_back_to_one_stream(upstream, tmp_path):
    data = blob(20 * MiB)
    url = fr.register_hf_file(upstream, "t/norange", "n.bin", data)
    fr.faults(upstream, fr.hf_key("t/norange", "n.bin")).ignore_range = True
    t = await get(upstream, url, tmp_path, "n.bin", sha256=sha(data))
    assert t.state == "done", t.error
    assert sum(r.path_qs.startswith("/cdn/") for r in upstream.requests) == 1


async def test_no_range_support_and_a_drop_starts_over_from_zero(upstream, tmp_path):
    data = blob(3 * MiB)
    url = fr.register_hf_file(upstream, "t/norange2", "n.bin", data)
    f = fr.faults(upstream, fr.hf_key("t/norange2", "n.bin"))
    f.ignore_range, f.reset_at = True, MiB
    t = await get(upstream, url, tmp_path, "n.bin", sha256=sha(data))
    assert t.state == "done", t.error
    assert (tmp_path / "n.bin").read_bytes() == data


async def test_etag_change_between_attempts_starts_over_with_the_new_bytes(upstream, tmp_path):
    data = blob(3 * MiB)
    url = fr.register_hf_file(upstream, "t/etag", "e.bin", data)
    key = fr.hf_key("t/etag", "e.bin")
    f = fr.faults(upstream, key)
    f.reset_at, f.etag_change_after = MiB, 1  # dropped after 1 MiB, and the file is replaced meanwhile
    t = await get(upstream, url, tmp_path, "e.bin")
    assert t.state == "done", t.error
    new_bytes = fr._served(upstream, key).read(0, len(data))
    assert new_bytes != data
    assert (tmp_path / "e.bin").read_bytes() == new_bytes  # never a mix of old and new


async def test_wrong_bytes_fail_the_hash_and_leave_no_file_under_the_name(upstream, tmp_path):
    data = blob(2 * MiB)
    url = fr.register_hf_file(upstream, "t/wrong", "w.safetensors", data)
    fr.faults(upstream, fr.hf_key("t/wrong", "w.safetensors")).wrong_bytes = True
    t = await get(upstream, url, tmp_path, "w.safetensors", sha256=sha(data))
    assert t.state == "failed"
    assert f"sha256 mismatch: expected {sha(data)}" in t.error.message
    assert leftovers(tmp_path) == []  # neither the final name nor a .part that cannot be trusted


async def test_truncated_safetensors_is_refused_with_expected_and_actual_size(upstream, tmp_path):
    good = upstream.payload("tiny-lora")
    url = fr.register_hf_file(upstream, "t/cut", "cut.safetensors", good[:-1000])
    t = await get(upstream, url, tmp_path, "cut.safetensors")
    assert t.state == "failed"
    assert f"expected {len(good)} bytes (from its header), got {len(good) - 1000} bytes" in t.error.message
    assert not (tmp_path / "cut.safetensors").exists()


async def test_size_differing_from_the_expected_size_fails_before_downloading(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, expected_size=999)
    assert t.state == "failed"
    assert "expected 999 bytes, got 1100000 bytes announced by the server" in t.error.message
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------- auth and not found ----------------


async def test_token_is_sent_to_hf_but_not_to_the_cdn_after_the_cross_host_redirect(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, secrets={"HF_TOKEN": "hf_secret",
                                                                      "CIVITAI_API_KEY": "civ_secret"})
    assert t.state == "done", t.error
    hub = [r for r in upstream.requests if "/resolve/" in r.path_qs]
    cdn = [r for r in upstream.requests if r.host.startswith("localhost")]
    assert hub and all(r.headers.get("Authorization") == "Bearer hf_secret" for r in hub)
    assert cdn and all("Authorization" not in r.headers for r in cdn)
    assert not any("secret" in r.path_qs for r in upstream.requests)


async def test_gated_repo_without_token_says_accept_the_license_and_set_hf_token(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream, "comfy-fixer-fixtures/gated-tiny"), tmp_path)
    assert t.state == "failed"
    assert "gated repo" in t.error.message and "accept its license" in t.error.message and "HF_TOKEN" in t.error.message
    assert leftovers(tmp_path) == []


async def test_gated_repo_with_a_token_not_granted_says_access_is_pending(upstream, tmp_path):
    upstream.state["hf_gated_denied"] = {"comfy-fixer-fixtures/gated-tiny"}
    t = await get(upstream, tiny_hf_url(upstream, "comfy-fixer-fixtures/gated-tiny"), tmp_path,
                  secrets={"HF_TOKEN": "hf_nope"})
    assert t.state == "failed"
    assert "has not been granted access" in t.error.message
    assert "hf_nope" not in t.error.message


async def test_civitai_login_required_names_civitai_api_key(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/api/download/models/9100102", tmp_path)
    assert t.state == "failed"
    assert "set CIVITAI_API_KEY" in t.error.message and "logged in" in t.error.message


async def test_civitai_key_is_sent_as_a_header_and_unlocks_the_file(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/api/download/models/9100102?token=civ_secret", tmp_path,
                  secrets={"CIVITAI_API_KEY": "civ_secret"})
    assert t.state == "done", t.error
    first = upstream.requests[0]
    assert first.headers.get("Authorization") == "Bearer civ_secret" and "token=" not in first.path_qs


async def test_civitai_early_access_explains_the_deadline(upstream, tmp_path):
    upstream.state["civitai_early_access"] = {9100103}
    t = await get(upstream, f"{upstream.base}/api/download/models/9100103", tmp_path, "mm.ckpt")
    assert t.state == "failed"
    assert "Early Access until 2099-01-01" in t.error.message


async def test_unknown_or_private_hf_repo_says_check_the_url_or_set_hf_token(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/someone/private-repo/resolve/main/x.safetensors", tmp_path)
    assert t.state == "failed"
    assert "someone/private-repo is private or does not exist" in t.error.message and "HF_TOKEN" in t.error.message


async def test_404_says_not_found_at_that_source(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/{TINY_HF}/resolve/main/nope.safetensors", tmp_path)
    assert t.state == "failed"
    assert "nope.safetensors" in t.error.message and "was not found at Hugging Face" in t.error.message


async def test_archived_civitai_model_is_reported_as_archived(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/api/download/models/9100104", tmp_path)
    assert t.state == "failed" and "archived" in t.error.message


# ----------------------------------------------------------------- safety --------------------------------


async def test_redirect_loop_fails_clearly(upstream, tmp_path):
    fr.faults(upstream, fr.hf_key(TINY_HF, "fixture_hf_model.safetensors")).redirect_loop = True
    t = await get(upstream, tiny_hf_url(upstream), tmp_path)
    assert t.state == "failed" and "too many redirects" in t.error.message


async def test_redirect_to_a_plain_http_host_is_refused(upstream, tmp_path):
    fr.faults(upstream, fr.hf_key(TINY_HF, "fixture_hf_model.safetensors")).redirect_to = "http://cdn.example.com/x"
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, secrets={"HF_TOKEN": "hf_secret"})
    assert t.state == "failed" and "only https is followed" in t.error.message
    assert leftovers(tmp_path) == []


async def test_download_from_a_host_not_allowed_never_starts(upstream, tmp_path):
    t = await get(upstream, "https://models.example.com/x.safetensors", tmp_path)
    assert t.state == "failed" and "not an allowed download host" in t.error.message
    assert upstream.requests == []


async def test_name_climbing_out_of_the_folder_is_refused(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path / "loras", "../evil.safetensors")
    assert t.state == "failed" and "climbs out" in t.error.message
    assert upstream.requests == []


async def test_absolute_name_is_refused(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, "/etc/evil.gguf")
    assert t.state == "failed" and "absolute path" in t.error.message
    assert upstream.requests == []


async def test_symlink_pointing_outside_the_folder_is_refused(upstream, tmp_path):
    (tmp_path / "loras").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "loras" / "link")
    t = await get(upstream, tiny_hf_url(upstream), tmp_path / "loras", "link/x.gguf")
    assert t.state == "failed" and "resolves outside" in t.error.message
    assert list((tmp_path / "elsewhere").iterdir()) == []


async def test_not_enough_space_fails_before_a_byte_is_written(upstream, tmp_path):
    t = await get(upstream, tiny_hf_url(upstream), tmp_path, config=cfg(min_free_margin_bytes=2**62))
    assert t.state == "failed" and "Not enough disk space" in t.error.message
    assert leftovers(tmp_path) == []


async def test_pickle_files_are_flagged_with_a_warning(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/api/download/models/9100103", tmp_path, "mm.ckpt")
    assert t.state == "done", t.error
    assert "pickle" in t.warning


async def test_pickle_files_are_refused_when_config_says_so(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/api/download/models/9100103", tmp_path, "mm.ckpt",
                  config=cfg(allow_pickle=False))
    assert t.state == "failed" and "allow_pickle" in t.error.message
    assert upstream.requests == []


async def test_existing_file_is_never_overwritten(upstream, tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"mine")
    t = await get(upstream, tiny_hf_url(upstream), tmp_path)
    assert t.state == "failed" and "already exists" in t.error.message
    assert (tmp_path / "model.gguf").read_bytes() == b"mine"


async def test_a_sidecar_left_by_a_kill_after_the_rename_is_cleaned_up(upstream, tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"finished")
    stale = tmp_path / "model.gguf.part.json"
    stale.write_text("{}")
    t = await get(upstream, tiny_hf_url(upstream), tmp_path)
    assert t.state == "failed" and "already exists" in t.error.message
    assert not stale.exists() and (tmp_path / "model.gguf").read_bytes() == b"finished"


# ----------------------------------------------------------------- resume and the manager --------------


async def test_cancelled_download_keeps_the_part_and_resumes_where_it_stopped(upstream, tmp_path):
    data = blob(6 * MiB)
    url = fr.register_hf_file(upstream, "t/resume", "big.bin", data)
    f = fr.faults(upstream, fr.hf_key("t/resume", "big.bin"))
    f.rate = 4 * MiB  # slow enough to cancel mid-way
    mgr = TransferManager(cfg(connections_per_file=1), {}, retry=FAST)
    t = await mgr.submit(TransferRequest(url=url, folder="loras", filename="big.bin"), str(tmp_path))
    while t.bytes_done < 2 * MiB:
        await asyncio.sleep(0.02)
    mgr.cancel(t.target)
    await mgr.wait()
    assert t.state == "cancelled"
    assert not (tmp_path / "big.bin").exists() and (tmp_path / "big.bin.part").exists()
    kept = resume.load(tmp_path / "big.bin.part")
    assert kept is not None and resume.prefix_end(kept.ranges) >= 2 * MiB

    f.rate = None
    upstream.requests.clear()
    t2 = await get(upstream, url, tmp_path, "big.bin", sha256=sha(data), config=cfg(connections_per_file=1))
    assert t2.state == "done", t2.error
    cdn = [r.headers.get("Range") for r in upstream.requests if r.path_qs.startswith("/cdn/")]
    assert cdn[-1] == f"bytes={resume.prefix_end(kept.ranges)}-{len(data) - 1}"
    assert (tmp_path / "big.bin").read_bytes() == data
    assert leftovers(tmp_path) == ["big.bin"]


async def test_part_from_a_file_that_changed_since_is_discarded(upstream, tmp_path):
    data = blob(2 * MiB)
    url = fr.register_hf_file(upstream, "t/stale", "s.bin", data)
    part = tmp_path / "s.bin.part"
    part.write_bytes(b"\xff" * MiB)
    resume.save(part, resume.Sidecar(url=url, validator="an-older-etag", total=len(data), ranges=[(0, MiB)]))
    t = await get(upstream, url, tmp_path, "s.bin", sha256=sha(data))
    assert t.state == "done", t.error
    assert (tmp_path / "s.bin").read_bytes() == data


async def test_same_target_submitted_twice_downloads_once(upstream, tmp_path):
    mgr = TransferManager(cfg(), {}, retry=FAST)
    req = TransferRequest(url=tiny_hf_url(upstream), folder="loras", filename="x.gguf")
    a = await mgr.submit(req, str(tmp_path))
    b = await mgr.submit(req, str(tmp_path))
    await mgr.wait()
    assert a is b and a.state == "done"
    assert sum(r.path_qs.startswith("/cdn/") for r in upstream.requests) == 1


async def test_at_most_max_concurrent_files_download_at_once(upstream, tmp_path):
    bus = EventBus()
    live: set[str] = set()
    peak = [0]

    def watch(e):
        if isinstance(e, TransferProgress) and e.transfer.state == "downloading":
            live.add(e.transfer.target)
        elif isinstance(e, (TransferProgress, TransferDone)):  # its bytes are in: checked while the next starts
            live.discard(e.transfer.target)
        peak[0] = max(peak[0], len(live))

    bus.subscribe(watch)
    mgr = TransferManager(cfg(max_concurrent=2), {}, bus=bus, retry=FAST)
    for i in range(4):
        url = fr.register_hf_file(upstream, "t/many", f"{i}.bin", blob(MiB, bytes([i])))
        fr.faults(upstream, fr.hf_key("t/many", f"{i}.bin")).rate = 8 * MiB
        await mgr.submit(TransferRequest(url=url, folder="loras", filename=f"{i}.bin"), str(tmp_path))
    done = await mgr.wait()
    assert all(t.state == "done" for t in done)
    assert peak[0] == 2


async def test_a_freed_slot_goes_to_the_largest_file_waiting(upstream, tmp_path):
    # The run's end is bound by its last file: a large file queued behind small ones would run alone at the end.
    bus = EventBus()
    started: list[str] = []

    def watch(e):
        if isinstance(e, TransferProgress) and e.transfer.state == "downloading" and \
                e.transfer.request.filename not in started:
            started.append(e.transfer.request.filename)

    bus.subscribe(watch)
    mgr = TransferManager(cfg(max_concurrent=1), {}, bus=bus, retry=FAST)
    sizes = {"first.bin": MiB, "small.bin": MiB // 2, "big.bin": 3 * MiB, "unknown.bin": None, "mid.bin": 2 * MiB}
    for name, size in sizes.items():
        url = fr.register_hf_file(upstream, "t/order", name, blob(size or MiB, name.encode()))
        await mgr.submit(TransferRequest(url=url, folder="loras", filename=name, expected_size=size), str(tmp_path))
    done = await mgr.wait()
    assert all(t.state == "done" for t in done)
    # The first takes the free slot at once; then the largest waiting (a size not known counts as largest).
    assert started == ["first.bin", "unknown.bin", "big.bin", "mid.bin", "small.bin"]


async def test_with_several_slots_one_takes_the_smallest_waiting_and_the_others_the_largest():
    # Small files' fixed costs (round trips, checks) hide behind the large transfers instead of making the tail.
    from fixer.transfer.slots import Slots

    gate = Slots(2)
    holders = [await gate.acquire(1), await gate.acquire(1)]  # free slots go at once
    order: list[int] = []

    async def wait(size: int) -> object:
        token = await gate.acquire(size)
        order.append(size)
        return token

    waiting = [asyncio.create_task(wait(size)) for size in (5, 50, 1, 20, 2)]
    await asyncio.sleep(0)
    gate.release(holders[0])  # the small lane: the smallest
    await asyncio.sleep(0)
    gate.release(holders[1])  # a large lane: the largest
    await asyncio.sleep(0)
    small, large = waiting[2].result(), waiting[1].result()
    gate.release(large)  # the large lane again: the largest left
    await asyncio.sleep(0)
    gate.release(small)  # the small lane again: the smallest left
    await asyncio.sleep(0)
    assert order == [1, 50, 20, 2]
    for task in waiting:
        task.cancel()


async def test_a_slot_handed_to_a_cancelled_download_passes_on():
    from fixer.transfer.slots import Slots

    gate = Slots(1)
    held = await gate.acquire(1)
    waiter = asyncio.create_task(gate.acquire(10))
    await asyncio.sleep(0)
    gate.release(held)  # handed to the waiter...
    waiter.cancel()  # ...cancelled before it ran
    try:
        await waiter
    except asyncio.CancelledError:
        pass
    await asyncio.wait_for(gate.acquire(5), 1)  # the slot came back instead of leaking


async def test_the_next_file_starts_while_the_last_ones_bytes_are_checked(upstream, tmp_path, monkeypatch):
    import threading

    from fixer.transfer import engine

    second_started = threading.Event()
    real_check = engine.check_part

    def slow_check(*args, **kw):  # the checks of the first file (a disk flushing, a big header) take a while
        if args[0].endswith("a.bin.part"):
            second_started.wait(5)
        return real_check(*args, **kw)

    monkeypatch.setattr(engine, "check_part", slow_check)
    bus = EventBus()
    bus.subscribe(lambda e: isinstance(e, TransferProgress) and e.transfer.state == "downloading"
                  and e.transfer.request.filename == "b.bin" and second_started.set())
    mgr = TransferManager(cfg(max_concurrent=1), {}, bus=bus, retry=FAST)
    for name in ("a.bin", "b.bin"):
        url = fr.register_hf_file(upstream, "t/overlap", name, blob(MiB, name.encode()))
        await mgr.submit(TransferRequest(url=url, folder="loras", filename=name, expected_size=MiB), str(tmp_path))
    started = asyncio.get_running_loop().time()
    done = await mgr.wait()
    assert [t.state for t in done] == ["done", "done"]
    assert second_started.is_set() and asyncio.get_running_loop().time() - started < 4


async def test_one_failure_does_not_stop_the_others(upstream, tmp_path):
    mgr = TransferManager(cfg(), {}, retry=FAST)
    bad = await mgr.submit(TransferRequest(url=tiny_hf_url(upstream, "comfy-fixer-fixtures/gated-tiny"),
                                           folder="loras", filename="g.safetensors"), str(tmp_path))
    good = await mgr.submit(TransferRequest(url=tiny_hf_url(upstream), folder="loras", filename="ok.gguf"),
                            str(tmp_path))
    await mgr.wait()
    assert bad.state == "failed" and good.state == "done"


async def test_progress_and_done_events_carry_bytes_and_state(upstream, tmp_path):
    bus = EventBus()
    seen: list = []
    bus.subscribe(seen.append)
    r = TransferRequest(url=tiny_hf_url(upstream), folder="loras", filename="x.gguf")
    t = await download_one(r, str(tmp_path), cfg(), {}, bus=bus, retry=FAST)
    assert any(isinstance(e, TransferProgress) for e in seen)
    done = [e for e in seen if isinstance(e, TransferDone)]
    assert len(done) == 1 and done[0].transfer is t and t.bytes_done == t.total == 1100000


async def test_batch_check_runs_every_n_downloads_and_writes_the_report(upstream, tmp_path):
    bus = EventBus()
    reports: list = []
    bus.subscribe(lambda e: reports.append(e) if isinstance(e, VerificationReport) else None)
    out = tmp_path / "output"
    mgr = TransferManager(cfg(verify_batch_every=2), {}, bus=bus, output_dir=out, retry=FAST)
    for i in range(3):
        await mgr.submit(TransferRequest(url=tiny_hf_url(upstream), folder="loras", filename=f"m{i}.gguf"),
                         str(tmp_path / "loras"))
    await mgr.wait()
    assert [len(r.verified) for r in reports] == [2, 1]
    report = json.loads((out / "verification_report.json").read_text())
    assert report["counts"] == {"verified": 3, "failed": 0}
    records = json.loads((out / "downloaded_models.json").read_text())["downloads"]
    assert {r["state"] for r in records} == {"done"} and len(records) == 3
    assert sorted(p.name for p in out.glob("download_*.sh")) == [
        "download_001_m0.gguf.sh", "download_002_m1.gguf.sh", "download_003_m2.gguf.sh"]


async def test_expired_signed_link_is_renewed_without_losing_bytes(upstream, tmp_path):
    data = blob(24 * MiB)
    url = fr.register_hf_file(upstream, "t/expire", "x.bin", data)
    fr.faults(upstream, fr.hf_key("t/expire", "x.bin")).expire_after = 3  # the link dies mid-download
    t = await get(upstream, url, tmp_path, "x.bin", sha256=sha(data), config=cfg(connections_per_file=2))
    assert t.state == "done", t.error
    assert sum("/resolve/" in r.path_qs for r in upstream.requests) == 2  # resolved once more, not restarted
    refused = [r for r in upstream.requests if r.path_qs.startswith("/cdn/") and "fake0-" in r.path_qs]
    assert len(refused) >= 4  # the three served before the expiry, then the refused one(s)
    assert (tmp_path / "x.bin").read_bytes() == data


async def test_storage_host_refusing_the_first_link_is_not_blamed_on_the_token(upstream, tmp_path):
    upstream.add_fault(Fault(path=r"^/storage/", status=403, times=None))
    t = await get(upstream, f"{upstream.base}/api/download/models/9100101", tmp_path, "l.safetensors",
                  secrets={"CIVITAI_API_KEY": "civ_secret"})
    assert t.state == "failed"
    assert "localhost refused the signed download link (HTTP 403)" in t.error.message
    assert "CIVITAI_API_KEY" not in t.error.message


async def test_civitai_link_pasted_with_its_token_uses_it_as_a_header(upstream, tmp_path):
    t = await get(upstream, f"{upstream.base}/api/download/models/9100102?token=pasted_key", tmp_path)
    assert t.state == "done", t.error
    assert "pasted_key" not in t.request.url  # what the panel and status see
    first = upstream.requests[0]
    assert first.headers.get("Authorization") == "Bearer pasted_key" and "pasted_key" not in first.path_qs


async def test_idle_connections_take_over_the_tail_of_a_slow_one(upstream, tmp_path):
    data = blob(24 * MiB)
    url = fr.register_hf_file(upstream, "t/straggler", "s.bin", data)
    f = fr.faults(upstream, fr.hf_key("t/straggler", "s.bin"))
    f.straggler_at, f.straggler_rate = 20 * MiB, 2 * MiB  # the last 4 MiB piece gets a crawling connection
    t = await get(upstream, url, tmp_path, "s.bin", sha256=sha(data), config=cfg(connections_per_file=4))
    assert t.state == "done", t.error
    starts = [int(r.headers["Range"][6:].split("-")[0]) for r in upstream.requests
              if r.path_qs.startswith("/cdn/") and r.headers.get("Range")]
    assert any(20 * MiB < s < 24 * MiB for s in starts)  # someone else fetched part of the slow piece
    assert (tmp_path / "s.bin").read_bytes() == data


async def test_a_host_that_cannot_be_reached_fails_the_other_files_at_once(tmp_path):
    # A port nothing listens on: connection refused, as for a dead mirror or a machine offline.
    import socket as _socket
    import time as _time

    from fixer.transfer import TransferManager
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mgr = TransferManager(cfg(max_concurrent=1, extra_allowed_hosts=["127.0.0.1"]), {},
                          retry=RetryPolicy(retries=2, base=0.05, cap=0.05))
    for i in range(4):
        await mgr.submit(TransferRequest(url=f"http://127.0.0.1:{port}/f{i}.safetensors", folder="loras",
                                         filename=f"f{i}.safetensors"), str(tmp_path))
    started = _time.monotonic()
    done = await mgr.wait()
    assert [t.state for t in done] == ["failed"] * 4
    assert sum("just gave up" in t.error.message for t in done) == 3  # only the first spent its retries
    assert all("cannot reach 127.0.0.1" in t.error.message for t in done)
    assert _time.monotonic() - started < 5


async def test_hf_hub_offline_downloads_nothing_from_the_hub_and_says_so(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    upstream.requests.clear()
    t = await get(upstream, tiny_hf_url(upstream), tmp_path)
    assert t.state == "failed" and "HF_HUB_OFFLINE is set" in t.error.message and "unset it" in t.error.message
    assert not upstream.requests and leftovers(tmp_path) == []

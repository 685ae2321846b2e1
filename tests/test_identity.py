"""Models by identity: the hash index, found by bytes, duplicates, the lockfile, the shared cache,
identifying unknown files. End to end through `python -m fixer <command>` against the fake upstream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixer.config import DownloadConfig
from fixer.errors import FixerError, IntegrityError
from fixer.host.host import StandaloneHost
from fixer.identity.cache import SharedCache
from fixer.identity.duplicates import deduplicate, find_duplicates
from fixer.identity.hash_index import HashIndex, IndexProgress, header_hint
from fixer.identity.lockfile import parse_lockfile
from fixer.identity.sync import SyncTarget, sync_lockfile
from fixer.state import SEED_DATA
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream import api_routes, payload_bytes
from tests.fake_upstream import file_routes as fr
from tests.test_schema import check

KiB = 1024


def model_bytes(seed: str, n: int = 64 * KiB) -> bytes:
    return payload_bytes({"recipe": "safetensors-f16", "seed": seed, "n_values": n})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cli(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    """`python -m fixer ARGS`, reading the config.json its --state-dir holds (state_dir writes one)."""
    if "--state-dir" in args:
        args = [*args, "--config", str(Path(args[args.index("--state-dir") + 1]) / "config.json")]
    return subprocess.Popen([sys.executable, "-m", "fixer", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def run_ok(args: list[str], env: dict[str, str], expect: int = 0) -> str:
    proc = cli(args, env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == expect, (out, err)
    return out


def env_for(upstream) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_API_KEY")}
    return {**env, **upstream.env(), "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": str(ROOT)}


def state_dir(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"download": {"connections_per_file": 1,
                                                            "min_free_margin_bytes": 0}}))
    return d


FILES = {"loras/style.safetensors": "style:", "checkpoints/sd/base.safetensors": "base:",
         "vae/clear.safetensors": "clear:"}


def served_root(upstream, tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """A root holding three models a workflow uses, each served by the fake Hub and linked in models[]."""
    data = {rel: model_bytes(seed) for rel, seed in FILES.items()}
    root = make_comfy_root(tmp_path / "a", {f"models/{rel}": b for rel, b in data.items()})
    nodes = []
    for i, (rel, b) in enumerate(data.items()):
        folder, name = rel.split("/", 1)
        url = fr.register_hf_file(upstream, f"org/{folder}", name, b)
        loader = {"loras": "LoraLoaderModelOnly", "checkpoints": "CheckpointLoaderSimple", "vae": "VAELoader"}[folder]
        nodes.append(node(i + 1, loader, [name] + ([1.0] if folder == "loras" else []),
                          models=[{"name": name, "url": url, "directory": folder}]))
    wf = write_json(tmp_path / "wf.json", make_workflow(nodes))
    return root, wf, data


def resolve_requests(upstream) -> list[str]:
    return [r.path_qs for r in upstream.requests if "/resolve/" in r.path_qs]


# -- the lockfile ------------------------------------------------------------------------------------------
def test_lockfile_from_one_root_reproduces_on_a_fresh_root_byte_for_byte(upstream, tmp_path):
    root, wf, data = served_root(upstream, tmp_path)
    env = env_for(upstream)
    lock = tmp_path / "models.lock.json"
    run_ok(["lock", "--comfyui-root", str(root), "--workflow", str(wf), "-o", str(lock),
            "--state-dir", str(state_dir(tmp_path, "s1"))], env)
    doc = json.loads(lock.read_text())
    check("models.lock.json", doc)
    assert {(m["folder"], m["name"]): m["sha256"] for m in doc["models"]} == {
        tuple(rel.split("/", 1)): sha(b) for rel, b in data.items()}
    assert all(m["urls"] and m["found_by"] == "workflow" and m["size"] > 0 for m in doc["models"])

    fresh = make_comfy_root(tmp_path / "b")
    s2 = state_dir(tmp_path, "s2")
    run_ok(["sync", str(lock), "--comfyui-root", str(fresh), "--state-dir", str(s2)], env)
    for rel, b in data.items():
        assert (fresh / "models" / rel).read_bytes() == b
    status = json.loads((s2 / "status.json").read_text())
    assert status["phase"] == "complete" and status["data"]["downloaded"] == 3
    check("status.json", status)
    check("sync", {k: v for k, v in status["data"].items() if k not in SEED_DATA})  # the guide's fields beside
    # Synced again: everything already there, nothing fetched.
    before = len(resolve_requests(upstream))
    out = run_ok(["sync", str(lock), "--comfyui-root", str(fresh), "--state-dir", str(s2)], env)
    assert len(resolve_requests(upstream)) == before and out.count("present") == 3


def test_sync_never_overwrites_a_different_file(upstream, tmp_path):
    root, wf, _data = served_root(upstream, tmp_path)
    env = env_for(upstream)
    lock = tmp_path / "models.lock.json"
    run_ok(["lock", "--comfyui-root", str(root), "--workflow", str(wf), "-o", str(lock),
            "--state-dir", str(state_dir(tmp_path, "s1"))], env)
    fresh = make_comfy_root(tmp_path / "b", {"models/vae/clear.safetensors": b"mine, not yours"})
    s2 = state_dir(tmp_path, "s2")
    run_ok(["sync", str(lock), "--comfyui-root", str(fresh), "--state-dir", str(s2)], env, expect=1)
    assert (fresh / "models/vae/clear.safetensors").read_bytes() == b"mine, not yours"
    status = json.loads((s2 / "status.json").read_text())
    assert [e["code"] for e in status["errors"]] == ["file_differs"] and status["phase"] == "error"


def test_a_hostile_lockfile_is_refused_entry_by_entry(tmp_path, upstream):
    good = {"name": "ok.safetensors", "folder": "loras", "size": 10, "sha256": "a" * 64,
            "urls": [f"{upstream.base}/org/x/resolve/main/ok.safetensors", "http://evil.example/x.safetensors",
                     "file:///etc/passwd"]}
    bad = [{**good, "name": "../../evil.safetensors"}, {**good, "name": "/etc/evil.safetensors"},
           {**good, "sha256": "zz"}, {**good, "size": 2**60}, {**good, "size": True}, "not an object",
           {**good, "folder": "../custom_nodes"}]
    parsed = parse_lockfile({"lockfile_version": 1, "models": [good, *bad]}, "test")
    assert [e.name for e in parsed.entries] == ["ok.safetensors"]
    assert parsed.entries[0].urls == [good["urls"][0]] and len(parsed.dropped_urls) == 2
    assert len(parsed.refused) == len(bad)
    with pytest.raises(FixerError) as e:
        parse_lockfile({"models": "x"}, "test")
    assert e.value.code == "lockfile_invalid"
    # Folders and file types through the host's write-location check: nothing written outside model folders.
    root = make_comfy_root(tmp_path / "r")
    host = StandaloneHost.from_root(root)
    entries = [{**good, "urls": [], "folder": "custom_nodes"}, {**good, "urls": [], "name": "evil.py"}]
    parsed = parse_lockfile({"lockfile_version": 1, "models": entries}, "test")
    target = SyncTarget(host.folders(), host.extensions, HashIndex(None), DownloadConfig(), {})
    data = asyncio.run(sync_lockfile(parsed, target))
    assert sorted(r.error.code for r in data.rows if r.error) == ["unsafe_file_type", "unsafe_folder"]
    assert not list((root / "custom_nodes").iterdir()) and not (root / "models/loras/evil.py").exists()


# -- found by bytes ----------------------------------------------------------------------------------------
def test_a_renamed_copy_is_found_by_hash_and_linked_not_downloaded(upstream, tmp_path):
    root, wf, data = served_root(upstream, tmp_path)
    env = env_for(upstream)
    lock = tmp_path / "models.lock.json"
    run_ok(["lock", "--comfyui-root", str(root), "--workflow", str(wf), "-o", str(lock),
            "--state-dir", str(state_dir(tmp_path, "s1"))], env)
    renamed = {f"models/loras/old names/{i}.safetensors": b for i, b in enumerate(data.values())}
    fresh = make_comfy_root(tmp_path / "b", renamed)
    before = len(resolve_requests(upstream))
    run_ok(["sync", str(lock), "--comfyui-root", str(fresh), "--state-dir", str(state_dir(tmp_path, "s2"))], env)
    assert len(resolve_requests(upstream)) == before  # nothing downloaded
    for rel, b in data.items():
        placed = fresh / "models" / rel
        assert placed.read_bytes() == b and placed.stat().st_nlink == 2  # a hard link of the renamed copy


# -- the shared cache --------------------------------------------------------------------------------------
def test_four_processes_syncing_one_lockfile_through_one_cache_fetch_each_file_once(upstream, tmp_path):
    root, wf, data = served_root(upstream, tmp_path)
    for rel in data:
        folder, name = rel.split("/", 1)
        fr.faults(upstream, fr.hf_key(f"org/{folder}", name)).rate = 256 * KiB  # slow: the four overlap
    env = env_for(upstream)
    lock = tmp_path / "models.lock.json"
    run_ok(["lock", "--comfyui-root", str(root), "--workflow", str(wf), "-o", str(lock),
            "--state-dir", str(state_dir(tmp_path, "s0"))], env)
    cache = tmp_path / "shared-cache"
    upstream.requests.clear()
    roots = [make_comfy_root(tmp_path / f"m{i}") for i in range(4)]
    procs = [cli(["sync", str(lock), "--comfyui-root", str(r), "--state-dir", str(state_dir(tmp_path, f"s{i + 1}")),
                  "--cache-dir", str(cache)], env) for i, r in enumerate(roots)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (out, err)
    fetched = resolve_requests(upstream)
    assert sorted(fetched) == sorted(set(fetched)) and len(fetched) == len(data)  # each file once
    for r in roots:
        for rel, b in data.items():
            assert (r / "models" / rel).read_bytes() == b
            assert (r / "models" / rel).stat().st_ino == (cache / "sha256" / sha(b)[:2] / sha(b)).stat().st_ino
    assert not list((cache / "locks").glob("*.lock"))


def test_a_stale_lock_is_taken_over_and_a_live_one_waited_for(tmp_path):
    # Stale after 5 s, well past the 0.3 s wait: under load the live lock must not age into a stale one
    # between taking it and asking (at 0.5 s it did, one suite run in several).
    cache = SharedCache(tmp_path / "c", stale_after=5)
    body = b"x" * 1000
    digest = sha(body)

    async def fetch(tmp: Path) -> tuple[Path, bool]:
        (tmp / "f").write_bytes(body)
        return tmp / "f", False

    lock = cache.try_lock(digest)
    assert lock is not None and cache.try_lock(digest) is None
    with pytest.raises(FixerError) as e:  # live (just touched): waited for, then given up
        asyncio.run(cache.ensure(digest, len(body), fetch, max_wait=0.3))
    assert e.value.code == "cache_busy"
    os.utime(lock.path, (time.time() - 30, time.time() - 30))  # its owner died: no heartbeat since
    path, fetched = asyncio.run(cache.ensure(digest, len(body), fetch, max_wait=5))
    assert fetched and path.read_bytes() == body and not lock.path.exists()


def test_a_wrong_or_half_written_cache_entry_is_never_used(tmp_path):
    cache = SharedCache(tmp_path / "c")
    body = b"y" * 1000

    async def short(tmp: Path) -> tuple[Path, bool]:
        (tmp / "f").write_bytes(body[:500])
        return tmp / "f", False

    async def wrong(tmp: Path) -> tuple[Path, bool]:
        (tmp / "f").write_bytes(b"z" * 1000)
        return tmp / "f", False

    for fetch in (short, wrong):
        with pytest.raises(IntegrityError):
            asyncio.run(cache.ensure(sha(body), len(body), fetch))
        assert cache.lookup(sha(body), len(body)) is None and not cache.object_path(sha(body)).exists()


# -- the hash index ----------------------------------------------------------------------------------------
def test_a_second_scan_hashes_nothing_and_a_changed_file_only_itself(tmp_path):
    files = {f"models/loras/{i}.safetensors": f"lora {i}".encode() * 100 for i in range(5)}
    root = make_comfy_root(tmp_path, files)
    host = StandaloneHost.from_root(root)
    where = tmp_path / "state" / "hash_index.json"
    first = IndexProgress()
    got = HashIndex(where).scan(host, first)
    assert {f.sha256 for f in got} == {sha(b) for b in files.values()}
    assert first.hashed_bytes == sum(len(b) for b in files.values())
    second = IndexProgress()
    HashIndex(where).scan(host, second)  # a new process: the index from disk
    assert second.hashed_bytes == 0 and second.files_done == 5
    changed = root / "models/loras/3.safetensors"
    changed.write_bytes(b"new bytes")
    third = IndexProgress()
    again = HashIndex(where).scan(host, third)
    assert third.hashed_bytes == len(b"new bytes")
    assert sha(b"new bytes") in {f.sha256 for f in again}


def test_a_safetensors_header_hash_is_only_a_hint():
    claimed = "ab" * 32
    header = json.dumps({"__metadata__": {"modelspec.hash_sha256": "0x" + claimed}}).encode()
    blob = len(header).to_bytes(8, "little") + header
    assert header_hint(blob) == claimed and header_hint(b"\xff" * 8 + b"{}") is None


# -- duplicates --------------------------------------------------------------------------------------------
def test_duplicates_across_folders_and_installs_reported_and_linked_without_losing_a_file(tmp_path):
    a, b = model_bytes("dup-a:"), model_bytes("dup-b:")
    one = make_comfy_root(tmp_path / "one", {"models/loras/a.safetensors": a,
                                             "models/checkpoints/a copy.safetensors": a,
                                             "models/vae/b.safetensors": b, "models/vae/single.safetensors": b"solo"})
    two = make_comfy_root(tmp_path / "two", {"models/loras/a.safetensors": a, "models/loras/b.safetensors": b})
    index = HashIndex(None)
    pairs = [(str(r), f) for r in (one, two) for f in index.scan(StandaloneHost.from_root(r))]
    report = find_duplicates(pairs)
    assert sorted(len(g.copies) for g in report.groups) == [2, 3]
    assert report.wasted_bytes == 2 * len(a) + len(b)
    deduplicate(report, index)
    assert report.wasted_bytes == 0 and report.linked == 3 and report.freed_bytes == 2 * len(a) + len(b)
    for path, body in ((one / "models/loras/a.safetensors", a), (one / "models/checkpoints/a copy.safetensors", a),
                       (two / "models/loras/a.safetensors", a), (one / "models/vae/b.safetensors", b),
                       (two / "models/loras/b.safetensors", b), (one / "models/vae/single.safetensors", b"solo")):
        assert path.read_bytes() == body
    assert (two / "models/loras/a.safetensors").stat().st_ino == (one / "models/loras/a.safetensors").stat().st_ino


def test_dedupe_killed_mid_way_loses_no_file_and_finishes_when_run_again(tmp_path):
    groups = 400  # enough links that the kill lands among them, not after the last
    files: dict[str, bytes] = {}
    for i in range(groups):
        body = f"group {i} ".encode() * 100
        files[f"models/loras/g{i}.safetensors"] = body
        files[f"models/checkpoints/g{i} copy.safetensors"] = body
    root = make_comfy_root(tmp_path, files)
    state = state_dir(tmp_path, "state")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["dupes", "--fix", "--comfyui-root", str(root), "--state-dir", str(state)]
    run_ok(["hashes", "--comfyui-root", str(root), "--state-dir", str(state)], env)
    proc = cli(args, env)
    deadline = time.monotonic() + 60
    copies = [root / rel for rel in files if "copy" in rel]
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_nlink > 1 for p in copies):
            break
        time.sleep(0.001)
    assert proc.poll() is None, "the fix ended before it could be killed mid-way"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    linked = sum(p.stat().st_nlink > 1 for p in copies)
    assert 0 < linked < groups, linked
    for rel, body in files.items():  # every name still holds its bytes
        assert (root / rel).read_bytes() == body
    out = run_ok(args + ["--json"], env)
    check("duplicates", json.loads(out))
    assert json.loads(out)["wasted_bytes"] == 0
    for rel, body in files.items():
        assert (root / rel).read_bytes() == body and (root / rel).stat().st_nlink == 2
    assert not list(root.rglob("*.cfs-link"))


# -- identify unknown files --------------------------------------------------------------------------------
def test_unknown_files_named_by_a_batch_hash_lookup_and_given_a_civitai_info_sidecar(upstream, tmp_path):
    bodies = [f"unknown model {i}".encode() * 50 for i in range(120)]
    files = {f"models/loras/u{i}.safetensors": b for i, b in enumerate(bodies)}
    root = make_comfy_root(tmp_path, files)
    api_routes.add_civitai_model(upstream, {
        "id": 777, "name": "Known Lora", "type": "LORA", "nsfw": False, "creator": {"username": "c"},
        "modelVersions": [{"id": 7770, "name": "v2", "baseModel": "SDXL 1.0", "files": [{
            "id": 1, "name": "known.safetensors", "sizeKB": 1.0, "type": "Model", "primary": True,
            "hashes": {"SHA256": sha(bodies[5]).upper()},
            "downloadUrl": "https://civitai.com/api/download/models/7770"}]}]})
    upstream.requests.clear()
    out = run_ok(["identify", "--comfyui-root", str(root), "--state-dir", str(state_dir(tmp_path, "s")), "--json"],
                 env_for(upstream))
    found = json.loads(out)
    check("identified", found)
    assert [(f["model_id"], f["version_id"], f["model_name"]) for f in found] == [(777, 7770, "Known Lora")]
    batches = [r for r in upstream.requests if r.path_qs.endswith("/model-versions/by-hash") and r.method == "POST"]
    assert len(batches) == 2  # 120 hashes: 100 + 20
    sidecar = root / "models/loras/u5.civitai.info"
    assert json.loads(sidecar.read_text())["id"] == 7770


def test_a_lockfile_of_files_without_links_syncs_elsewhere_through_the_cache(tmp_path):
    """Files nobody has a link for (trained here, copied in): `lock --cache-dir` stores them in the shared
    cache, and a sync on another root links them from there."""
    data = {"models/loras/own.safetensors": model_bytes("own:"), "models/vae/own vae.safetensors": model_bytes("v:")}
    root = make_comfy_root(tmp_path / "a", data)
    wf = write_json(tmp_path / "wf.json", make_workflow([node(1, "LoraLoaderModelOnly", ["own.safetensors", 1.0]),
                                                         node(2, "VAELoader", ["own vae.safetensors"])]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lock, cache = tmp_path / "models.lock.json", tmp_path / "cache"
    run_ok(["lock", "--comfyui-root", str(root), "--workflow", str(wf), "-o", str(lock), "--cache-dir", str(cache),
            "--state-dir", str(state_dir(tmp_path, "s1"))], env)
    assert all(not m["urls"] for m in json.loads(lock.read_text())["models"])
    fresh = make_comfy_root(tmp_path / "b")
    run_ok(["sync", str(lock), "--comfyui-root", str(fresh), "--cache-dir", str(cache),
            "--state-dir", str(state_dir(tmp_path, "s2"))], env)
    for rel, body in data.items():
        assert (fresh / rel).read_bytes() == body

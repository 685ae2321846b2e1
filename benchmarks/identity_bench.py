"""Models by identity, each figure beside its baseline measured in the same run.

1. The hash index over 20,000 model files in 10 folders: the first scan (every byte read) vs the second
   scan of the unchanged files (a fresh process's index read from the state dir: one stat per file),
   beside the plain inventory walk of the same tree. Target: the second scan within 2x of the walk.
2. `sync` of a 30-file lockfile into a fresh root from a warm shared cache (every file linked, nothing
   fetched) vs the same lockfile downloaded from the fake upstream into another fresh root.

Run: python benchmarks/identity_bench.py [--files 20000] [--size 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixer.config import DownloadConfig  # noqa: E402
from fixer.host.host import StandaloneHost  # noqa: E402
from fixer.identity.cache import SharedCache  # noqa: E402
from fixer.identity.hash_index import HashIndex, IndexProgress  # noqa: E402
from fixer.identity.lockfile import parse_lockfile  # noqa: E402
from fixer.identity.sync import SyncTarget, sync_lockfile  # noqa: E402
from fixer.read.inventory import build_inventory  # noqa: E402
from tests.conftest import make_comfy_root  # noqa: E402
from tests.fake_upstream import FakeUpstream, payload_bytes  # noqa: E402
from tests.fake_upstream import file_routes as fr  # noqa: E402

FOLDERS = ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "controlnet", "upscale_models",
           "embeddings", "clip_vision", "unet")


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_index(base: Path, files: int, size: int) -> None:
    root = make_comfy_root(base / "idx")
    for i in range(files):
        d = root / "models" / FOLDERS[i % len(FOLDERS)] / f"sub{i % 50}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}.safetensors").write_bytes(i.to_bytes(8, "little") * (size // 8))
    host = StandaloneHost.from_root(root)
    where = base / "state" / "hash_index.json"
    walk, inv = timed(lambda: build_inventory(host))
    first_p, second_p = IndexProgress(), IndexProgress()
    first, _ = timed(lambda: HashIndex(where).scan(host, first_p))
    second, got = timed(lambda: HashIndex(where).scan(host, second_p))
    print(f"hash index, {len(inv.files)} files of {size} B in {len(FOLDERS)} folders (index {where.stat().st_size} B)")
    print(f"  inventory walk only       {walk * 1000:8.0f} ms")
    print(f"  first scan (hash all)     {first * 1000:8.0f} ms   {first_p.hashed_bytes / 2**20:8.1f} MiB read")
    print(f"  second scan (unchanged)   {second * 1000:8.0f} ms   {second_p.hashed_bytes / 2**20:8.1f} MiB read"
          f"   = {second / walk:.2f}x the walk, {first / second:.1f}x faster than the first")
    assert len(got) == files


def bench_sync(base: Path, n: int) -> None:
    with FakeUpstream() as up:
        for k, v in up.env().items():
            os.environ[k] = v
        models = []
        for i in range(n):
            data = payload_bytes({"recipe": "safetensors-f16", "seed": f"bench{i}:", "n_values": 256 * 1024})
            url = fr.register_hf_file(up, "bench/lock", f"m{i}.safetensors", data)
            models.append({"name": f"m{i}.safetensors", "folder": "loras", "size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), "urls": [url]})
        parsed = parse_lockfile({"lockfile_version": 1, "models": models}, "bench")
        config = DownloadConfig(connections_per_file=1, min_free_margin_bytes=0)
        cache = SharedCache(base / "cache")

        def run(name: str, with_cache: bool) -> float:
            root = make_comfy_root(base / name)
            host = StandaloneHost.from_root(root)
            target = SyncTarget(host.folders(), host.extensions, HashIndex(None), config, {},
                                cache if with_cache else None)
            t, data = timed(lambda: asyncio.run(sync_lockfile(parsed, target)))
            assert data.failed == 0, data
            return t

        cold = run("cold", True)  # fills the cache
        before = len(up.requests)
        warm = run("warm", True)
        fetched = len(up.requests) - before
        plain = run("plain", False)
        mib = sum(m["size"] for m in models) / 2**20
        print(f"sync of a {n}-file lockfile ({mib:.1f} MiB)")
        print(f"  downloaded, no cache      {plain * 1000:8.0f} ms")
        print(f"  cold cache (download+link){cold * 1000:8.0f} ms")
        print(f"  warm cache (links only)   {warm * 1000:8.0f} ms   {fetched} upstream requests"
              f"   = {plain / warm:.0f}x faster than downloading")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--lock", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_index(Path(tmp), args.files, args.size)
        bench_sync(Path(tmp), args.lock)


if __name__ == "__main__":
    main()

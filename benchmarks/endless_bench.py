"""A download that never ends, side by side: this checkout's engine against another commit's.

    python benchmarks/endless_bench.py [--other /path/to/checkout] [--seconds 30] [--max-mib 256]

The fake upstream (this checkout's, in its own process) serves a Civitai version whose body is chunked,
has no length and never ends (`FileFaults.endless`). Each engine downloads it into a fresh temporary
folder with its default settings (here, `download.max_undeclared_bytes` = --max-mib when the engine has
that setting), in a child process of its own, stopped after --seconds if it has not stopped by itself.
Printed per engine: how it ended, seconds, the child's peak RSS, and the bytes its .part held at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = 9100777

SERVER = """
import sys
sys.path.insert(0, {root!r})
from tests.fake_upstream import FakeUpstream, file_routes
up = FakeUpstream().start()
file_routes.register_civitai_file(up, {vid}, "endless.safetensors", b"\\x5a" * 65536)
file_routes.faults(up, file_routes.civitai_key({vid})).endless = True
print(up.base, flush=True)
sys.stdin.read()
"""

CLIENT = """
import asyncio, dataclasses, json, os, resource, sys, threading, time
sys.path.insert(0, {checkout!r})
from fixer.config import DownloadConfig
from fixer.models import TransferRequest
from fixer.transfer import RetryPolicy, TransferManager

dest, url, seconds, max_bytes = {dest!r}, {url!r}, {seconds!r}, {max_bytes!r}
names = {{f.name for f in dataclasses.fields(DownloadConfig)}}
config = DownloadConfig(**({{"max_undeclared_bytes": max_bytes}} if "max_undeclared_bytes" in names else {{}}))
peak_part = 0

def watch():
    global peak_part
    while True:
        for n in os.listdir(dest):
            if n.endswith(".part"):
                try:
                    peak_part = max(peak_part, os.path.getsize(os.path.join(dest, n)))
                except OSError:
                    pass
        time.sleep(0.05)

async def go():
    mgr = TransferManager(config, {{}}, retry=RetryPolicy(retries=1, base=0.01, cap=0.02))
    t = await mgr.submit(TransferRequest(url=url, folder="loras", filename="endless.safetensors",
                                         model_name="endless.safetensors"), dest)
    try:
        await asyncio.wait_for(mgr.wait(), seconds)
        return t.state, (t.error or "")[:160]
    except asyncio.TimeoutError:
        return "still running (stopped by the benchmark)", ""

threading.Thread(target=watch, daemon=True).start()
began = time.perf_counter()
state, error = asyncio.run(go())
left = sum(os.path.getsize(os.path.join(dest, n)) for n in os.listdir(dest))
print(json.dumps({{"state": state, "error": error, "seconds": round(time.perf_counter() - began, 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "peak_part_mib": round(peak_part / 2**20, 1), "left_on_disk_mib": round(left / 2**20, 1)}}))
"""


def run_engine(checkout: Path, base: str, seconds: float, max_bytes: int) -> dict:
    with tempfile.TemporaryDirectory() as dest:
        env = {**os.environ, "CIVITAI_BASE_URL": base, "HF_ENDPOINT": base}
        code = CLIENT.format(checkout=str(checkout), dest=dest, url=f"{base}/api/download/models/{VERSION}",
                             seconds=seconds, max_bytes=max_bytes)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             timeout=seconds + 60, cwd=dest, check=False)
        if out.returncode != 0:
            return {"state": "crashed", "error": out.stderr.strip().splitlines()[-1:]}
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", type=Path, help="another checkout to compare (e.g. a worktree at an older commit)")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--max-mib", type=int, default=256)
    args = p.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT), vid=VERSION)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        rows = [("this checkout", run_engine(ROOT, base, args.seconds, args.max_mib << 20))]
        if args.other:
            rows.insert(0, (str(args.other), run_engine(args.other, base, args.seconds, args.max_mib << 20)))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    print(f"endless chunked body, no declared size; each engine stopped after {args.seconds:g} s at the latest")
    print(f"{'engine':<40} {'seconds':>8} {'peak RSS MiB':>13} {'peak .part MiB':>15} {'left MiB':>9}  outcome")
    for name, r in rows:
        print(f"{name:<40} {r.get('seconds', '-'):>8} {r.get('peak_rss_mib', '-'):>13} "
              f"{r.get('peak_part_mib', '-'):>15} {r.get('left_on_disk_mib', '-'):>9}  "
              f"{r['state']}: {r.get('error', '')}")


if __name__ == "__main__":
    main()

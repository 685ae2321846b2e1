"""Download speed, side by side, measured in one run on 127.0.0.1.

    python benchmarks/download_bench.py [--throttled-mib 256] [--plain-mib 1024] [--rate-mb 25] [--pairs 3]
                                        [--get-only] [--code DIR]

Two cases, served by the project's fake upstream in a separate process (so the server never
shares a GIL with the client being measured), both as Hugging Face LFS files (`/resolve` 302 to
the CDN host, Range honoured):
1. "throttled": each connection limited to --rate-mb MB/s (as CDNs effectively do), a
   --throttled-mib safetensors file. Fetched by the whole `comfy-fixer get` process (start-up,
   imports, sha256 + size + safetensors checks, records: what a user waits for), by `aria2c -x8
   -s8` (also a whole process), in --pairs alternated pairs: the median of each, their ratio and the
   range. Target: get <= 1.05x aria2c. The phases of each get, seen from outside (the download folder
   sampled every 2 ms): start-up (process start to the .part file's creation: imports, config, the
   link's checks, the first request), transfer (to the .part holding every byte), last byte to final
   name (the checks, the rename) and the end (records, the report, the interpreter's exit). Then, unless
   --get-only, the engine in-process (the transfer phase alone) and `huggingface_hub.hf_hub_download`.
   --code DIR: the checkout whose `fixer` the get process runs; --baseline DIR: another checkout (a
   worktree at an older commit: the "before"), whose get runs in the same rounds (get, aria2c, baseline get).
2. "plain": unthrottled --plain-mib file served with sendfile. This engine (hash included) vs a
   plain `curl -o`. Target: engine <= 1.2x curl.
Peak memory of the engine: the growth of this process's RSS during the download (sampled every
5 ms), which is what the download itself costs; the interpreter's baseline is printed beside it.
A comparator whose binary or package is missing is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = os.sysconf("SC_PAGE_SIZE")


def make_file(path: Path, size: int, safetensors: bool = False) -> str:
    """Incompressible bytes (a repeated random 4 MiB block would do as well; random avoids surprises);
    with `safetensors`, a valid file of one uint8 tensor filling `size`."""
    h = hashlib.sha256()
    block = 8 << 20
    with open(path, "wb") as f:
        left = size
        if safetensors:
            data_len = size - 8 - 128  # a header padded to 128 bytes, as safetensors pads with spaces
            header = json.dumps({"t": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}})
            head = (128).to_bytes(8, "little") + header.encode().ljust(128)
            f.write(head)
            h.update(head)
            left -= len(head)
        while left:
            chunk = os.urandom(min(block, left))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- server process --------------


def serve(spec_path: str) -> None:
    """Child process: the fake upstream with the benchmark files registered; prints its port."""
    from tests.fake_upstream import FakeUpstream, file_routes
    from tests.fake_upstream.api_routes import add_hf_repo

    spec = json.loads(Path(spec_path).read_text())
    up = FakeUpstream().start()
    repos: dict[str, dict[str, tuple[int, str]]] = {}
    for f in spec["files"]:  # the Hub's API knows the files too (paths-info, tree), as the real one does
        repos.setdefault(f["repo"], {})[f["path"]] = (os.path.getsize(f["disk_path"]), f["sha256"])
    for repo, files in repos.items():
        add_hf_repo(up, repo, files)
    for f in spec["files"]:
        file_routes.register_hf_file(up, f["repo"], f["path"], disk_path=f["disk_path"])
        served = file_routes._served(up, file_routes.hf_key(f["repo"], f["path"]))
        served._sha256 = f["sha256"]
        if f.get("rate"):
            file_routes.faults(up, served.key).rate = f["rate"]
    print(up.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    up.stop()


# --------------------------------------------------------------------------- measurements ---------------


class RssSampler:
    def __init__(self) -> None:
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> Self:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def run_engine(url: str, sha256: str, size: int, dest: Path, connections: int) -> tuple[float, int, int]:
    from fixer.config import DownloadConfig
    from fixer.models import TransferRequest
    from fixer.transfer import download_one

    cfg = DownloadConfig(connections_per_file=connections, min_free_margin_bytes=0)
    req = TransferRequest(url=url, folder="checkpoints", filename=dest.name, expected_size=size, sha256=sha256)
    with RssSampler() as mem:
        t0 = time.perf_counter()
        t = asyncio.run(download_one(req, str(dest.parent), cfg, {}))
        elapsed = time.perf_counter() - t0
    if t.state != "done":
        raise SystemExit(f"engine failed: {t.error}")
    return elapsed, mem.peak - mem.base, mem.base


def user_env(work: Path, code: Path) -> dict[str, str]:
    """The environment of a user's shell: bytecode cached (a sandbox's PYTHONDONTWRITEBYTECODE=1 would make
    every run compile the package from source), in a cache of the benchmark's own, warmed once; `code`'s
    fixer first on the path; no developer's settings or tokens."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(code)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["XDG_CONFIG_HOME"] = str(work / "xdg")
    env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    warm = ("import fixer, fixer.app.cli, fixer.transfer.commands, fixer.transfer.queue, fixer.transfer.engine, "
            "fixer.upstream.source_spec; print(fixer.__file__)")
    where = subprocess.run([sys.executable, "-c", warm], cwd=work, env=env, check=True, capture_output=True, text=True)
    if not where.stdout.strip().startswith(str(code)):
        raise SystemExit(f"--code {code}: the get process would import {where.stdout.strip()}")
    return env


class PartWatch:
    """The phases of one download seen from outside: the folder sampled every 2 ms for the .part file (its
    creation, the moment it holds every byte) and the final name."""

    def __init__(self, folder: Path, name: str, size: int) -> None:
        self.folder, self.name, self.size = folder, name, size
        self.part_seen = self.part_full = self.final_seen = math.nan
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PartWatch:
        self.t0 = time.perf_counter()
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join()

    def _run(self) -> None:
        part = self.folder / f"{self.name}.part"
        final = self.folder / self.name
        while not self._stop.wait(0.002):
            now = time.perf_counter() - self.t0
            try:
                st = os.stat(part)
            except OSError:
                st = None
            if st is not None:
                if math.isnan(self.part_seen):
                    self.part_seen = now
                # every byte written: allocated blocks cover the size (sparse until then)
                if math.isnan(self.part_full) and st.st_blocks * 512 >= self.size - 4096:
                    self.part_full = now
            if math.isnan(self.final_seen) and final.exists():
                self.final_seen = now
                return

    def phases(self, total: float) -> dict[str, float]:
        full = self.part_full if not math.isnan(self.part_full) else self.final_seen
        return {"start-up": self.part_seen, "transfer": full - self.part_seen,
                "last byte to final name": self.final_seen - full, "end": total - self.final_seen}


CHILD_CPU: dict[str, list[float]] = {}  # CPU seconds (user + system) of each timed process, by tool


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_get(url: str, sha256: str, size: int, work: Path, connections: int, env: dict[str, str],
            label: str = "get") -> tuple[float, dict[str, float]]:
    """The whole `comfy-fixer get` process into a fresh ComfyUI tree, as a user runs it; its time and phases."""
    root = work / "comfy"
    shutil.rmtree(root, ignore_errors=True)
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "state").mkdir()
    for marker in ("main.py", "folder_paths.py"):  # what makes --comfyui-root a ComfyUI folder
        (root / marker).write_text("")
    config = work / "config.json"
    config.write_text(json.dumps({"download": {"connections_per_file": connections, "min_free_margin_bytes": 0}}))
    script = Path(sys.executable).parent / "comfy-fixer"  # the console script pip installed, not a shim
    name = url.rsplit("/", 1)[-1]
    cmd = [str(script), "get", url, "--folder", "checkpoints", "--sha256", sha256, "--config", str(config),
           "--comfyui-root", str(root), "--state-dir", str(root / "state"), "--json"]
    watch = PartWatch(root / "models" / "checkpoints", name, size).start()
    t0, c0 = time.perf_counter(), child_cpu()
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    watch.stop()
    CHILD_CPU.setdefault(label, []).append(child_cpu() - c0)
    if done.returncode != 0 or not (root / "models" / "checkpoints" / name).is_file():
        raise SystemExit(f"comfy-fixer get failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return elapsed, watch.phases(elapsed)


def run_cmd(cmd: list[str]) -> float:
    t0, c0 = time.perf_counter(), child_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    CHILD_CPU.setdefault(Path(cmd[0]).name, []).append(child_cpu() - c0)
    return time.perf_counter() - t0


def run_hf(endpoint: str, repo: str, filename: str, dest: Path) -> float:
    code = ("import sys,time; from huggingface_hub import hf_hub_download; t=time.perf_counter(); "
            f"hf_hub_download({repo!r}, {filename!r}, local_dir={str(dest)!r}); print(time.perf_counter()-t)")
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HOME": str(dest / ".hf_home")}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def fmt(x: float | None) -> str:
    return "skipped" if x is None else f"{x:6.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--throttled-mib", type=int, default=256)
    ap.add_argument("--plain-mib", type=int, default=1024)
    ap.add_argument("--rate-mb", type=float, default=25.0, help="per-connection limit, MB/s (10^6 bytes)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool in the other cases; the best is compared")
    ap.add_argument("--pairs", type=int, default=3, help="alternated get/aria2c pairs; the medians are compared")
    ap.add_argument("--get-only", action="store_true", help="only case 1's get/aria2c pairs")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose fixer the get process runs")
    ap.add_argument("--baseline", type=Path, help="a checkout at an older commit, run in the same rounds")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve)

    work = Path(tempfile.mkdtemp(prefix="fixer-bench-"))
    server = None
    try:
        print(f"preparing files in {work} ...", flush=True)
        thr_size, plain_size = args.throttled_mib << 20, args.plain_mib << 20
        thr_sha = make_file(work / "throttled.safetensors.src", thr_size, safetensors=True)
        plain_sha = make_file(work / "plain.bin.src", 0 if args.get_only else plain_size)
        spec = {"files": [
            {"repo": "bench/throttled", "path": "throttled.safetensors",
             "disk_path": str(work / "throttled.safetensors.src"),
             "sha256": thr_sha, "rate": args.rate_mb * 1e6},
            {"repo": "bench/plain", "path": "plain.bin", "disk_path": str(work / "plain.bin.src"),
             "sha256": plain_sha}]}
        (work / "spec.json").write_text(json.dumps(spec))
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "spec.json")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        os.environ["HF_ENDPOINT"] = base
        thr_url = f"{base}/bench/throttled/resolve/main/throttled.safetensors"
        plain_url = f"{base}/bench/plain/resolve/main/plain.bin"
        out = work / "out"

        def fresh() -> Path:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            return out

        aria2 = shutil.which("aria2c")
        curl = shutil.which("curl")
        try:
            import huggingface_hub  # noqa: F401
            hf_ok = True
        except ImportError:
            hf_ok = False

        def best(times: list[float | None]) -> float | None:
            vals = [t for t in times if t is not None]
            return min(vals) if vals else None

        def stats(xs: list[float]) -> str:
            return (f"median {statistics.median(xs):6.2f} s   range {min(xs):.2f}-{max(xs):.2f}   runs "
                    + " ".join(f"{x:.2f}" for x in xs))

        print(f"\n1) {args.throttled_mib} MiB, each connection limited to {args.rate_mb:g} MB/s "
              f"({args.pairs} alternated pairs; get from {args.code.resolve()})")
        if not aria2:
            print("   aria2c: skipped (binary not found; apt-get install aria2)")
        codes = {"get": args.code.resolve()}
        if args.baseline:
            codes["baseline get"] = args.baseline.resolve()
        envs = {label: user_env(work, code) for label, code in codes.items()}
        get_runs: dict[str, list[float]] = {label: [] for label in codes}
        phases: dict[str, list[dict[str, float]]] = {label: [] for label in codes}
        aria_runs: list[float] = []
        for _ in range(args.pairs):
            for label, env in envs.items():
                elapsed, ph = run_get(thr_url, thr_sha, thr_size, work, args.connections, env, label)
                get_runs[label].append(elapsed)
                phases[label].append(ph)
                if aria2 and label == "get":
                    aria_runs.append(run_cmd([aria2, "-x8", "-s8", "-k1M", "--allow-overwrite=true",
                                              "--file-allocation=none", "--console-log-level=error",
                                              "--summary-interval=0", "-d", str(fresh()), "-o",
                                              "throttled.safetensors", thr_url]))
        for label, code in codes.items():
            print(f"   comfy-fixer {label:<18} {stats(get_runs[label])}   ({code})")
            for phase in phases[label][0]:
                xs = [p[phase] * 1000 for p in phases[label]]
                print(f"     {phase:<28} median {statistics.median(xs):6.0f} ms   range {min(xs):.0f}-{max(xs):.0f}")
        if aria2:
            print(f"   aria2c -x8 -s8 (process)       {stats(aria_runs)}")
            for label in codes:
                ratios = [g / a for g, a in zip(get_runs[label], aria_runs)]
                ratio = statistics.median(get_runs[label]) / statistics.median(aria_runs)
                print(f"   ratio {label}/aria2c = {ratio:.2f}x"
                      f" of the medians; per pair {' '.join(f'{r:.2f}' for r in ratios)} (target <= 1.05x)")
            print("   CPU time (user+sys, median; what a busy machine turns into wall time): "
                  + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in CHILD_CPU.items()))
        if args.get_only:
            return
        eng_runs, hf_runs, mem, base_rss = [], [], 0, 0
        for i in range(args.repeat):
            t, m, base_rss = run_engine(thr_url, thr_sha, thr_size, fresh() / "throttled.safetensors",
                                        args.connections)
            eng_runs.append(t)
            mem = max(mem, m)
            if hf_ok and i == 0:  # ~10 s a run; once is enough to show the gap
                hf_runs.append(run_hf(base, "bench/throttled", "throttled.safetensors", fresh()))
        eng_t, hf_t, aria_t = best(eng_runs), best(hf_runs), best(list(aria_runs))

        def runs(xs: list[float]) -> str:
            return " ".join(f"{x:.2f}" for x in xs)

        if not hf_ok:
            print("   hf_hub_download: skipped (huggingface_hub not installed)")
        print(f"   engine in-process (transfer)   {fmt(eng_t)}   runs {runs(eng_runs)}   "
              f"peak memory +{mem / 2**20:.1f} MiB (process baseline {base_rss / 2**20:.0f} MiB)")
        print(f"   hf_hub_download                {fmt(hf_t)}")
        if aria_t:
            print(f"   ratio engine/aria2c = {eng_t / aria_t:.2f}x (best of each)")
        if hf_t:
            print(f"   ratio engine/hf_hub_download = {eng_t / hf_t:.2f}x")

        print(f"\n2) {args.plain_mib} MiB, unthrottled (best of {args.repeat}, runs interleaved)")
        if not curl:
            print("   curl: skipped (binary not found; apt-get install curl)")
        eng2_runs, curl_runs, mem2 = [], [], 0
        for _ in range(args.repeat):
            t, m, _ = run_engine(plain_url, plain_sha, plain_size, fresh() / "plain.bin", args.connections)
            eng2_runs.append(t)
            mem2 = max(mem2, m)
            if curl:
                curl_runs.append(run_cmd([curl, "-sfL", "-o", str(fresh() / "plain.bin"), plain_url]))
        eng2_t, curl_t = best(eng2_runs), best(curl_runs)
        print(f"   engine (sha256+size verified) {fmt(eng2_t)}   runs {runs(eng2_runs)}   "
              f"peak memory +{mem2 / 2**20:.1f} MiB")
        print(f"   curl -o (no hash)              {fmt(curl_t)}   runs {runs(curl_runs)}")
        if curl_t:
            print(f"   ratio engine/curl = {eng2_t / curl_t:.2f}x (target <= 1.20x)")
        print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        if server is not None:
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

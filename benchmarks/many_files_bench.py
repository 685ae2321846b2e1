"""The many-file job a user waits for, side by side with aria2c, measured in one run on 127.0.0.1.

    python benchmarks/many_files_bench.py [--pairs 3] [--total-mib 1024] [--files 30] [--rate-mb 25] [--quick]
                                          [--code DIR]
                                          [--baseline DIR]

A shared workflow names 30 LoRAs (1-256 MiB, --total-mib in all; each a valid safetensors file) and lists
every link and sha256 in its top-level `models[]`, as ComfyUI's frontend writes them. The fake upstream
(tests/fake_upstream, in a process of its own so it never shares a GIL with what is measured) serves them
as Hugging Face LFS files (`/resolve` 302 to the CDN host, Range honoured), each connection limited to
--rate-mb MB/s.
- ours: the whole `comfy-fixer --auto --yes` process (start-up, scan, the models[] links checked against
  the Hub, the review plan, downloads, sha256 + size + safetensors checks, records) into a fresh ComfyUI tree.
- aria2c: `aria2c -i LIST -j3 -x8 -s8` with each file's `checksum=sha-256=...`, the same three files at a
  time and eight connections per file, into a fresh folder. It neither scans nor checks safetensors.
Runs alternate, each round starting with the next tool; the medians, ranges and their ratio are printed (target: ours
<= 0.6x aria2c), with ours' peak memory (the process's own maximum RSS, from wait4) and, for the median
run of each tool, a timeline: when each file appeared in the folder and when it was complete under its
final name, and the bytes on disk per second (MB/s buckets), sampled from the outside every 20 ms the same
way for both tools.
--files N: another number of files (sizes spread the same way; e.g. --files 300 --total-mib 512 shows what grows
faster than the workflow: a cost per file that also grows with the files already handled).
--quick: --total-mib 128 and 1 pair, for a check in a few seconds. --code DIR: the checkout whose
`fixer` runs; --baseline DIR: another checkout (a worktree at an older commit: the "before"), run in the
same rounds (ours, aria2c, baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from download_bench import make_file

ROOT = Path(__file__).resolve().parents[1]
N_FILES = 30
REPO = "bench/many"


def sizes_mib(total: int, n: int = N_FILES) -> list[float]:
    """n sizes spread evenly on a log scale from total/1024 to total/4 MiB (1-256 for 1 GiB), the middle ones
    scaled so they add up to `total` (the smallest and largest stay as they are)."""
    lo, hi = total / 1024, total / 4
    raw = [math.exp(math.log(lo) + i / (n - 1) * (math.log(hi) - math.log(lo))) for i in range(n)]
    middle = sum(raw[1:-1])
    k = (total - lo - hi) / middle
    return [lo] + [r * k for r in raw[1:-1]] + [hi]


@dataclass
class Sample:
    """What the folder held at one moment: bytes allocated per file, and which files were complete."""
    t: float
    allocated: dict[str, int]
    present: set[str]  # base names with any entry (the file, its .part or .aria2)
    complete: set[str]
    cpu: float = math.nan  # the process's CPU seconds so far (user + system, all threads), from /proc


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a live process has used so far; nan where /proc cannot tell."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


@dataclass
class Watch:
    """Samples a download folder from the outside every `every` seconds. A file is complete when it has its
    final name and no companion (.part of ours, .aria2 of aria2c's control file) remains."""
    folder: Path
    names: list[str]
    every: float = 0.02
    samples: list[Sample] = field(default_factory=list)
    pid: int | None = None  # the process whose CPU time each sample reads, once it runs
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watch:
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        allocated: dict[str, int] = {}
        present: set[str] = set()
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            entries = []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            base = e.name.removesuffix(".part").removesuffix(".aria2")
            present.add(e.name)
            if not e.name.endswith(".aria2"):
                allocated[base] = max(allocated.get(base, 0), st.st_blocks * 512)
        complete = {n for n in self.names if n in present and f"{n}.part" not in present
                    and f"{n}.aria2" not in present}
        bases = {n.removesuffix(".part").removesuffix(".aria2") for n in present}
        self.samples.append(Sample(time.perf_counter() - self.t0, allocated, bases, complete, process_cpu(self.pid)))

    def cpu_at(self, t: float) -> float:
        """The process's CPU seconds at the last sample taken by time t."""
        best = math.nan
        for s in self.samples:
            if s.t > t:
                break
            if not math.isnan(s.cpu):
                best = s.cpu
        return best

    def spans(self) -> dict[str, tuple[float, float]]:
        """When each file (or its .part / .aria2) first appeared and when it was first complete."""
        first: dict[str, float] = {}
        done: dict[str, float] = {}
        for s in self.samples:
            for n in s.present:
                first.setdefault(n, s.t)
            for n in s.complete:
                done.setdefault(n, s.t)
        return {n: (first.get(n, math.nan), done.get(n, math.nan)) for n in self.names}

    def buckets(self) -> list[float]:
        """MB/s per whole second: the growth of the bytes on disk (all files) over that second."""
        out: list[float] = []
        prev = 0
        second = 1
        for s in self.samples:
            while s.t >= second:
                out.append((self._total_before(second) - prev) / 1e6)
                prev = self._total_before(second)
                second += 1
        last = sum(self.samples[-1].allocated.values()) if self.samples else 0
        out.append((last - prev) / 1e6 / max(self.samples[-1].t - (second - 1), 1e-3) if self.samples else 0.0)
        return out

    def _total_before(self, t: float) -> int:
        best = 0
        for s in self.samples:
            if s.t > t:
                break
            best = sum(s.allocated.values())
        return best


@dataclass
class Run:
    tool: str
    seconds: float
    peak_rss: int  # bytes
    cpu: float  # user + system seconds of the process
    watch: Watch
    done_at: dict[str, float] = field(default_factory=dict)  # the tool's own word on when a file was complete

    def spans(self) -> dict[str, tuple[float, float]]:
        spans = self.watch.spans()
        return {n: (a, self.done_at.get(n, b)) for n, (a, b) in spans.items()}


def wait_child(proc: subprocess.Popen[bytes]) -> tuple[int, int, float]:
    """Exit code, peak RSS (bytes) and CPU seconds of this one child, from wait4 (the kernel's own counts)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def make_tree(work: Path, workflow: dict[str, object]) -> tuple[Path, Path]:
    root = work / "comfy"
    shutil.rmtree(root, ignore_errors=True)
    (root / "models" / "loras").mkdir(parents=True)
    (root / "custom_nodes").mkdir()
    for marker in ("main.py", "folder_paths.py"):  # --comfyui-root must look like a ComfyUI
        (root / marker).write_text("# stand-in\n")
    wf_dir = root / "user" / "default" / "workflows"
    wf_dir.mkdir(parents=True)
    (wf_dir / "shared.json").write_text(json.dumps(workflow))
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    return root, state


def run_ours(work: Path, workflow: dict[str, object], names: list[str], env: dict[str, str], config: Path,
             tool: str = "ours") -> Run:
    root, state = make_tree(work, workflow)
    cmd = [sys.executable, "-m", "fixer", "--auto", "--yes", "--comfyui-root", str(root), "--state-dir", str(state),
           "--config", str(config)]
    watch = Watch(root / "models" / "loras", names).start()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    watch.pid = proc.pid
    out = proc.stdout.read()  # type: ignore[union-attr]
    code, rss, cpu = wait_child(proc)
    elapsed = time.perf_counter() - t0
    watch.stop()
    missing = [n for n in names if not (root / "models" / "loras" / n).is_file()]
    if code != 0 or missing:
        raise SystemExit(f"comfy-fixer --auto failed (exit {code}, {len(missing)} files missing):\n"
                         f"{out.decode(errors='replace')[-3000:]}")
    return Run(tool, elapsed, rss, cpu, watch)


def run_aria2(aria2: str, work: Path, listing: Path, names: list[str]) -> Run:
    out = work / "aria2"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    log = work / "aria2.log"
    log.unlink(missing_ok=True)
    cmd = [aria2, "-i", str(listing), "-j3", "-x8", "-s8", "-k1M", "-d", str(out), "--allow-overwrite=true",
           "--file-allocation=none", "--console-log-level=error", "--summary-interval=0", "--check-integrity=true",
           f"--log={log}", "--log-level=notice"]
    watch = Watch(out, names).start()
    t0 = time.perf_counter()
    wall0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watch.pid = proc.pid
    err = proc.stderr.read()  # type: ignore[union-attr]
    code, rss, cpu = wait_child(proc)
    elapsed = time.perf_counter() - t0
    watch.stop()
    if code != 0:
        raise SystemExit(f"aria2c failed (exit {code}): {err.decode(errors='replace')[-2000:]}")
    return Run("aria2c", elapsed, rss, cpu, watch, aria2_done_at(log, wall0))


def aria2_done_at(log: Path, wall0: float) -> dict[str, float]:
    """When aria2c said each file was complete (its log's "Download complete", after its sha-256 check), in
    seconds from its start. aria2c creates its .aria2 control file only after a while (not for small files), so
    the folder alone cannot tell a file it still writes or checks from a finished one."""
    done: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if "Download complete: " not in line:
            continue
        stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + float("0" + line[19:26])
        done[os.path.basename(line.split("Download complete: ", 1)[1].strip())] = stamp - wall0
    return done


def timeline(runs: list[Run], names: list[str], sizes: list[int], width: int = 36) -> str:
    """Each file (largest last) from its first entry in the folder to complete under its final name, one bar per
    tool on a common time scale; then the MB/s each wrote to disk, second by second."""
    scale = max(r.seconds for r in runs)
    spans = [r.spans() for r in runs]
    head = "   file                    MiB " + "".join(f"| {f'{r.tool} ({r.seconds:.2f} s)':<{width + 15}}"
                                                     for r in runs)
    lines = [f"   0 to {scale:.1f} s, '#' = {scale / width * 1000:.0f} ms: each file from its first entry in the "
             "folder to complete under its final name (ours: verified and renamed; aria2c: its log's 'Download "
             "complete')", head]
    for n, size in sorted(zip(names, sizes), key=lambda p: p[1]):
        row = f"   {n:<20}{size / 2**20:7.1f} "
        for sp in spans:
            a, b = sp[n]
            bar = [" "] * width
            if not math.isnan(a):
                lo = min(width - 1, int(a / scale * width))
                hi = width if math.isnan(b) else max(lo + 1, math.ceil(b / scale * width))
                for i in range(lo, min(hi, width)):
                    bar[i] = "#"
            row += f"| {a:5.2f}-{b:5.2f} s {''.join(bar)} "
        lines.append(row)
    for r, sp in zip(runs, spans):
        starts = [a for a, _ in sp.values() if not math.isnan(a)]
        ends = [b for _, b in sp.values() if not math.isnan(b)]
        if starts and ends:
            first, last = min(starts), max(ends)
            c1, c2 = r.watch.cpu_at(first), r.watch.cpu_at(last)
            lines.append(f"   {r.tool}: first file in the folder at {first:.2f} s (CPU {c1:.2f} s so far), last "
                         f"complete at {last:.2f} s (CPU {c2 - c1:.2f} s in between), process ended at "
                         f"{r.seconds:.2f} s (CPU {r.cpu - c2:.2f} s after); CPU {r.cpu:.2f} s in all, peak RSS "
                         f"{r.peak_rss / 2**20:.0f} MiB")
    rates = [r.watch.buckets() for r in runs]
    seconds = max(len(x) for x in rates)
    lines.append("   MB/s written to disk in each second (aria2c holds up to 16 MiB per file in its cache before "
                 "writing)")
    lines.append("   second    " + "".join(f"{i:>5}" for i in range(seconds)))
    for r, x in zip(runs, rates):
        lines.append(f"   {r.tool:<10}" + "".join(f"{max(v, 0.0):5.0f}" for v in x))
    return "\n".join(lines)


def user_env(work: Path, code: Path, upstream_env: dict[str, str]) -> dict[str, str]:
    """A user's shell: bytecode cached (a sandbox's PYTHONDONTWRITEBYTECODE=1 would compile the package at
    every start), in a cache of the benchmark's own (warmed by an untimed run); `code`'s fixer first on the
    path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env.update(upstream_env)
    env["PYTHONPATH"] = str(code)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["XDG_CONFIG_HOME"] = str(work / "xdg")  # no developer's settings or tokens
    env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    subprocess.run([sys.executable, "-m", "fixer", "--help"], env=env, cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    return env


def git_head(checkout: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True, check=True).stdout.strip()[:70]
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"


def summary(label: str, runs: list[float]) -> str:
    return f"{label:<34}median {statistics.median(runs):6.2f} s   range {min(runs):.2f}-{max(runs):.2f}   " \
           f"runs {' '.join(f'{r:.2f}' for r in runs)}"


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, help="alternated runs of each tool (default 3, 1 with --quick)")
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=N_FILES, help="number of models in the workflow (default 30)")
    ap.add_argument("--rate-mb", type=float, default=25.0, help="per-connection limit, MB/s (10^6 bytes)")
    ap.add_argument("--quick", action="store_true", help="--total-mib 128, --pairs 1 unless given")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (the last run's state/log) to read")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose fixer package runs (default: this one)")
    ap.add_argument("--baseline", type=Path, action="append", default=[],
                    help="a checkout at another commit, run in the same rounds (repeatable: one per variant)")
    ap.add_argument("--no-aria2", action="store_true", help="only ours and the baselines (comparing variants)")
    args = ap.parse_args()
    if args.quick:
        args.total_mib = 128
    if args.pairs is None:
        args.pairs = 1 if args.quick else 3
    aria2 = shutil.which("aria2c")
    work = Path(tempfile.mkdtemp(prefix="fixer-many-"))
    server = None
    try:
        sizes = [max(4096, int(s * 2**20)) for s in sizes_mib(args.total_mib, args.files)]
        names = [f"lora_{i:02d}.safetensors" for i in range(args.files)]
        print(f"preparing {args.files} files, {sum(sizes) / 2**20:.0f} MiB in all, in {work} ...", flush=True)
        src = work / "src"
        src.mkdir()
        files = []
        for name, size in zip(names, sizes):
            sha = make_file(src / name, size, safetensors=True)
            files.append({"repo": REPO, "path": name, "disk_path": str(src / name), "sha256": sha,
                          "rate": args.rate_mb * 1e6})
        (work / "spec.json").write_text(json.dumps({"files": files}))
        server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "download_bench.py"), "--serve",
                                   str(work / "spec.json")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        urls = [f"{base}/{REPO}/resolve/main/{n}" for n in names]
        workflow = {
            "nodes": [{"id": i + 1, "type": "LoraLoader", "widgets_values": [n, 1.0, 1.0]}
                      for i, n in enumerate(names)],
            "links": [],
            "models": [{"name": n, "url": u, "directory": "loras", "hash": f["sha256"], "hash_type": "sha256"}
                       for n, u, f in zip(names, urls, files)],
        }
        listing = work / "aria2.txt"
        listing.write_text("".join(f"{u}\n  out={n}\n  checksum=sha-256={f['sha256']}\n"
                                   for n, u, f in zip(names, urls, files)))
        config = work / "config.json"
        config.write_text(json.dumps({"download": {"min_free_margin_bytes": 0}}))
        upstream_env = {"HF_ENDPOINT": base, "CIVITAI_BASE_URL": base, "CIVITAI_RED_BASE_URL": f"{base}/red",
                        "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        tools: list[tuple[str, dict[str, str] | None]] = [("ours", user_env(work, args.code.resolve(), upstream_env))]
        if aria2 and not args.no_aria2:
            tools.append(("aria2c", None))
        for i, b in enumerate(args.baseline):
            tools.append((f"base{i + 1}" if len(args.baseline) > 1 else "baseline",
                          user_env(work, b.resolve(), upstream_env)))

        print(f"\n{args.files} files, {sum(sizes) / 2**20:.0f} MiB, {args.rate_mb:g} MB/s per connection, "
              f"{args.pairs} alternated round(s); ours from {args.code.resolve()}")
        for i, b in enumerate(args.baseline):
            print(f"   {tools[-len(args.baseline) + i][0]}: {b.resolve()} ({git_head(b)})")
        if not aria2:
            print("   aria2c: skipped (binary not found; apt-get install aria2)")
        # One untimed run of each of ours first: --help (above) imports little, so the first timed run would
        # compile aiohttp, numpy, safetensors, the transfer modules... into the fresh bytecode cache.
        for tool, tool_env in tools:
            if tool_env is not None:
                run_ours(work, workflow, names, tool_env, config, tool)
        runs: dict[str, list[Run]] = {tool: [] for tool, _ in tools}
        for i in range(args.pairs):
            # Each round starts with the next tool: whatever a run leaves behind (dirty pages, a warm cache, the
            # neighbours' load) must not favour one tool's place in every round.
            for tool, tool_env in tools[i % len(tools):] + tools[:i % len(tools)]:
                if tool_env is None:
                    runs[tool].append(run_aria2(aria2 or "aria2c", work, listing, names))
                    shutil.rmtree(work / "aria2", ignore_errors=True)
                else:
                    runs[tool].append(run_ours(work, workflow, names, tool_env, config, tool))
            print("   round: " + ", ".join(f"{tool} {r[-1].seconds:.2f} s (CPU {r[-1].cpu:.2f} s)"
                                          for tool, r in runs.items()), flush=True)
        labels = {"ours": "comfy-fixer --auto --yes", "aria2c": "aria2c -i -j3 -x8 -s8 + sha-256"}
        for tool, rs in runs.items():
            print(summary(labels.get(tool, f"{tool} --auto --yes"), [r.seconds for r in rs]))
            rss = [r.peak_rss / 2**20 for r in rs]
            print(f"      CPU median {statistics.median(r.cpu for r in rs):.2f} s; peak RSS median "
                  f"{statistics.median(rss):.0f} MiB, max {max(rss):.0f}")
        if "aria2c" in runs:
            a = [r.seconds for r in runs["aria2c"]]
            for tool, rs in runs.items():
                if tool != "aria2c":
                    o = [r.seconds for r in rs]
                    print(f"   ratio {tool}/aria2c: {statistics.median(o) / statistics.median(a):.2f}x of the medians; "
                          f"per round {' '.join(f'{x / y:.2f}' for x, y in zip(o, a))} (target <= 0.60x)")
        print("\ntimeline of the median run of each, side by side")
        print(timeline([median_run(rs) for rs in runs.values()], names, sizes))
    finally:
        if server is not None:
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(10)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Time and peak memory of reading hostile inputs, each beside its bound, in one run.

Cases (tests/hostile_corpus.py): nested subgraphs (6 levels x 10 instances, 12 KB), an AIR flood (3 MiB of
distinct AIR URNs in `extra`), a prompt flood (3 MiB of distinct `embedding:` / `<lora:>` names), an embedding
"weight" of 2 MiB of digits, 50,000 LoRA loaders beside 200 LoRA AIRs, a 16 MiB body of nested subgraphs
padded with notes, and a WebP with 480 MiB of EXIF text.

Each JSON case goes through the whole `comfy-fixer --scan` process (wall time, peak RSS of that process) and
through the scan worker that serves big `POST /comfyfixer/scan` bodies inside ComfyUI (time of the request,
peak RSS of the worker process beside the RSS it had after a trivial scan). The WebP goes through the CLI.
Bounds: any <= 16 MiB body in under 2 s and 256 MiB extra memory; an image within 1 GiB.

Run: python benchmarks/hostile_bench.py [--code DIR] [--timeout S] [--only NAME ...]
`--code` points at another checkout (e.g. `git archive a33b692 | tar -x -C /tmp/base`) to measure it with
the same corpus: the before/after figures of docs and notes come from two such runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tests.hostile_corpus import (  # noqa: E402
    MiB,
    air_flood,
    clue_flood,
    exif_webp,
    nested_subgraphs,
    prompt_flood,
    weight_flood,
)

BODY_BOUND_S, BODY_BOUND_MIB, IMAGE_BOUND_MIB = 2.0, 256, 1024


def big_nested_body(target: int = 16 * MiB - 4096) -> dict[str, Any]:
    """The nested case grown to the largest body the routes take: notes pad each level's definition."""
    wf = nested_subgraphs()
    pad_node = {"id": 0, "type": "Note", "mode": 0, "properties": {}, "widgets_values": ["x" * 4000]}
    per = len(json.dumps(pad_node)) + 2
    count = (target - len(json.dumps(wf))) // per
    defs = wf["definitions"]["subgraphs"]
    for i in range(count):
        defs[i % len(defs)]["nodes"].append({**pad_node, "id": 1000 + i})
    return wf


def cli_run(code: Path, root: Path, state: Path, workflow: Path, timeout: float) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, exit) of `python -m fixer --scan` on one file, with `code` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, "-m", "fixer", "--scan", "--comfyui-root", str(root), "--workflow", str(workflow),
           "--state-dir", str(state)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(code), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return time.perf_counter() - t, usage.ru_maxrss / 1024, str(proc.returncode)
        if time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            return time.perf_counter() - t, usage.ru_maxrss / 1024, f"killed after {timeout:.0f} s"
        time.sleep(0.01)


def _vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_run(code: Path, root: Path, state: Path, body: bytes, timeout: float) -> tuple[float, float, float, str]:
    """(seconds, worker peak RSS MiB, worker RSS MiB after a trivial scan, status) of one big /scan body,
    run in a separate Python so that `code`'s engine is the one imported."""
    script = f"""
import json, sys, time
sys.path.insert(0, {str(code)!r})
from fixer.app.service import FixerService
from fixer.comfy.scan_worker import ScanWorker
from fixer.host.host import StandaloneHost
from pathlib import Path
svc = FixerService(StandaloneHost.from_root(Path({str(root)!r})), Path({str(state)!r}))
w = ScanWorker()
w.scan_blocking(json.dumps({{"workflow": {{"nodes": []}}}}).encode(), svc)
pid = w._proc.pid
def vm(key):
    for line in open(f"/proc/{{pid}}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
base = vm("VmRSS")
body = sys.stdin.buffer.read()
t = time.perf_counter()
try:
    w.scan_blocking(body, svc)
    status = "200"
except Exception as e:
    status = f"{{getattr(e, 'status', type(e).__name__)}}"
dt = time.perf_counter() - t
print(json.dumps([dt, vm("VmHWM"), base, status]))
w.close()
"""
    # Its own session: on timeout the worker process it started is stopped with it.
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(code), start_new_session=True)
    try:
        out, err = proc.communicate(body, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return timeout, float("nan"), float("nan"), f"killed after {timeout:.0f} s"
    if proc.returncode:
        return float("nan"), float("nan"), float("nan"), err.decode()[-300:]
    dt, peak, base, status = json.loads(out.decode().strip().splitlines()[-1])
    return dt, peak, base, status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, default=HERE, help="the checkout whose engine is measured")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds before a case is killed")
    ap.add_argument("--only", nargs="*", default=None, help="case names to run")
    args = ap.parse_args()
    code = args.code.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="hostile-bench-"))
    root = tmp / "ComfyUI"
    for d in ("checkpoints", "loras", "vae", "embeddings"):
        (root / "models" / d).mkdir(parents=True)
    (root / "main.py").write_text("# stand-in\n")
    (root / "folder_paths.py").write_text("# stand-in\n")
    # name -> (body, the worker's expected answer: 200 scanned, 400 refused naming why)
    json_cases: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
        "baseline: one loader": (lambda: {"nodes": [{"id": 1, "type": "LoraLoader",
                                                     "widgets_values": ["a.safetensors"]}]}, "200"),
        "nested subgraphs 6x10": (nested_subgraphs, "200"), "AIR flood 3 MiB": (air_flood, "200"),
        "prompt flood 3 MiB": (prompt_flood, "200"), "weight digits 2 MiB": (weight_flood, "200"),
        "clues 2,000 refs x 200 AIRs": (lambda: clue_flood(2000), "200"),
        "clues 50,000 refs (refused)": (clue_flood, "400"), "nested + notes 16 MiB": (big_nested_body, "200"),
    }
    ok = True
    print(f"engine: {code}")
    print(f"{'case':28} {'body':>9} | {'CLI s':>7} {'CLI MiB':>8} {'exit':>6} | {'worker s':>8} "
          f"{'peak MiB':>8} {'+MiB':>6} {'status':>6}")
    for name, (make, expect) in json_cases.items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        wf = make()
        path = tmp / (name.split()[0] + ".json")
        body = json.dumps({"workflow": wf, "name": path.name}).encode()
        path.write_text(json.dumps(wf))
        del wf
        c_s, c_mib, c_exit = cli_run(code, root, tmp / "state-cli", path, args.timeout)
        w_s, w_peak, w_base, w_status = worker_run(code, root, tmp / "state-worker", body, args.timeout)
        extra = w_peak - w_base
        within = c_s < BODY_BOUND_S and w_s < BODY_BOUND_S and extra < BODY_BOUND_MIB and w_status == expect
        ok &= within
        print(f"{name:28} {len(body) / MiB:7.2f}Mi | {c_s:7.2f} {c_mib:8.0f} {c_exit:>6} | {w_s:8.2f} "
              f"{w_peak:8.0f} {extra:6.0f} {w_status:>6}  {'ok' if within else 'OVER BOUND'}")
    if not args.only or any("exif" in o.lower() for o in args.only):
        image = exif_webp(tmp / "exif.webp", 480)
        c_s, c_mib, c_exit = cli_run(code, root, tmp / "state-cli", image, args.timeout)
        within = c_mib < IMAGE_BOUND_MIB
        ok &= within
        print(f"{'WebP, 480 MiB EXIF text':28} {image.stat().st_size / MiB:7.0f}Mi | {c_s:7.2f} {c_mib:8.0f} "
              f"{c_exit:>6} | {'-':>8} {'-':>8} {'-':>6} {'-':>6}  {'ok' if within else 'OVER BOUND'}")
        image.unlink()
    print(f"bounds: a body <= 16 MiB in < {BODY_BOUND_S:.0f} s and < {BODY_BOUND_MIB} MiB extra (worker); "
          f"an image within {IMAGE_BOUND_MIB} MiB")
    print("all bounds held" if ok else "BOUND EXCEEDED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

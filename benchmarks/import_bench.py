"""What importing the pack costs ComfyUI's start-up, side by side with its floor.

    python benchmarks/import_bench.py [--repeat 15]

Each figure is the median of fresh interpreters, timed with perf_counter around the import the
way ComfyUI's loader does it (spec_from_file_location on __init__.py, exec_module):
- "inside ComfyUI": a stand-in `server` module (PromptServer.instance with a RouteTableDef) and
  `folder_paths` are in sys.modules, and aiohttp.web is already imported, as in ComfyUI (server.py
  imports it first). This is what start-up pays: nodes.py, server_routes.py, the route table.
- "outside ComfyUI": no `server` module (tests, the pip-installed CLI): the mappings only.
- "floor: empty package": a package whose __init__.py is empty, the loader's own cost.
- "aiohttp.web, for scale": what a pack would pay if ComfyUI had not imported aiohttp already.
Target: inside ComfyUI < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]

PRELUDE = """
import importlib.util, sys, time, types
from aiohttp import web

def fake_comfy():
    server = types.ModuleType("server")
    class PromptServer:
        instance = None
        def __init__(self):
            PromptServer.instance = self
            self.routes = web.RouteTableDef()
        def send_sync(self, event, data, sid=None):
            pass
    server.PromptServer = PromptServer
    PromptServer()
    sys.modules["server"] = server
    sys.modules["folder_paths"] = types.ModuleType("folder_paths")

def load(pack_dir):
    spec = importlib.util.spec_from_file_location(pack_dir.replace(".", "_x_"), pack_dir + "/__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    t = time.perf_counter()
    spec.loader.exec_module(module)
    return (time.perf_counter() - t) * 1000, module
"""

CASES = {
    "inside ComfyUI": ("fake_comfy()\nms, m = load({pack!r})\n"
                       "assert len(sys.modules['server'].PromptServer.instance.routes) > 0\nprint(ms)"),
    "outside ComfyUI": "ms, m = load({pack!r})\nprint(ms)",
    "floor: empty package": "fake_comfy()\nms, m = load({empty!r})\nprint(ms)",
}
SCALE = "import time; t = time.perf_counter(); from aiohttp import web; print((time.perf_counter() - t) * 1000)"


def run(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACK)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "EmptyPack"
        empty.mkdir()
        (empty / "__init__.py").write_text("")
        rows = []
        for name, body in CASES.items():
            code = PRELUDE + textwrap.dedent(body.format(pack=str(PACK), empty=str(empty)))
            runs = [run(code) for _ in range(args.repeat)]
            rows.append((name, statistics.median(runs), min(runs), max(runs)))
        runs = [run(SCALE) for _ in range(args.repeat)]
        rows.append(("aiohttp.web, for scale", statistics.median(runs), min(runs), max(runs)))
    print(f"{'import':<24}{'median ms':>10}{'min':>8}{'max':>8}")
    for name, med, lo, hi in rows:
        print(f"{name:<24}{med:>10.2f}{lo:>8.2f}{hi:>8.2f}")
    print(json.dumps({name: round(med, 2) for name, med, _, _ in rows}))


if __name__ == "__main__":
    main()

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

With a real ComfyUI (--comfyui DIR, default /work/e2e/ComfyUI when it exists, its Python from
--comfy-python, default DIR/../comfy-venv/bin/python), the figure is ComfyUI's own: each fresh
interpreter sets ComfyUI up as main.py does (its arguments, `server`, `nodes`, the PromptServer), then
times `nodes.load_custom_node(pack)` with time.perf_counter() exactly as init_external_custom_nodes does
(the number it prints as "0.0 seconds: .../ComfyFixerSmart"; that includes ComfyUI reading the pack's
pyproject.toml). ComfyUI's pyproject parser (comfy_config, pydantic) is imported first, as the first
pack ComfyUI loads pays it, not us; its cost is printed apart. Runs alternate between this checkout,
--baseline DIR (the same pack at an older commit) and an empty pack, with bytecode cached as a user's
ComfyUI has it (a cache of the benchmark's own, warmed once). --load N keeps N busy processes running
meanwhile (a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
E2E_COMFYUI = Path("/work/e2e/ComfyUI")

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


# ComfyUI's own start-up, as main.py does it, up to the loop over custom_nodes; then one pack timed the way
# nodes.init_external_custom_nodes times each (perf_counter around load_custom_node). Prints two numbers.
COMFY_CHILD = """
import asyncio, os, sys, time
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, os.getcwd())
import comfy.options
comfy.options.enable_args_parsing()
import folder_paths, utils.extra_config
import server, nodes
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
server.PromptServer(loop)
base_node_names = set(nodes.NODE_CLASS_MAPPINGS.keys())
t = time.perf_counter()
from comfy_config import config_parser  # the first pack ComfyUI loads pays this import
parser_ms = (time.perf_counter() - t) * 1000

async def timed(module_path):
    time_before = time.perf_counter()
    success = await nodes.load_custom_node(module_path, base_node_names, module_parent="custom_nodes")
    return (time.perf_counter() - time_before) * 1000, success

ms, ok = loop.run_until_complete(timed({pack!r}))
print(parser_ms, ms, ok)
"""


def comfy_run(python: str, comfyui: Path, pack: Path, env: dict[str, str]) -> tuple[float, float, bool]:
    out = subprocess.run([python, "-c", COMFY_CHILD.format(pack=str(pack))], capture_output=True, text=True,
                         cwd=comfyui, env=env, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"ComfyUI set-up failed ({out.returncode}): {out.stderr[-2000:]}")
    parser_ms, ms, ok = out.stdout.strip().splitlines()[-1].split()
    return float(parser_ms), float(ms), ok == "True"


def busy(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def inside_comfyui(args: argparse.Namespace, empty: Path, tmp: Path) -> None:
    python = args.comfy_python or str(args.comfyui.parent / "comfy-venv" / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")  # a user's ComfyUI keeps bytecode; ours is warmed once
    packs = {"this checkout": PACK}
    if args.baseline:
        packs["baseline " + str(args.baseline)] = args.baseline.resolve()
    packs["floor: empty pack"] = empty
    print(f"inside a real ComfyUI ({args.comfyui}), {args.comfy_repeat} fresh interpreters each, alternated"
          f"{f', {args.load} busy processes running' if args.load else ''} ...", flush=True)
    for pack in packs.values():
        comfy_run(python, args.comfyui, pack, env)  # warm the bytecode cache
    burners = busy(args.load)
    try:
        runs: dict[str, list[float]] = {name: [] for name in packs}
        parser: list[float] = []
        for _ in range(args.comfy_repeat):
            for name, pack in packs.items():
                p_ms, ms, ok = comfy_run(python, args.comfyui, pack, env)
                if not ok and pack != empty:
                    raise SystemExit(f"ComfyUI could not load {pack}")
                runs[name].append(ms)
                parser.append(p_ms)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    print(f"{'load_custom_node, as ComfyUI times it':<44}{'median ms':>10}{'min':>8}{'max':>8}   (target < 50 ms)")
    for name, xs in runs.items():
        print(f"{name:<44}{statistics.median(xs):>10.1f}{min(xs):>8.1f}{max(xs):>8.1f}   runs "
              + " ".join(f"{x:.0f}" for x in xs))
    print(f"{'ComfyUI pyproject parser import (not ours)':<44}{statistics.median(parser):>10.1f}{min(parser):>8.1f}"
          f"{max(parser):>8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--comfyui", type=Path, default=E2E_COMFYUI if E2E_COMFYUI.is_dir() else None,
                    help="a ComfyUI folder to measure inside (its own timing of load_custom_node)")
    ap.add_argument("--comfy-python", help="that ComfyUI's Python (default: DIR/../comfy-venv/bin/python)")
    ap.add_argument("--comfy-repeat", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="the pack at an older commit, measured alternately beside this one")
    ap.add_argument("--load", type=int, default=0, help="busy processes to run while measuring inside ComfyUI")
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
        print("stand-in ComfyUI (this interpreter, no bytecode written when PYTHONDONTWRITEBYTECODE is set)")
        print(f"{'import':<24}{'median ms':>10}{'min':>8}{'max':>8}")
        for name, med, lo, hi in rows:
            print(f"{name:<24}{med:>10.2f}{lo:>8.2f}{hi:>8.2f}")
        print(json.dumps({name: round(med, 2) for name, med, _, _ in rows}))
        if args.comfyui:
            print()
            inside_comfyui(args, empty, Path(tmp))
        else:
            print("inside a real ComfyUI: skipped (pass --comfyui DIR)")


if __name__ == "__main__":
    main()

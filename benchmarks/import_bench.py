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
pyproject.toml). ComfyUI's pyproject parser (comfy_config, pydantic) is imported and used once on another
pack's pyproject.toml first (tomllib's import and pydantic's set-up), as the first pack ComfyUI loads pays
that, not us; its cost is printed apart. Runs alternate between this checkout,
--baseline DIR (the same pack at an older commit) and an empty pack, with bytecode cached as a user's
ComfyUI has it (a cache of the benchmark's own, warmed once). --load N keeps N busy processes running
meanwhile (a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
sys.argv = ["main.py", "--cpu", "--user-directory", {user!r}]  # the service's state dir: the bench's own
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
from comfy_config import config_parser  # the first pack ComfyUI loads pays this import ...
config_parser.extract_node_configuration({warm!r})  # ... and the first parse (tomllib's import, pydantic's set-up)
parser_ms = (time.perf_counter() - t) * 1000

async def timed(module_path):
    time_before = time.perf_counter()
    success = await nodes.load_custom_node(module_path, base_node_names, module_parent="custom_nodes")
    return (time.perf_counter() - time_before) * 1000, success

ms, ok = loop.run_until_complete(timed({pack!r}))
# Then the panel's first request, as the page sends it: what the pack deferred to it is paid here.
from aiohttp.test_utils import make_mocked_request
status = [r for r in server.PromptServer.instance.routes if r.method == "GET" and r.path == "/comfyfixer/status"]
first_ms = first_cpu = float("nan")
if status:
    request = make_mocked_request("GET", "/comfyfixer/status", headers={{"X-ComfyFixer-Client": "panel"}})
    t, c = time.perf_counter(), time.thread_time()
    answer = loop.run_until_complete(status[0].handler(request))
    first_ms, first_cpu = (time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000
    assert answer.status == 200, answer.text
print(parser_ms, ms, ok, first_ms, first_cpu)
"""


def comfy_run(python: str, comfyui: Path, pack: Path, env: dict[str, str], warm: Path,
              user: Path) -> tuple[float, float, bool, float, float]:
    """(parser ms, load_custom_node ms, loaded, first GET /status ms, its CPU ms) of one fresh ComfyUI process."""
    shutil.rmtree(user, ignore_errors=True)
    user.mkdir()
    out = subprocess.run([python, "-c", COMFY_CHILD.format(pack=str(pack), warm=str(warm), user=str(user))],
                         capture_output=True, text=True, cwd=comfyui, env=env, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"ComfyUI set-up failed ({out.returncode}): {out.stderr[-2000:]}")
    parser_ms, ms, ok, first_ms, first_cpu = out.stdout.strip().splitlines()[-1].split()
    return float(parser_ms), float(ms), ok == "True", float(first_ms), float(first_cpu)


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
    # Another pack's pyproject.toml, parsed first: in a ComfyUI with other packs, one of them (the first in
    # custom_nodes' listing order) pays the parser's first use, tomllib's import included (2-5 ms).
    warm = tmp / "ParserWarmup"
    warm.mkdir()
    (warm / "pyproject.toml").write_text('[project]\nname = "parser-warmup"\nversion = "0.0.1"\n')
    user = tmp / "user"
    for pack in packs.values():
        comfy_run(python, args.comfyui, pack, env, warm, user)  # warm the bytecode cache
    burners = busy(args.load)
    try:
        runs: dict[str, list[float]] = {name: [] for name in packs}
        first: dict[str, list[float]] = {name: [] for name in packs if packs[name] != empty}
        first_cpu: dict[str, list[float]] = {name: [] for name in first}
        parser: list[float] = []
        for _ in range(args.comfy_repeat):
            for name, pack in packs.items():
                p_ms, ms, ok, first_ms, cpu_ms = comfy_run(python, args.comfyui, pack, env, warm, user)
                if not ok and pack != empty:
                    raise SystemExit(f"ComfyUI could not load {pack}")
                runs[name].append(ms)
                if name in first:
                    first[name].append(first_ms)
                    first_cpu[name].append(cpu_ms)
                parser.append(p_ms)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    print(f"{'load_custom_node, as ComfyUI times it':<44}{'median ms':>10}{'min':>8}{'max':>8}   (target < 50 ms)")
    for name, xs in runs.items():
        print(f"{name:<44}{statistics.median(xs):>10.1f}{min(xs):>8.1f}{max(xs):>8.1f}   runs "
              + " ".join(f"{x:.0f}" for x in xs))
    print(f"{'first panel request (GET /status)':<44}{'median ms':>10}{'min':>8}{'max':>8}   "
          "(the service is built; what start-up deferred loads)")
    for name, xs in first.items():
        print(f"{name:<44}{statistics.median(xs):>10.1f}{min(xs):>8.1f}{max(xs):>8.1f}   runs "
              + " ".join(f"{x:.0f}" for x in xs))
        cpu = first_cpu[name]
        print(f"{'  its CPU time (the loop thread)':<44}{statistics.median(cpu):>10.1f}{min(cpu):>8.1f}"
              f"{max(cpu):>8.1f}")
    print(f"{'ComfyUI pyproject parser import + 1st parse':<44}{statistics.median(parser):>10.1f}{min(parser):>8.1f}"
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

"""`comfy-fixer` / `python -m fixer`: the classic flags over the same engine the ComfyUI panel uses.

Exit codes: 0 nothing missing (or the action succeeded), 1 something is missing or failed,
2 usage or input error (bad flags, unreadable config, no ComfyUI root).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..actionlog import close_run_log, open_run_log
from ..config import Config, load_config, user_config_path
from ..errors import FixerError, RunLocked
from ..events import Event, EventBus, PhaseChanged, ScanFinished
from ..host.folder_probe import apply_server_maps
from ..host.host import StandaloneHost, ask_folder_maps, fetch_object_info, load_object_info
from ..host.static_folders import add_pack_folders
from ..identity import COMMANDS as IDENTITY_COMMANDS
from ..models import Resolution, ScanReport, to_jsonable
from ..state import StatusDocument, read_json
from ..upstream.tokens import load_secrets

if TYPE_CHECKING:
    from ..read.inventory import Inventory
    from ..shapes import PackMatch
    from .review import Plan
    from .run import FixRun

EXIT_OK, EXIT_MISSING, EXIT_USAGE = 0, 1, 2
PACK_DIR = Path(__file__).resolve().parents[2]
log = logging.getLogger("fixer.app.cli")


@dataclass
class RunContext:
    args: argparse.Namespace
    config: Config
    state_dir: Path
    root: Path | None
    workflows: list[str]
    bus: EventBus
    status: StatusDocument
    _host: StandaloneHost | None = field(default=None, init=False, repr=False)
    _inventory: Inventory | None = field(default=None, init=False, repr=False)

    def host(self) -> StandaloneHost:
        """The ComfyUI this run works on, built once: --server means a request to that ComfyUI."""
        if self._host is None:
            self._host = self._make_host()
        return self._host

    def inventory(self) -> Inventory:
        """The model files on disk, walked once per run: the scan and the fix after it share it."""
        from ..read.inventory import build_inventory

        if self._inventory is None:
            self._inventory = build_inventory(self.host())
        return self._inventory

    def _make_host(self) -> StandaloneHost:
        if self.root is None:
            raise FixerError("No ComfyUI folder given: pass --comfyui-root DIR, set comfyui_root in config.json, "
                             "or install this pack in ComfyUI/custom_nodes/")
        if not self.root.is_dir():
            raise FixerError(f"--comfyui-root {self.root} is not a folder")
        host = StandaloneHost.from_root(self.root, self.args.extra_model_paths)
        host.custom_nodes = self.root / "custom_nodes"  # the packs' sources say which folder an input lists
        add_pack_folders(host, self.root, self.state_dir / "cache" / "custom_nodes.json")  # ... and their folders
        if self.args.object_info:
            host.with_object_info(load_object_info(self.args.object_info), "object_info")
        elif self.args.server:
            host.with_object_info(fetch_object_info(self.args.server), "server")
            apply_server_maps(host.object_info, ask_folder_maps(self.args.server))
        return host

    def secrets(self) -> dict[str, str]:
        return load_secrets()


def default_root(config: Config) -> Path | None:
    """The ComfyUI holding this pack (custom_nodes/<pack>), else config.json's comfyui_root."""
    if PACK_DIR.parent.name == "custom_nodes" and (PACK_DIR.parent.parent / "main.py").exists():
        return PACK_DIR.parent.parent
    return Path(config.comfyui_root).expanduser() if config.comfyui_root else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="comfy-fixer",
        description="Find what ComfyUI workflows are missing (models, custom nodes), find where each model can be "
                    "had, download it verified into the right folder.",
        epilog="Exit codes: 0 nothing missing / success, 1 something missing or failed, 2 usage or input error. "
               "One-off download: comfy-fixer get URL --folder FOLDER [--name FILE] [--sha256 HEX]. "
               "Models by identity: comfy-fixer hashes | dupes | lock | sync | identify (each with --help).",
    )
    act = p.add_argument_group("actions (one)").add_mutually_exclusive_group()
    act.add_argument("--scan", action="store_true", help="find missing models and nodes (the default action)")
    act.add_argument("--status", action="store_true", help="show the state of the last or running run")
    act.add_argument("--auto", action="store_true",
                     help="scan, find sources, then download and verify everything missing (asks first, with the "
                          "count, total size, destination and free space)")
    act.add_argument("--resolve", action="store_true",
                     help="scan, then find where each missing model can be had (output/resolutions.json); no download")
    act.add_argument("--download", action="store_true", help="download what output/resolutions.json chose")
    act.add_argument("--resume", action="store_true",
                     help="continue unfinished downloads (output/downloaded_models.json); .part files resume")
    p.add_argument("--yes", "-y", action="store_true", help="with --auto: do not ask before downloading")
    p.add_argument("--portable", action="store_true",
                   help="with --resolve: also write each workflow with models[] download links to output/portable/")
    p.add_argument("--comfyui-root", metavar="DIR", help="ComfyUI folder (default: the one holding this pack, "
                   "else comfyui_root from config.json)")
    p.add_argument("--workflow", metavar="PATH", action="append", default=[],
                   help="workflow file or folder (repeatable; default: workflow_directories from config, "
                        "else ComfyUI's user/default/workflows)")
    p.add_argument("--state-dir", metavar="DIR", default=".", help="where status.json, output/ and log/ go (default .)")
    p.add_argument("--config", metavar="FILE", help=f"config.json (default: {user_config_path()}; never one in the "
                   "working directory or a workflow folder)")
    p.add_argument("--extra-model-paths", metavar="YAML", action="append", default=[],
                   help="an extra_model_paths.yaml besides the one in the ComfyUI folder (repeatable)")
    nodes = p.add_mutually_exclusive_group()
    nodes.add_argument("--server", metavar="URL", help="a running ComfyUI to check node types against")
    nodes.add_argument("--object-info", metavar="FILE", help="a saved /object_info answer to check node types against")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def make_context(args: argparse.Namespace) -> RunContext:
    state_dir = Path(args.state_dir).expanduser()
    config_path = Path(args.config).expanduser() if args.config else user_config_path()
    stray = state_dir / "config.json"
    if not args.config and stray.is_file():  # once read from here: say why it has no effect
        print(f"note: {stray} is not read (a config.json where workflows are unpacked could send tokens "
              f"elsewhere); move it to {config_path} or pass --config {stray}", file=sys.stderr)
    config = load_config(config_path)
    root = Path(args.comfyui_root).expanduser() if args.comfyui_root else default_root(config)
    workflows = args.workflow or config.workflow_directories or (
        [str(root / "user" / "default" / "workflows")] if root else [])
    bus = EventBus()
    status = StatusDocument(state_dir / "status.json")
    bus.subscribe(status)
    return RunContext(args, config, state_dir, root, workflows, bus, status)


def run_scan(ctx: RunContext) -> ScanReport:
    from ..read.scan import scan_paths
    from .report import write_scan_outputs

    host = ctx.host()
    if not ctx.workflows:
        raise FixerError("No workflows to scan: pass --workflow PATH or set workflow_directories in config.json")
    if not any(Path(w).expanduser().exists() for w in ctx.workflows):
        raise FixerError(f"No workflow found at {', '.join(ctx.workflows)}: check --workflow")
    ctx.bus.emit(PhaseChanged("scanning"))
    report = scan_paths(ctx.workflows, host, ctx.inventory())
    packs: list[PackMatch] = []
    if report.missing_nodes:  # the pack index (~5-10 ms of imports) only when a node type is missing
        from ..nodepacks.lookup import PackIndex, match_missing_nodes

        packs = match_missing_nodes(report.missing_nodes, PackIndex.load(ctx.root), None)
    write_scan_outputs(report, ctx.state_dir, packs)
    ctx.bus.emit(ScanFinished(report))
    return report


def cmd_scan(ctx: RunContext) -> int:
    from ..state import StateLock

    # Scanning while another run works in this state dir is fine; only its status.json is not ours to write.
    lock = StateLock(ctx.state_dir, "comfy-fixer --scan")
    try:
        lock.acquire()
    except RunLocked:
        ctx.status.path = None
        print(f"note: another ComfyFixerSmart run works in {ctx.state_dir}; this scan reports here and leaves "
              "that run's status.json alone.", file=sys.stderr)
    try:
        return _scan_and_report(ctx)
    finally:
        lock.release()


def _scan_and_report(ctx: RunContext) -> int:
    from .report import counts, model_entry, summary_text

    report = run_scan(ctx)
    c = counts(report)
    ctx.status.set_data({"scan": c})
    ctx.bus.emit(PhaseChanged("complete"))
    if ctx.args.json:
        missing_nodes = json.loads((ctx.state_dir / "output" / "missing_nodes.json").read_text())
        json.dump(to_jsonable({"summary": c, "node_check": report.node_check,
                               "models": [model_entry(s) for s in report.models],
                               "missing_nodes": missing_nodes, "problems": report.problems}),
                  sys.stdout, indent=2)
        print()
    else:
        print(summary_text(report))
        print(f"Reports: {ctx.state_dir / 'output'}")
    return EXIT_MISSING if (c.missing or c.elsewhere or c.unsafe or c.missing_nodes) else EXIT_OK


def cmd_status(ctx: RunContext) -> int:
    doc = read_json(ctx.state_dir / "status.json")
    if doc is None:
        print(f"No run state in {ctx.state_dir} (status.json not found)", file=sys.stderr)
        return EXIT_USAGE
    if ctx.args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
        return EXIT_OK
    prog = doc.get("progress") or {}
    print(f"Phase: {doc.get('phase')}  ({prog.get('current', 0)}/{prog.get('total', 0)}, "
          f"{prog.get('percent', 0)}%)  updated {doc.get('timestamp')}")
    for row in (doc.get("data") or {}).get("models", []):
        print(f"  {row.get('state', ''):<12} {row.get('folder') or '?'}/{row.get('name')}"
              + (f"  {row['error']}" if row.get("error") else ""))
    for err in doc.get("errors") or []:
        print(f"  error: {err.get('error')}")
    return EXIT_OK


def review_prompt(plan: Plan, base: Path | None, stream_in=None, origins: dict[str, str] | None = None) -> bool:
    """The prompt over what is about to be downloaded: y downloads, n stops, v lists where
    each file goes, how big it is and where it comes from (`origins`: name -> words)."""
    from .console import human_bytes

    stream_in = stream_in or sys.stdin
    if not plan.fits:
        print(f"warning: {human_bytes(plan.total_bytes)} will not fit in the {human_bytes(plan.min_free)} free "
              "on the destination disk; free some space or answer n.")
    while True:
        print(f"{plan.headline(base)}? Your choice [y/n/v]: ", end="", flush=True)
        answer = stream_in.readline()
        if not answer:
            return False
        answer = answer.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no", "q"):
            return False
        if answer == "v":
            for f in plan.files:
                about = [human_bytes(f.size) if f.size is not None else "size unknown"]
                about += [origins[f.name]] if origins and f.name in origins else []
                print(f"  {f.folder:<18} {f.path or f'{f.name}: {f.problem}'}  ({', '.join(about)})")


@contextmanager
def plain_ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt again: asyncio.run turns it into a cancellation of the run,
    which a read blocking inside the loop never sees (the prompt would ignore the first Ctrl-C)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def held_plan(run: FixRun) -> Plan:
    """The plan of the files a review-mode run holds (the panel's is built the same way in service.py)."""
    from ..host.host import target_root
    from .review import make_plan

    return make_plan(((r.name, r.folder, r.size) for r in run.rows.values() if r.state == "review"),
                     lambda folder: target_root(run.folders, folder))


def held_origins(run: FixRun) -> dict[str, str]:
    """Where each held file would come from: a copy already on disk is linked, not downloaded."""
    from urllib.parse import urlsplit

    origins = {}
    for name, res in run.resolutions.items():
        c = res.chosen
        if c is not None and run.rows[name].state == "review":
            origins[name] = (f"linked from {c.local_path}" if c.source == "local" and c.local_path
                             else f"from {urlsplit(c.url).netloc}" if c.url else c.source)
    return origins


def final_summary(data: dict) -> str:
    from .console import human_bytes

    rows = data["models"]

    def by(state: str) -> list[Any]:
        return [r for r in rows if r["state"] == state]

    done = by("done")
    lines = ["", "=== Summary ===",
             f"Fixed: {len(done)} ({human_bytes(sum(r.get('total') or r.get('size') or 0 for r in done))})"]
    lines += [f"  {r['folder']}/{r['name']}  <- {r['source']}" for r in done]
    for state, title in (("needs_choice", "Needs your choice"), ("not_found", "Not found"),
                         ("failed", "Failed"), ("cancelled", "Cancelled")):
        for r in by(state):
            err = r.get("error")  # an ErrorInfo as data: its message is the words for a person
            said = err.get("message") if isinstance(err, dict) else err
            lines.append(f"{title}: {r['folder'] or '?'}/{r['name']}: {said or r.get('reason') or ''}")
            lines += [f"    candidate: {c['source']} {c.get('url') or c.get('local_path')} "
                      f"({c['confidence']:.2f}) {c['reason']}" for c in r.get("candidates", [])[:3]]
    for r in by("skipped"):  # a source that needs a token nobody set: waiting for it, not failed
        if r.get("needs_token"):
            lines.append(f"Needs {r['needs_token']}: {r['folder'] or '?'}/{r['name']}: set it and run again")
    lines.append(f"Took {data['summary'].get('seconds', 0):.1f} s. Details: output/resolutions.json, "
                 "output/downloaded_models.json, status.json")
    return "\n".join(lines)


def cmd_auto(ctx: RunContext) -> int:
    import asyncio

    from ..sources.family import report_families
    from ..state import StateLock
    from .console import ConsoleProgress
    from .report import summary_text
    from .run import FixRun

    with StateLock(ctx.state_dir, "comfy-fixer --auto"):
        report = run_scan(ctx)
        print(summary_text(report))
        refs = [s.ref for s in report.models if s.state in ("missing", "elsewhere")]
        refused = report.by_state("unsafe")  # never fetched, but the workflow still lacks them
        if not refs:
            print(f"Nothing to download: {len(refused)} refused reference(s) above; fix them in the workflow."
                  if refused else "No model is missing.")
            ctx.bus.emit(PhaseChanged("complete"))
            return EXIT_MISSING if report.missing_nodes or refused else EXIT_OK
        # Asking needs the sizes, so the question comes after resolving (the run holds every file until
        # the answer). No terminal to ask (CI, pipes): downloads without asking, as scripts expect.
        ask = not ctx.args.yes and sys.stdin.isatty()
        run = FixRun(refs, config=ctx.config, secrets=ctx.secrets(), bus=ctx.bus, folders=ctx.host().folders(),
                     extensions=ctx.host().extensions, inventory=ctx.inventory(), state_dir=ctx.state_dir,
                     comfyui_root=ctx.root,
                     workflow=", ".join(ctx.workflows), families=report_families(report), review=ask)
        ctx.bus.subscribe(ConsoleProgress())
        ctx.bus.subscribe(lambda _e: ctx.status.set_data(run.data()))
        declined = False

        def on_review(event: Event) -> None:
            # Answered inside the event: while the run waits in review nothing else is in flight
            # (resolving ended, no download started), so blocking the loop on the terminal is harmless.
            nonlocal declined
            if not (isinstance(event, PhaseChanged) and event.phase == "review"):
                return
            declined = True  # an unreadable terminal or Ctrl-C is a no, never a run waiting forever
            try:
                with plain_ctrl_c():
                    declined = not review_prompt(held_plan(run), ctx.root, origins=held_origins(run))
            except KeyboardInterrupt:
                print()
            finally:
                run.cancel() if declined else run.approve()

        if ask:
            ctx.bus.subscribe(on_review)
        data = asyncio.run(run.run())
        ctx.status.set_data(data, force=True)
        if declined:
            print(f"Nothing downloaded. The sources found are in {ctx.state_dir / 'output' / 'resolutions.json'}; "
                  "comfy-fixer --download fetches them later.")
            return EXIT_MISSING
        print(final_summary(data))
        ok = all(r["state"] == "done" for r in data["models"])
        return EXIT_OK if ok and not report.missing_nodes and not refused else EXIT_MISSING


def cmd_resolve(ctx: RunContext) -> int:
    """`comfy-fixer --resolve`: scan, then find a source for every missing model; writes
    output/resolutions.json as each model resolves (and, with --portable, a portable copy of each
    workflow under output/portable/). Downloads nothing."""
    import asyncio

    from ..events import ModelResolved
    from ..read.readers import iter_workflow_files
    from ..sources.family import report_families
    from ..state import StateLock, write_json_atomic
    from .portable import write_portable
    from .resolve import ResolveContext, Resolver, resolution_entry

    with StateLock(ctx.state_dir, "comfy-fixer --resolve"):
        report = run_scan(ctx)
        refs = [s.ref for s in report.models if s.state in ("missing", "elsewhere")]
        rctx = ResolveContext(config=ctx.config.search, secrets=ctx.secrets(), inventory=ctx.inventory(),
                              state_dir=ctx.state_dir, comfyui_root=ctx.root,
                              families=report_families(report))
        out = ctx.state_dir / "output" / "resolutions.json"
        ctx.bus.emit(PhaseChanged("resolving", total=len(refs)))
        done: list[Resolution] = []

        async def run() -> None:
            async for res in Resolver(rctx).resolve(refs):
                done.append(res)
                ctx.bus.emit(ModelResolved(res))
                write_json_atomic(out, [resolution_entry(r) for r in done])
                if not ctx.args.json:
                    c = res.chosen
                    where = (c.url or c.local_path) if c else f"{len(res.candidates)} candidate(s) to choose from" \
                        if res.candidates else "; ".join(res.tried[-2:])
                    conf = f" ({c.confidence:.2f})" if c else ""
                    print(f"  {res.source:<12} {res.folder or '?'}/{res.name}{conf}: {where}", flush=True)

        asyncio.run(run())
        write_json_atomic(out, [resolution_entry(r) for r in done])
        if getattr(ctx.args, "portable", False):
            dest = ctx.state_dir / "output" / "portable"
            dest.mkdir(parents=True, exist_ok=True)
            for wf in iter_workflow_files(ctx.workflows):
                try:
                    write_portable(wf, done, dest / f"{wf.stem}.portable.json", ctx.config.search.fuzzy_threshold)
                except (OSError, ValueError) as e:
                    print(f"  cannot write a portable copy of {wf}: {e}", file=sys.stderr)
        ctx.bus.emit(PhaseChanged("complete"))
        if ctx.args.json:
            json.dump(to_jsonable([resolution_entry(r) for r in done]), sys.stdout, indent=2)
            print()
        else:
            found = sum(1 for r in done if r.chosen)
            print(f"{found} of {len(done)} missing model(s) have a source; details in {out}")
        return EXIT_OK if all(r.chosen for r in done) else EXIT_MISSING


def _transfer_command(name: str) -> Callable[[RunContext], int]:
    """A download command: it lives beside the transfer stage and is imported only when it runs (keeps
    --scan light)."""
    def run(ctx: RunContext) -> int:
        from ..transfer import commands

        chosen: Callable[[RunContext], int] = {"get": commands.cmd_get, "download": commands.cmd_download,
                                               "resume": commands.cmd_resume}[name]
        return chosen(ctx)
    return run


COMMANDS: dict[str, Callable[[RunContext], int]] = {
    "scan": cmd_scan, "status": cmd_status, "auto": cmd_auto, "resolve": cmd_resolve,
    "get": _transfer_command("get"), "download": _transfer_command("download"),
    "resume": _transfer_command("resume"),
}


def chosen_command(args: argparse.Namespace) -> str:
    return next((name for name in COMMANDS if getattr(args, name, False)), "scan")


def report_error(ctx: RunContext, error: FixerError) -> None:
    """The error into status.json, only while no other run holds the state dir (it owns the file then)."""
    from ..state import StateLock

    try:
        with StateLock(ctx.state_dir, "comfy-fixer error report"):
            ctx.status.add_error(error.info())
            ctx.bus.emit(PhaseChanged("error"))
    except RunLocked:
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command. Called without argv (the console script, `python -m fixer`) it is the process's entry:
    once the command has returned (its files written and closed, its threads joined) the process ends with
    the exit code at once, without the interpreter's teardown of every loaded module, which takes 50-120 ms
    after a download is done, the most with numpy loaded for the safetensors check (benchmarks/download_bench.py
    'end' phase). Only stdout, stderr and the log handlers still hold buffered output then: they are flushed.
    Under a profiler or tracer (cProfile, coverage) it returns, so they can write their results at exit."""
    if argv is not None:
        return _run(list(argv))
    code = _run(sys.argv[1:])
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return code  # a profiler or coverage writes its results at the interpreter's exit
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`| head`) takes nothing more
            pass
    os._exit(code)


def _run(argv: list[str]) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name is printed escaped, never a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)  # decisions go to the run log; the terminal gets the summary
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(console)
    if argv[:1] and argv[0] in IDENTITY_COMMANDS:  # hashes, dupes, lock, sync, identify: fixer/identity
        from ..identity.commands import main as identity_main

        return identity_main(argv)
    parser = build_parser()
    if argv[:1] == ["get"]:  # the one-off download: `comfy-fixer get URL --folder F [...]`
        from ..transfer.commands import add_get_arguments

        parser.prog = "comfy-fixer get"
        add_get_arguments(parser)
        args = parser.parse_args(argv[1:])
        args.get = True
    else:
        args = parser.parse_args(argv)
    try:
        ctx = make_context(args)
    except FixerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    name = chosen_command(args)
    handler = open_run_log(ctx.state_dir / "log", name) if name != "status" else None
    try:
        return COMMANDS[name](ctx)
    except RunLocked as e:  # the running run owns status.json: nothing of ours goes there
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except FixerError as e:
        report_error(ctx, e)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; run again with --resume to continue", file=sys.stderr)
        return 130
    finally:
        if handler:
            close_run_log(handler)

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import __version__
from ..actionlog import close_run_log, open_run_log
from ..config import Config, load_config, user_config_path
from ..errors import ConfigError, ErrorInfo, FixerError, RunLocked, WorkflowError
from ..events import ErrorRaised, Event, EventBus, PhaseChanged, ScanFinished
from ..host.folder_probe import apply_server_maps
from ..host.host import Host, StandaloneHost, ask_folder_maps, fetch_object_info, load_object_info
from ..host.static_folders import add_pack_folders
from ..identity import COMMANDS as IDENTITY_COMMANDS
from ..models import Candidate, Resolution, ScanReport, to_jsonable
from ..state import (
    RUNNING_PHASES,
    StateLock,
    StatusDocument,
    interrupted_error,
    read_json,
    settled_status,
    write_json_atomic,
)
from .application import Application, models_to_fetch

if TYPE_CHECKING:
    from ..read.inventory import Inventory
    from .review import Plan
    from .run import FixRun

EXIT_OK, EXIT_MISSING, EXIT_USAGE = 0, 1, 2
LAST_RUN_FILE = "last_run.json"  # the workflows and ComfyUI the last scan read: what --resume continues
PACK_DIR = Path(__file__).resolve().parents[2]
log = logging.getLogger("fixer.app.cli")


@dataclass
class RunContext:
    """One command of the CLI: its flags and workflows over the application (the ComfyUI it works on, built on
    first use from the flags; the settings, tokens, state dir and bus)."""

    args: argparse.Namespace
    root: Path | None
    workflows: list[str]
    default_workflows: bool = False  # ComfyUI's own user/default/workflows: absent on a fresh install, and fine
    app: Application = field(init=False, repr=False)

    @property
    def config(self) -> Config:
        return self.app.config

    @property
    def state_dir(self) -> Path:
        return self.app.state_dir

    @property
    def bus(self) -> EventBus:
        return self.app.bus

    @property
    def status(self) -> StatusDocument:
        return self.app.status

    def host(self) -> Host:
        """The ComfyUI this run works on, built once: --server means a request to that ComfyUI."""
        return self.app.host

    def inventory(self) -> Inventory:
        """The model files on disk, walked once per run: the scan and the fix after it share it."""
        return self.app.inventory()

    def secrets(self) -> dict[str, str]:
        return self.app.secrets()

    def _make_host(self) -> StandaloneHost:
        if self.root is None:
            raise FixerError("No ComfyUI folder given: pass --comfyui-root DIR, set comfyui_root in config.json, "
                             "or install this pack in ComfyUI/custom_nodes/")
        self.root = comfyui_folder(self.root)
        for extra in self.args.extra_model_paths:
            if not Path(extra).expanduser().is_file():
                raise ConfigError(f"--extra-model-paths {extra}: no such file; give the path of an "
                                  "extra_model_paths.yaml")
        self.app.comfyui_root = self.root
        host = StandaloneHost.from_root(self.root, [str(Path(p).expanduser()) for p in self.args.extra_model_paths])
        host.custom_nodes = self.root / "custom_nodes"  # the packs' sources say which folder an input lists
        add_pack_folders(host, self.root, self.state_dir / "cache" / "custom_nodes.json")  # ... and their folders
        if self.args.object_info:
            host.with_object_info(load_object_info(self.args.object_info), "object_info")
        elif self.args.server:
            info = fetch_object_info(self.args.server)
            host.with_object_info(info, "server")
            apply_server_maps(info, ask_folder_maps(self.args.server))
        return host


COMFYUI_MARKERS = ("main.py", "folder_paths.py")


def comfyui_folder(root: Path) -> Path:
    """The ComfyUI folder `root` names, checked: models go under it, so a typo must never become a folder
    that silently fills with gigabytes. A portable build's top folder (ComfyUI/ beside python_embeded/)
    means its ComfyUI/."""
    if not root.is_dir():
        raise ConfigError(f"--comfyui-root {root} is not a folder; give the ComfyUI folder (the one holding "
                          "main.py and folder_paths.py)")
    if all((root / m).is_file() for m in COMFYUI_MARKERS):
        return root
    inner = root / "ComfyUI"
    if (root / "python_embeded").is_dir() and all((inner / m).is_file() for m in COMFYUI_MARKERS):
        return inner
    missing = [m for m in COMFYUI_MARKERS if not (root / m).is_file()]
    raise ConfigError(f"--comfyui-root {root} does not look like a ComfyUI folder: {' and '.join(missing)} "
                      f"{'is' if len(missing) == 1 else 'are'} missing. Give the folder holding ComfyUI's main.py "
                      "and folder_paths.py (for the portable build, its ComfyUI/ folder); nothing was written")


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
                     help="continue what the last run did not finish: models not searched yet, downloads not "
                          "started, partial files (.part resume where they stopped); with no earlier run, a whole "
                          "run as --auto")
    p.add_argument("--choose", metavar="NAME=N|URL", action="append", default=[],
                   help="with --auto/--resume: take candidate N (as the summary numbers them) or that candidate "
                        "link for a model that needs your choice (repeatable)")
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
    last = read_json(state_dir / "output" / LAST_RUN_FILE) if getattr(args, "resume", False) else None
    recorded = [w for w in (last or {}).get("workflows", []) if isinstance(w, str)] if isinstance(last, dict) else []
    if root is None and isinstance(last, dict) and isinstance(last.get("comfyui_root"), str):
        root = Path(last["comfyui_root"])  # --resume continues the ComfyUI the last run worked on
    default = not (args.workflow or config.workflow_directories or recorded)
    workflows = args.workflow or config.workflow_directories or recorded or (
        [str(root / "user" / "default" / "workflows")] if root else [])
    ctx = RunContext(args, root, workflows, default)
    ctx.app = Application(state_dir, config, make_host=ctx._make_host, comfyui_root=root)
    return ctx


def run_scan(ctx: RunContext) -> ScanReport:
    from ..read.readers import iter_workflow_files
    from .report import write_scan_outputs

    ctx.host()  # the ComfyUI first: without one nothing else can be said
    if not ctx.workflows:
        raise FixerError("No workflows to scan: pass --workflow PATH or set workflow_directories in config.json")
    given = [Path(w).expanduser() for w in ctx.workflows]
    absent = [str(p) for p in given if not p.exists()]
    if absent and not ctx.default_workflows:
        raise WorkflowError(", ".join(absent), "no such file or folder; check --workflow (or workflow_directories "
                                               "in config.json)")
    empty = [str(p) for p in given if p.is_dir() and next(iter_workflow_files([str(p)]), None) is None]
    if empty and not ctx.default_workflows:
        raise WorkflowError(", ".join(empty), "the folder holds no workflow file (.json, or an image ComfyUI "
                                              "saved: .png, .webp)")
    ctx.bus.emit(PhaseChanged("scanning"))
    report = ctx.app.scan_files([str(p) for p in given if p.exists()])
    for p in report.problems:
        ctx.bus.emit(ErrorRaised(ErrorInfo("workflow_unreadable", f"Failed to parse {p.path}: {p.error}"),
                                 "the file was skipped; the run went on with the others"))
    if report.problems and not report.workflows:
        raise FixerError("No workflow could be read:\n" + "\n".join(f"  {p.path}: {p.error}" for p in report.problems))
    if ctx.default_workflows and not report.workflows:
        print(f"No saved workflow in {given[0]} yet (a fresh ComfyUI has none): nothing to check. Save a workflow "
              "in ComfyUI, or pass --workflow FILE, and run again.", file=sys.stderr)
    write_scan_outputs(report, ctx.state_dir, ctx.app.packs_for(report))
    write_json_atomic(ctx.state_dir / "output" / LAST_RUN_FILE,
                      {"workflows": [str(p.resolve()) for p in given if p.exists()],
                       "comfyui_root": str(ctx.root.resolve()) if ctx.root else None})
    ctx.bus.emit(ScanFinished(report))
    return report


def exit_code(report: ScanReport, code: int) -> int:
    """An input that could not be read is an input error (2), also when the run went on with the others."""
    return EXIT_USAGE if report.problems else code


def cmd_scan(ctx: RunContext) -> int:
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
    from .report import counts, model_entry, nodes_output, summary_text

    report = run_scan(ctx)
    c = counts(report)
    ctx.status.set_data({"scan": c})
    ctx.bus.emit(PhaseChanged("complete"))
    if ctx.args.json:
        missing_nodes = nodes_output(report, []) if report.node_check == "skipped" else \
            json.loads((ctx.state_dir / "output" / "missing_nodes.json").read_text())
        json.dump(to_jsonable({"summary": c, "node_check": report.node_check,
                               "models": [model_entry(s) for s in report.models],
                               "missing_nodes": missing_nodes, "problems": report.problems}),
                  sys.stdout, indent=2)
        print()
    else:
        print(summary_text(report))
        print(f"Reports: {ctx.state_dir / 'output'}")
    return exit_code(report, EXIT_MISSING if (c.missing or c.elsewhere or c.unsafe or c.missing_nodes) else EXIT_OK)


def cmd_status(ctx: RunContext) -> int:
    """`--status`: the state of the running or last run; never an error when nothing ran (phase idle)."""
    doc, holder = settled_status(ctx.state_dir)
    if ctx.args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
        return EXIT_OK
    prog = doc.get("progress") or {}
    data = doc["data"]
    print(f"Phase: {doc.get('phase')}  ({prog.get('current', 0)}/{prog.get('total', 0)}, "
          f"{prog.get('percent', 0)}%)  updated {doc.get('timestamp')}")
    if doc.get("phase") == "idle":
        print(f"Nothing has run in {ctx.state_dir} yet: comfy-fixer --auto starts a run.")
        return EXIT_OK
    print(f"Scanned {data['workflows_scanned']} workflow(s), {data['missing_models']} missing model(s); "
          f"matches: Civitai {data['civitai_matches']}, Hugging Face {data['huggingface_matches']}; "
          f"downloads: {data['downloads_successful']} done, {data['downloads_failed']} failed"
          + (f"; now: {data['current_download']}" if data.get("current_download") else ""))
    if holder:
        print(f"Running: {holder}")
    for row in data.get("models") or []:
        if isinstance(row, dict):
            print(f"  {row.get('state', ''):<12} {row.get('folder') or '?'}/{row.get('name')}"
                  + (f"  {row['error']}" if row.get("error") else ""))
    for err in doc.get("errors") or []:
        if isinstance(err, dict):
            print(f"  error: {err.get('error')}" + (f" ({err['details']})" if err.get("code") == "run_interrupted"
                                                    and err.get("details") else ""))
    return EXIT_OK


def review_prompt(plan: Plan, base: Path | None, stream_in: TextIO | None = None,
                  origins: dict[str, str] | None = None) -> bool:
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


def final_summary(data: dict[str, Any]) -> str:
    from .console import human_bytes

    rows = data["models"]

    def by(state: str) -> list[Any]:
        return [r for r in rows if r["state"] == state]

    done = by("done")
    lines = ["", "=== Summary ===",
             f"Fixed: {len(done)} ({human_bytes(sum(r.get('total') or r.get('size') or 0 for r in done))})"]
    lines += [f"  {r['folder']}/{r['name']}  <- {r.get('origin') or r['source']} ({r['source']})" for r in done]
    for state, title in (("needs_choice", "Needs your choice"), ("not_found", "Not found"),
                         ("failed", "Failed"), ("cancelled", "Cancelled")):
        for r in by(state):
            err = r.get("error")  # an ErrorInfo as data: its message is the words for a person
            said = err.get("message") if isinstance(err, dict) else err
            lines.append(f"{title}: {r['folder'] or '?'}/{r['name']}: {said or r.get('reason') or ''}")
            lines += [f"    candidate {i}: {c['source']} {c.get('url') or c.get('local_path')} "
                      f"({c['confidence']:.2f}) {c['reason']}" for i, c in enumerate(r.get("candidates", [])[:3], 1)]
            if state == "needs_choice" and r.get("candidates"):
                lines.append(f"    to take candidate 1: comfy-fixer --resume --choose '{r['name']}=1'")
    for r in by("skipped"):  # a source that needs a token nobody set: waiting for it, not failed
        if r.get("needs_token"):
            lines.append(f"Needs {r['needs_token']}: {r['folder'] or '?'}/{r['name']}: set it and run again")
    lines.append(f"Took {data['summary'].get('seconds', 0):.1f} s. Details: output/resolutions.json, "
                 "output/downloaded_models.json, status.json")
    return "\n".join(lines)


def chosen_by_flag(ctx: RunContext) -> dict[str, Any]:
    """`--choose NAME=N|URL`: the candidate the user takes for a model that needs a choice, from the ones the
    last search listed in output/resolutions.json (a number as the summary shows them, or one of their links)."""
    from .resolve import resolution_from_json

    if not ctx.args.choose:
        return {}
    entries = read_json(ctx.state_dir / "output" / "resolutions.json")
    known = {r.name: r for r in (resolution_from_json(e) for e in (entries if isinstance(entries, list) else []))
             if r is not None}
    out: dict[str, Any] = {}
    for item in ctx.args.choose:
        name, sep, pick = item.rpartition("=")
        res = known.get(name)
        if not sep or res is None:
            raise FixerError(f"--choose {item}: no model named {name or item!r} in output/resolutions.json; use "
                             "NAME=N with a name the summary lists under 'Needs your choice'")
        offered = res.candidates
        candidate: Candidate | None
        if pick.isdigit() and 1 <= int(pick) <= len(offered):
            candidate = offered[int(pick) - 1]
        else:
            candidate = next((c for c in offered if pick and pick in (c.url, c.local_path)), None)
        if candidate is None or not (candidate.url or candidate.local_path):
            raise FixerError(f"--choose {item}: {name} has {len(offered)} candidate(s); give a number from 1 to "
                             f"{len(offered)} or one of their links (see output/resolutions.json)")
        if not (candidate.folder or res.folder):
            raise FixerError(f"--choose {item}: the folder of {name} is unknown; it cannot be placed")
        out[name] = replace(candidate, folder=candidate.folder or res.folder)
    return out


def recorded_choices(state_dir: Path, refs: list[Any]) -> dict[str, Resolution]:
    """The sources an earlier run chose (output/resolutions.json) for models still missing: --resume downloads
    them without searching again. A record for another folder than the workflow's loader reads is ignored."""
    from .resolve import resolution_from_json

    entries = read_json(state_dir / "output" / "resolutions.json")
    by_name = {r.name: r for r in refs}
    out: dict[str, Resolution] = {}
    for e in entries if isinstance(entries, list) else []:
        res = resolution_from_json(e)
        ref = by_name.get(res.name) if res is not None else None
        if res is None or ref is None or res.chosen is None or (ref.folder and res.folder != ref.folder):
            continue
        out[res.name] = res
    return out


def continuing(ctx: RunContext, refs: list[Any], recorded: dict[str, Resolution], leftovers: int = 0) -> str:
    """What --resume continues, in one line: models not searched yet, downloads not started, partial ones, and
    downloads recorded by `get` or `--download` that did not finish."""
    from ..host.host import target_root
    from ..transfer.resume import covered, load, part_path

    unsearched = [r for r in refs if r.name not in recorded]
    partial, kept = 0, 0
    for res in recorded.values():
        try:
            part = part_path(Path(target_root(ctx.host().folders(), res.folder or "")) / res.name)
        except FixerError:
            continue
        sidecar = load(part) if part.exists() else None
        if sidecar is not None:
            partial, kept = partial + 1, kept + covered(sidecar.ranges)
    from .console import human_bytes

    parts = [f"{len(unsearched)} model(s) not searched yet" if unsearched else "",
             f"{len(recorded) - partial} download(s) not started" if len(recorded) > partial else "",
             f"{partial} partial download(s) ({human_bytes(kept)} already on disk)" if partial else "",
             f"{leftovers} recorded download(s) not finished" if leftovers else ""]
    return "Continuing the last run: " + ", ".join(p for p in parts if p) + "."


def cmd_auto(ctx: RunContext) -> int:
    return fix(ctx, resume=False)


def cmd_resume(ctx: RunContext) -> int:
    """`--resume`: whatever the last run set out to do and did not finish, from where it stopped: the scan
    again (cheap, and the truth of what is still missing), the sources it chose reused, the models it never
    searched searched, downloads started (partial files continue), and downloads recorded by `get` or
    `--download` that did not finish. With nothing recorded it is a whole run, as the guide's --resume is."""
    return fix(ctx, resume=True)


def fix(ctx: RunContext, resume: bool) -> int:
    import asyncio

    from ..sources.family import report_families
    from .console import ConsoleProgress
    from .report import summary_text

    command = "--resume" if resume else "--auto"
    with StateLock(ctx.state_dir, f"comfy-fixer {command}"):
        report = run_scan(ctx)
        if not ctx.args.json:
            print(summary_text(report))
        refs = models_to_fetch(report)
        refused = report.by_state("unsafe")  # never fetched, but the workflow still lacks them
        recorded = recorded_choices(ctx.state_dir, refs) if resume else {}
        leftovers = unfinished_records(ctx, refs) if resume else []
        if not refs and not leftovers:
            say = ("Nothing to resume: everything the last run set out to do is done." if resume else
                   f"Nothing to download: {len(refused)} refused reference(s) above; fix them in the workflow."
                   if refused else "No model is missing.")
            ctx.status.set_data({}, force=True)
            ctx.bus.emit(PhaseChanged("complete"))
            if ctx.args.json:
                json.dump({"status": ctx.status.snapshot(), "message": say}, sys.stdout, indent=2)
                print()
            else:
                print(say, file=sys.stderr if resume else sys.stdout)
            return exit_code(report, EXIT_MISSING if report.missing_nodes or refused else EXIT_OK)
        if resume and not ctx.args.json:
            print(continuing(ctx, refs, recorded, len(leftovers)))
        # Asking needs the sizes, so the question comes after resolving (the run holds every file until
        # the answer). No terminal to ask (CI, pipes): downloads without asking, as scripts expect.
        ask = not ctx.args.yes and sys.stdin.isatty() and not ctx.args.json
        run = ctx.app.new_run(refs, inventory=ctx.inventory(), workflow=", ".join(ctx.workflows),
                              families=report_families(report), review=ask, recorded=recorded,
                              chosen=chosen_by_flag(ctx))
        # The run's console lines; the recorded downloads after it print their own (two would say each twice).
        unsubscribe_console = ctx.bus.subscribe(ConsoleProgress()) if not ctx.args.json else None
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
                    declined = not review_prompt(ctx.app.review_plan(run.rows.values(), run.folders), ctx.root,
                                                 origins=held_origins(run))
            except KeyboardInterrupt:
                print()
            finally:
                run.cancel() if declined else run.approve()

        if ask:
            ctx.bus.subscribe(on_review)
        data = asyncio.run(run.run()) if refs else {"models": []}  # its rows in status.json: outputs.RunStatus
        extra_ok = True
        if leftovers:
            from ..transfer.commands import download_requests

            if unsubscribe_console is not None:
                unsubscribe_console()
            extra_ok = download_requests(ctx, leftovers)
        if declined:
            print(f"Nothing downloaded. The sources found are in {ctx.state_dir / 'output' / 'resolutions.json'}; "
                  "comfy-fixer --download fetches them later.")
            return EXIT_MISSING
        if ctx.args.json:
            json.dump(ctx.status.snapshot(), sys.stdout, indent=2)
            print()
        elif refs:
            print(final_summary(data))
        ok = all(r["state"] == "done" for r in data["models"]) and extra_ok
        return exit_code(report, EXIT_OK if ok and not report.missing_nodes and not refused else EXIT_MISSING)


def unfinished_records(ctx: RunContext, refs: list[Any]) -> list[Any]:
    """Downloads recorded in downloaded_models.json (by `get`, `--download` or a run) that did not finish and
    that the workflows' run does not cover: their requests, as --resume starts them again."""
    from ..transfer.records import DOWNLOADED_FILE, read_records, request_from_record

    names = {r.name for r in refs}
    out = []
    for e in read_records(ctx.state_dir / "output" / DOWNLOADED_FILE):
        if e.get("state") == "done" or not isinstance(e.get("url"), str) or not isinstance(e.get("filename"), str):
            continue
        if (e.get("name") or e.get("filename")) in names:
            continue
        if isinstance(e.get("path"), str) and Path(e["path"]).exists():
            continue
        try:
            out.append(request_from_record(e))
        except (KeyError, TypeError, ValueError):
            continue  # the records file is as untrusted as any input
    return out


def cmd_resolve(ctx: RunContext) -> int:
    """`comfy-fixer --resolve`: scan, then find a source for every missing model; writes
    output/resolutions.json as each model resolves (and, with --portable, a portable copy of each
    workflow under output/portable/). Downloads nothing."""
    import asyncio

    from ..events import ModelResolved, Progress
    from ..read.readers import iter_workflow_files
    from ..sources.family import report_families
    from .portable import write_portable
    from .resolve import ResolveContext, Resolver, bytes_source, resolution_entry, unresolved_event

    with StateLock(ctx.state_dir, "comfy-fixer --resolve"):
        report = run_scan(ctx)
        refs = models_to_fetch(report)
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
                if res.chosen is None:
                    ctx.bus.emit(unresolved_event(res))
                ctx.bus.emit(Progress(len(done), len(refs)))
                origins = [bytes_source(r.chosen) for r in done]
                ctx.status.set_counts({"civitai_matches": origins.count("civitai"),
                                       "huggingface_matches": origins.count("huggingface")})
                if not ctx.args.json:
                    c = res.chosen
                    where = (c.url or c.local_path) if c else f"{len(res.candidates)} candidate(s) to choose from" \
                        if res.candidates else "; ".join(res.tried[-2:])
                    conf = f" ({c.confidence:.2f})" if c else ""
                    print(f"  {bytes_source(c):<12} {res.folder or '?'}/{res.name}{conf}: {where}", flush=True)

        asyncio.run(run())
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
        return exit_code(report, EXIT_OK if all(r.chosen for r in done) else EXIT_MISSING)


def _transfer_command(name: str) -> Callable[[RunContext], int]:
    """A download command: it lives beside the transfer stage and is imported only when it runs (keeps
    --scan light)."""
    def run(ctx: RunContext) -> int:
        from ..transfer import commands

        chosen: Callable[[RunContext], int] = {"get": commands.cmd_get, "download": commands.cmd_download}[name]
        return chosen(ctx)
    return run


COMMANDS: dict[str, Callable[[RunContext], int]] = {
    "scan": cmd_scan, "status": cmd_status, "auto": cmd_auto, "resolve": cmd_resolve,
    "get": _transfer_command("get"), "download": _transfer_command("download"),
    "resume": cmd_resume,
}


def chosen_command(args: argparse.Namespace) -> str:
    return next((name for name in COMMANDS if getattr(args, name, False)), "scan")


def report_error(ctx: RunContext, error: FixerError) -> None:
    """The error into status.json, only while no other run holds the state dir (it owns the file then)."""
    try:
        with StateLock(ctx.state_dir, "comfy-fixer error report"):
            ctx.status.add_error(error.info(), "the run could not finish")
            ctx.bus.emit(PhaseChanged("error"))
    except RunLocked:
        pass


def report_interrupted(ctx: RunContext, how: str) -> None:
    """A run this process was driving stopped before its end: status.json says so (phase error, an
    "interrupted" entry saying how to continue), never the phase it was in."""
    doc = ctx.status
    if doc.path is None or doc.doc.phase not in RUNNING_PHASES:
        return  # nothing of ours is running in status.json (a scan beside another run, or already final)
    entry = interrupted_error(how, doc.doc.phase)
    try:
        with StateLock(ctx.state_dir, "comfy-fixer interrupted"):
            doc.add_error(ErrorInfo("run_interrupted", entry["error"]), entry["details"])
            doc.set_counts({"current_download": None})
            doc.update(phase="error", force=True)
    except RunLocked:
        pass  # another run took the state dir in the moment since: status.json is its own


def main(argv: list[str] | None = None) -> int:
    """Run one command. Called without argv (the console script, `python -m fixer`) it is the process's entry:
    once the command has returned (its files written and closed, its threads joined) the process ends with
    the exit code at once, without the interpreter's teardown of every loaded module, which takes 50-120 ms
    after a download is done, the most with numpy loaded for the safetensors check (benchmarks/download_bench.py
    'end' phase). Only stdout, stderr and the log handlers still hold buffered output then: they are flushed.
    Under a profiler or tracer (cProfile, coverage) it returns, so they can write their results at exit.
    As the process's entry it also keeps numpy's OpenBLAS to one thread (unless the user set it): numpy is
    loaded only for the safetensors check, which multiplies no matrix, and at import OpenBLAS starts a worker
    per core that spins while idle -- ~3% of a many-file fix's CPU on a 2-core box, taken from the hash and
    the downloads (perf, benchmarks/many_files_bench.py)."""
    if argv is not None:
        return _run(list(argv))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
    terminated = False

    def on_term(_signum: int, _frame: object) -> None:
        # SIGTERM ends the run as Ctrl-C does (asyncio cancels the run, downloads keep their bytes), so
        # status.json says the run stopped instead of `downloading` forever.
        nonlocal terminated
        terminated = True
        signal.raise_signal(signal.SIGINT)

    previous_term = signal.signal(signal.SIGTERM, on_term)
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
        how = "SIGTERM" if terminated else "Ctrl-C"
        report_interrupted(ctx, how)
        print(f"\ninterrupted ({how}); run comfy-fixer --resume to continue", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if handler:
            close_run_log(handler)

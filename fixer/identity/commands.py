"""The CLI's identity subcommands, each run under the state dir's lock with the status.json every run writes:

    comfy-fixer hashes   --comfyui-root ROOT                       the hash index (progress in status.json)
    comfy-fixer dupes    --comfyui-root ROOT [--comfyui-root R2] [--fix]
    comfy-fixer lock     --comfyui-root ROOT --workflow W... -o models.lock.json [--identify]
    comfy-fixer sync     models.lock.json --comfyui-root ROOT [--cache-dir DIR]
    comfy-fixer identify --comfyui-root ROOT                       unknown files named by Civitai

Exit codes as the main CLI: 0 done, 1 something failed or is missing, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..actionlog import close_run_log, open_run_log
from ..config import Config, load_config, user_config_path
from ..errors import FixerError
from ..host.host import StandaloneHost
from ..models import to_jsonable
from ..state import StateLock, StatusDocument, write_json_atomic
from ..upstream.tokens import load_secrets
from .hash_index import BackgroundIndex, HashIndex, IndexedFile, index_path
from .shapes import SyncRow

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def human(n: int) -> str:
    from ..app.console import human_bytes

    return str(human_bytes(n))


def build_parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"comfy-fixer {command}")
    p.add_argument("--comfyui-root", metavar="DIR", action="append", default=[], required=True,
                   help="ComfyUI folder" + (" (repeatable: duplicates across installs)" if command == "dupes" else ""))
    p.add_argument("--state-dir", metavar="DIR", default=".", help="where status.json, the hash index and log/ go")
    p.add_argument("--config", metavar="FILE", help="config.json (default: the per-user one, as the main CLI)")
    p.add_argument("--extra-model-paths", metavar="YAML", action="append", default=[])
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    if command == "dupes":
        p.add_argument("--fix", action="store_true", help="keep one copy of each, hard-link (else symlink) the rest")
    if command == "lock":
        p.add_argument("--workflow", metavar="PATH", action="append", default=[], required=True)
        p.add_argument("-o", "--output", metavar="FILE", default="models.lock.json")
        p.add_argument("--identify", action="store_true", help="ask Civitai (by sha256) for files with no known link")
        p.add_argument("--cache-dir", metavar="DIR", help="also store each pinned file in this shared cache, so a "
                       "sync elsewhere links it instead of downloading (files without a link need this)")
    if command == "sync":
        p.add_argument("lockfile", help="a models.lock.json")
        p.add_argument("--cache-dir", metavar="DIR", help="a shared cache (NFS/SMB ok): files stored once by sha256")
        p.add_argument("--cache-wait", metavar="SECONDS", type=float, default=None,
                       help="give up on a file another machine keeps busy after this long (default: while it lives)")
    return p


class Run:
    """One identity command: its args, config, status.json and index."""

    def __init__(self, command: str, args: argparse.Namespace):
        self.command = command
        self.args = args
        self.state_dir = Path(args.state_dir).expanduser()
        self.config: Config = load_config(Path(args.config).expanduser() if args.config else user_config_path())
        self.status = StatusDocument(self.state_dir / "status.json")
        self.index = HashIndex(index_path(self.state_dir))
        self.roots = [Path(r).expanduser() for r in args.comfyui_root]
        for r in self.roots:
            if not r.is_dir():
                raise FixerError(f"--comfyui-root {r} is not a folder", code="config_invalid")

    def host(self, root: Path) -> StandaloneHost:
        return StandaloneHost.from_root(root, self.args.extra_model_paths)

    def index_root(self, root: Path) -> list[IndexedFile]:
        """The index over one root, its progress in status.json while it hashes."""
        bg = BackgroundIndex(self.index, self.host(root)).start()
        self.status.update(phase="verifying", force=True)
        while bg.running():
            p = bg.progress
            self.status.set_progress(p.bytes_done, p.bytes_total)
            bg.wait(0.5)
        if bg.progress.error:
            raise FixerError(f"hashing the model files of {root} failed: {bg.progress.error}", code="unexpected")
        return self.index.files()

    def out(self, data: Any, text: str) -> None:
        if self.args.json:
            json.dump(to_jsonable(data), sys.stdout, indent=2)
            print()
        else:
            print(text)


def cmd_hashes(run: Run) -> int:
    files = run.index_root(run.roots[0])
    total = sum(f.size for f in files)
    run.status.set_data({"files": len(files), "bytes": total}, force=True)
    run.out({"files": len(files), "bytes": total, "index": str(run.index.path)},
            f"{len(files)} model file(s), {human(total)}, hashed; index: {run.index.path}")
    return EXIT_OK


def cmd_dupes(run: Run) -> int:
    from .duplicates import deduplicate, find_duplicates

    pairs: list[tuple[str, IndexedFile]] = []
    for root in run.roots:
        pairs += [(str(root), f) for f in run.index_root(root)]
    report = find_duplicates(pairs)
    before = report.wasted_bytes
    if run.args.fix:
        report = deduplicate(report, run.index)
        run.index.save()
    run.status.set_data(to_jsonable(report), force=True)
    lines = [f"{len(report.groups)} group(s) of identical files among {report.files}; "
             f"{human(before)} wasted" + (f", {human(report.freed_bytes)} freed: {report.linked} hard link(s), "
                                          f"{report.symlinked} symlink(s)" if run.args.fix else "")]
    for g in report.groups[:50]:
        lines.append(f"  {human(g.size)} x{len(g.copies)}  sha256 {g.sha256[:12]}")
        lines += [f"    {'=' if c.same_file_as_first else ' '} {c.path}" for c in g.copies]
    lines += [f"  skipped: {s}" for s in report.skipped]
    if report.groups and not run.args.fix:
        lines.append("Fix: comfy-fixer dupes --fix (same roots): keeps the first copy, links the others to it")
    run.out(report, "\n".join(lines))
    return EXIT_FAILED if report.skipped else EXIT_OK


def cmd_lock(run: Run) -> int:
    from ..read.inventory import build_inventory
    from ..read.scan import scan_paths
    from ..transfer.records import DOWNLOADED_FILE, read_records
    from .lockfile import build_lockfile

    host = run.host(run.roots[0])
    run.status.update(phase="scanning", force=True)
    report = scan_paths(run.args.workflow, host, build_inventory(host))
    known: dict[str, list[str]] = {}
    for rec in read_records(run.state_dir / "output" / DOWNLOADED_FILE):
        if rec.get("state") == "done" and isinstance(rec.get("path"), str) and isinstance(rec.get("url"), str):
            known.setdefault(rec["path"], []).append(rec["url"])
    run.status.update(phase="verifying", force=True)
    links: dict[str, str] = {}
    if run.args.identify:
        from .identify import identify_files

        unknown = [IndexedFile(m.ref.folder or "", m.local.relpath, m.local.path, m.local.size, sha)
                   for m in report.models if m.local is not None and m.local.path not in known
                   and not any(h.url for h in m.ref.hints) and (sha := run.index.sha256(m.local.path))]
        _, links = asyncio.run(identify_files(unknown, load_secrets(), timeout=run.config.download.timeout_seconds))
    lock = build_lockfile(report.models, run.index, known, links)
    run.index.save()
    if run.args.cache_dir:
        from .cache import SharedCache

        cache = SharedCache(run.args.cache_dir)
        paths = {(m.ref.folder, m.ref.name): m.local.path for m in report.models if m.local is not None}

        async def store() -> None:
            for e in lock.models:
                await cache.store_local(paths[(e.folder, e.name)], e.sha256, e.size)

        asyncio.run(store())
    out = Path(run.args.output).expanduser()
    write_json_atomic(out, lock)
    run.status.set_data({"lockfile": str(out), "models": len(lock.models), "unresolved": len(lock.unresolved)},
                        force=True)
    no_url = [e for e in lock.models if not e.urls] if not run.args.cache_dir else []
    text = [f"{len(lock.models)} model(s) pinned in {out}"]
    text += [f"  not on disk (not pinned): {u}" for u in lock.unresolved]
    text += [f"  no download link known (sync can only link it): {e.folder}/{e.name}" for e in no_url]
    run.out(lock, "\n".join(text))
    return EXIT_FAILED if lock.unresolved else EXIT_OK


def cmd_sync(run: Run) -> int:
    from .cache import SharedCache
    from .lockfile import read_lockfile
    from .sync import SyncTarget, sync_lockfile

    dl = run.config.download
    parsed = read_lockfile(run.args.lockfile, dl.extra_allowed_hosts)
    for why in parsed.dropped_urls:
        print(f"note: URL dropped: {why}", file=sys.stderr)
    for refused in parsed.refused:
        print(f"  refused    {refused.label}: {refused.error.message}", file=sys.stderr)
    host = run.host(run.roots[0])
    run.index_root(run.roots[0])  # where bytes already are (a second run: one stat per file)
    cache = SharedCache(run.args.cache_dir) if run.args.cache_dir else None
    target = SyncTarget(folders=host.folders(), extensions=host.extensions, index=run.index, config=dl,
                        secrets=load_secrets(), cache=cache, cache_wait=run.args.cache_wait)
    run.status.update(phase="downloading", force=True)
    total = len(parsed.entries) + len(parsed.refused)
    run.status.set_progress(0, total)

    def on_row(row: SyncRow, done: int, of: int) -> None:
        run.status.set_progress(done, of)
        if not run.args.json:
            said = row.error.message if row.error else row.how
            print(f"  {row.state:<10} {row.folder}/{row.name}: {said}", flush=True)

    data = asyncio.run(sync_lockfile(parsed, target, on_row))
    run.status.set_data(to_jsonable(data), force=True)
    for row in data.rows:
        if row.error is not None:
            run.status.add_error(row.error, f"{row.folder}/{row.name}")
    run.status.update(phase="complete" if not data.failed else "error", force=True)
    run.out(data, f"{data.done} of {total} file(s) in place ({data.downloaded} downloaded, {data.linked} linked); "
                  f"{data.failed} failed")
    return EXIT_OK if not data.failed else EXIT_FAILED


def cmd_identify(run: Run) -> int:
    from .identify import has_sidecar, identify_files

    files = [f for f in run.index_root(run.roots[0]) if not has_sidecar(f.path)]
    found, _ = asyncio.run(identify_files(files, load_secrets(), timeout=run.config.download.timeout_seconds))
    run.status.set_data({"asked": len(files), "identified": len(found)}, force=True)
    run.out(found, "\n".join([f"{len(found)} of {len(files)} file(s) without a sidecar identified on Civitai"]
                             + [f"  {i.path}: {i.model_name} / {i.version_name}  {i.url}" for i in found]))
    return EXIT_OK


COMMANDS: dict[str, Callable[[Run], int]] = {"hashes": cmd_hashes, "dupes": cmd_dupes, "lock": cmd_lock,
                                             "sync": cmd_sync, "identify": cmd_identify}


def main(argv: list[str]) -> int:
    """`argv` starts with the subcommand's name (the main CLI hands it over as it came)."""
    command = argv[0]
    args = build_parser(command).parse_args(argv[1:])
    try:
        run = Run(command, args)
    except FixerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    handler = open_run_log(run.state_dir / "log", command)
    try:
        with StateLock(run.state_dir, f"comfy-fixer {command}"):
            try:
                code = COMMANDS[command](run)
                if run.status.doc.phase not in ("complete", "error"):
                    run.status.update(phase="complete", force=True)
                return code
            except FixerError as e:
                run.status.add_error(e.info())
                run.status.update(phase="error", force=True)
                raise
    except FixerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        close_run_log(handler)

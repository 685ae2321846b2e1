"""The CLI's download commands: `get URL --folder F`, `--download` (output/resolutions.json), `--resume`.

Each takes the CLI's run context (args, config, state_dir, root, bus, status, host(), secrets())
and returns an exit code; the live bars, status.json and the log are subscribers of the same events
the ComfyUI panel receives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from ..constants import MODEL_EXTENSIONS
from ..errors import ConfigError, FixerError, UnsafePath
from ..events import PhaseChanged, TransferDone, TransferProgress
from ..host.host import target_root
from ..models import Transfer, TransferRequest, to_jsonable
from ..read.names import safe_relpath
from .policy import auth_headers, check_redirect, check_start_url, strip_secret_query
from .progress import snapshot
from .protocol import REDIRECT_STATUS, open_session
from .queue import TransferManager
from .records import DOWNLOADED_FILE, read_records, request_from_record
from .settings import MAX_REDIRECTS

EXIT_OK, EXIT_FAILED = 0, 1
SKIPPED_SOURCES = frozenset({"local", "not_found", "embedded_local"})


def add_get_arguments(parser: argparse.ArgumentParser) -> None:
    """`comfy-fixer get URL --folder FOLDER [--name FILE] [--sha256 HEX]` on top of the common options."""
    parser.add_argument("url", help="an https link on an allowed host (Hugging Face, Civitai, or added in config)")
    parser.add_argument("--folder", required=True, help="ComfyUI model folder key: checkpoints, loras, vae, ...")
    parser.add_argument("--name", help="file name inside the folder, may hold a subfolder (default: from the link)")
    parser.add_argument("--sha256", help="expected sha256; the file is kept only if it matches")


async def suggest_filename(url: str, secrets: dict[str, str], extra_hosts: list[str], timeout: float) -> str:
    """The name the server gives a link: its path when it ends in a model file, else Content-Disposition."""
    url = strip_secret_query(url)
    check_start_url(url, extra_hosts)
    own = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if os.path.splitext(own.lower())[1] in MODEL_EXTENSIONS:
        return own
    start = url
    async with open_session(extra_hosts, timeout) as session:
        for _ in range(MAX_REDIRECTS):
            headers = {"Range": "bytes=0-0", **auth_headers(url, secrets, start)}
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                found = _disposition_name(resp.headers.get("Content-Disposition", ""))
                if found:
                    return found
                if resp.status in REDIRECT_STATUS and "Location" in resp.headers:
                    nxt = urljoin(url, resp.headers["Location"])
                    check_redirect(url, nxt, extra_hosts)
                    from_query = _disposition_name(unquote(urlsplit(nxt).query))
                    if from_query:
                        return from_query
                    url = nxt
                    continue
                break
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name:
        raise FixerError(f"Cannot tell the file name of {start}; pass --name FILE")
    return name


def _disposition_name(value: str) -> str | None:
    m = re.search(r"filename\*\s*=\s*UTF-8''([^;&]+)", value, re.I) or re.search(r'filename\s*=\s*"([^"]+)"', value)
    return os.path.basename(unquote(m.group(1)).strip()) if m else None


def _dest_root(ctx: Any, folder: str, name: str | None = None) -> str:
    host = ctx.host()
    return target_root(host.folders(), folder, name=name, extensions=host.extensions)


async def _run(ctx: Any, reqs: list[TransferRequest]) -> list[Transfer]:
    from ..app.console import ConsoleProgress

    out_dir = ctx.state_dir / "output"
    mgr = TransferManager(ctx.config.download, ctx.secrets(), ctx.bus, out_dir)
    transfers: list[Transfer] = []

    def on_event(event: object) -> None:
        if isinstance(event, (TransferProgress, TransferDone)):
            ctx.status.set_data(snapshot(transfers), force=isinstance(event, TransferDone))

    unsubscribe = [ctx.bus.subscribe(on_event)]
    if not getattr(ctx.args, "json", False):
        unsubscribe.append(ctx.bus.subscribe(ConsoleProgress()))
    ctx.bus.emit(PhaseChanged("downloading", total=len(reqs)))
    try:
        for req in reqs:
            try:
                root = _dest_root(ctx, req.folder, req.filename)
            except UnsafePath as e:  # a folder that is not a model folder fails its own file, not the run
                transfers.append(Transfer(request=req, target=req.filename, part="", state="failed", error=e.info()))
                continue
            transfers.append(await mgr.submit(req, root))
        await mgr.wait()
    finally:
        for fn in unsubscribe:
            fn()
    ctx.status.set_data(snapshot(transfers), force=True)
    ctx.bus.emit(PhaseChanged("complete" if all(t.state == "done" for t in transfers) else "error"))
    return transfers


def _report(ctx: Any, transfers: list[Transfer]) -> int:
    if getattr(ctx.args, "json", False):
        print(json.dumps(to_jsonable(snapshot(transfers)), indent=2))
    else:
        for t in transfers:
            name = t.request.model_name or t.request.filename
            if t.state == "done":
                print(f"done    {t.target} ({t.total} bytes, sha256 {t.sha256})")
            else:
                print(f"{t.state:<7} {name}: {t.error.message if t.error else t.state}")
            if t.warning:
                print(f"        warning: {t.warning}")
        if transfers and ctx.state_dir:
            print(f"Details: {ctx.state_dir / 'output' / DOWNLOADED_FILE}")
    return EXIT_OK if transfers and all(t.state == "done" for t in transfers) else EXIT_FAILED


def request_for_link(url: str, folder: str, name: str | None, sha256: str | None, secrets: dict[str, str],
                     extra_hosts: list[str], timeout: float) -> TransferRequest:
    """What `get` downloads: Hugging Face and Civitai links in any form source_spec knows (file and blob
    links, model pages; Civitai's published sha256 becomes the expected hash), other allowed hosts as given."""
    from ..upstream.civitai import fetch_civitai_version
    from ..upstream.source_spec import parse_source, transfer_request

    try:
        spec = parse_source(url)
    except ConfigError:
        spec = None  # a host the user allowed in config: take the link as it is
    if spec is not None:
        version = None
        if spec.source == "civitai":
            version = fetch_civitai_version(spec, secrets.get("CIVITAI_API_KEY"), timeout)
        return transfer_request(spec, folder, name or "", sha256 or "", version)
    name = name or asyncio.run(suggest_filename(url, secrets, extra_hosts, timeout))
    return TransferRequest(url=url, folder=folder, filename=safe_relpath(name),
                           sha256=(sha256 or "").lower() or None, model_name=name)


def cmd_get(ctx: Any) -> int:
    from ..state import StateLock

    args = ctx.args
    with StateLock(ctx.state_dir, "comfy-fixer get"):
        _dest_root(ctx, args.folder)  # a folder that is not a model folder is a usage error, before any lookup
        dl = ctx.config.download
        req = request_for_link(args.url, args.folder, args.name, args.sha256, ctx.secrets(), dl.extra_allowed_hosts,
                               dl.timeout_seconds)
        transfers = asyncio.run(_run(ctx, [req]))
    return _report(ctx, transfers)


def requests_from_resolutions(entries: list[dict[str, Any]]) -> list[TransferRequest]:
    """Downloadable entries of output/resolutions.json (chosen source with a URL and a folder)."""
    out = []
    for e in entries:
        if e.get("source") in SKIPPED_SOURCES or not e.get("download_url") or not e.get("expected_type"):
            continue
        out.append(TransferRequest(url=e["download_url"], folder=e["expected_type"], filename=e["filename"],
                                   expected_size=e.get("size"), sha256=e.get("sha256"), source=e.get("source") or "",
                                   model_name=e["filename"]))
    return out


def cmd_download(ctx: Any) -> int:
    from ..state import StateLock

    path = ctx.state_dir / "output" / "resolutions.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FixerError(f"Cannot read {path}: {e}. Run comfy-fixer --auto (or the resolver) first.") from None
    reqs = requests_from_resolutions(entries if isinstance(entries, list) else [])
    if not reqs:
        print(f"Nothing to download in {path}.")
        return EXIT_OK
    with StateLock(ctx.state_dir, "comfy-fixer --download"):
        transfers = asyncio.run(_run(ctx, reqs))
    return _report(ctx, transfers)


def cmd_resume(ctx: Any) -> int:
    """Start again every recorded download that did not finish; `.part` files continue where they stopped."""
    from ..state import StateLock

    records = read_records(ctx.state_dir / "output" / DOWNLOADED_FILE)
    todo = [e for e in records if e.get("state") != "done" and e.get("url") and e.get("filename")
            and not (e.get("path") and Path(e["path"]).exists())]
    if not todo:
        print("Nothing to resume: every recorded download finished.", file=sys.stderr)
        return EXIT_OK
    with StateLock(ctx.state_dir, "comfy-fixer --resume"):
        # The record's own dest_root is never used: the records file is as untrusted as any input.
        transfers = asyncio.run(_run(ctx, [request_from_record(e) for e in todo]))
    return _report(ctx, transfers)

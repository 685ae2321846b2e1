"""The CLI's download commands: `get URL --folder F`, `--download` (output/resolutions.json), `--resume`.

Each takes the CLI's run context (args, config, state_dir, root, bus, status, host(), secrets())
and returns an exit code; the live bars, status.json and the log are subscribers of the same events
the ComfyUI panel receives.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from ..constants import MODEL_EXTENSIONS
from ..errors import ConfigError, ErrorInfo, FixerError, UnsafePath
from ..events import PhaseChanged, TransferDone, TransferProgress
from ..host.host import target_root
from ..models import Transfer, TransferRequest, to_jsonable
from ..read.names import confine, safe_relpath
from ..shapes import FINAL_STATES
from ..state import read_json
from .failures import failure_event
from .policy import auth_headers, check_redirect, check_start_url, strip_secret_query
from .progress import snapshot
from .protocol import REDIRECT_STATUS, open_session
from .queue import TransferManager
from .records import DOWNLOADED_FILE, read_records
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


def in_place(target: str, req: TransferRequest, record: dict[str, Any] | None) -> tuple[bool, str]:
    """Is the file this request would fetch already at its target? (yes, how it was checked) when its size and
    sha256 match what is expected (the request's, else this target's finished download record); (no, why)
    when a different file holds the name."""
    size = os.path.getsize(target)
    want_size = req.expected_size if req.expected_size is not None else (record or {}).get("size")
    want_sha = (req.sha256 or (record or {}).get("sha256") or "").lower() or None
    if isinstance(want_size, int) and size != want_size:
        return False, f"it holds {size} bytes, not the {want_size} expected"
    if want_sha:
        digest = hashlib.sha256()
        with open(target, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        actual = digest.hexdigest()
        if actual != want_sha:
            return False, f"its sha256 is {actual}, not the {want_sha} expected"
        return True, "right size and sha256"
    return True, "right size (no sha256 known to compare)" if isinstance(want_size, int) else \
        "already there (no size or sha256 known to compare)"


async def _run(ctx: Any, reqs: list[TransferRequest]) -> list[Transfer]:
    from ..app.console import ConsoleProgress

    out_dir = ctx.state_dir / "output"
    mgr = TransferManager(ctx.config.download, ctx.secrets(), ctx.bus, out_dir)
    transfers: list[Transfer] = []
    records = {e.get("path"): e for e in read_records(out_dir / DOWNLOADED_FILE) if e.get("state") == "done"}
    quiet = getattr(ctx.args, "json", False)

    def on_event(event: object) -> None:
        if isinstance(event, (TransferProgress, TransferDone)):
            publish(ctx, transfers, len(reqs), isinstance(event, TransferDone))

    unsubscribe = [ctx.bus.subscribe(on_event)]
    if not quiet:
        unsubscribe.append(ctx.bus.subscribe(ConsoleProgress(report_done=False)))
    ctx.bus.emit(PhaseChanged("downloading", total=len(reqs)))
    try:
        for req in reqs:
            try:
                root = _dest_root(ctx, req.folder, req.filename)
                target = str(confine(root, req.filename))
            except UnsafePath as e:  # a folder that is not a model folder fails its own file, not the run
                t = Transfer(request=req, target=req.filename, part="", state="failed", error=e.info())
                transfers.append(t)
                ctx.bus.emit(TransferDone(t))
                ctx.bus.emit(failure_event(t))
                continue
            if os.path.isfile(target):
                # The guide's recovery step is to run --download again: a file already in place is done.
                ok, how = await asyncio.to_thread(in_place, target, req, records.get(target))
                size = os.path.getsize(target)
                differs = ErrorInfo("already_exists", f"{req.model_name or req.filename}: {target} already exists "
                                    f"but {how}; it was not overwritten. Move it away to download again")
                t = Transfer(request=req, target=target, part="", state="done" if ok else "failed",
                             bytes_done=size, total=size, error=None if ok else differs,
                             sha256=(req.sha256 or (records.get(target) or {}).get("sha256")) if ok else None)
                transfers.append(t)
                if ok and not quiet:
                    print(f"in place  {req.folder}/{req.filename}: {how}; not downloaded again", file=sys.stderr)
                ctx.bus.emit(TransferDone(t))
                if not ok:
                    ctx.bus.emit(failure_event(t))
                continue
            transfers.append(await mgr.submit(req, root))
        await mgr.wait()
    finally:
        for fn in unsubscribe:
            fn()
    publish(ctx, transfers, len(reqs), True)
    # The command got to its end: complete, failures counted (phase error is for a run that could not finish).
    ctx.bus.emit(PhaseChanged("complete"))
    return transfers


def publish(ctx: Any, transfers: list[Transfer], total: int, force: bool) -> None:
    """status.json for the download commands: the guide's progress (files ended of the command's `total`),
    its counters, and the files as data."""
    current = next((t.request.model_name or t.request.filename for t in transfers if t.state == "downloading"), None)
    ctx.status.set_progress(sum(t.state in FINAL_STATES for t in transfers), total)
    ctx.status.set_counts({"downloads_successful": sum(t.state == "done" for t in transfers),
                           "downloads_failed": sum(t.state == "failed" for t in transfers),
                           "current_download": current})
    ctx.status.set_data(snapshot(transfers), force=force)


def _report(ctx: Any, transfers: list[Transfer]) -> int:
    from ..app.console import done_line

    """The end of a download command: JSON, or one closing line (each file was printed once as it ended)."""
    if getattr(ctx.args, "json", False):
        print(json.dumps({"status": ctx.status.snapshot(), **to_jsonable(snapshot(transfers))}, indent=2))
    else:
        for t in transfers:
            if t.state != "done" or t.part:  # a file found in place was said so when it was checked
                print(done_line(t))
            if t.warning:
                print(f"          warning: {t.warning}")
        done = sum(t.state == "done" for t in transfers)
        print(f"{done} of {len(transfers)} file(s) in place" + (f", {len(transfers) - done} failed" if
                                                                  done < len(transfers) else "")
              + (f". Details: {ctx.state_dir / 'output' / DOWNLOADED_FILE}" if transfers and ctx.state_dir else ""))
    return EXIT_OK if transfers and all(t.state == "done" for t in transfers) else EXIT_FAILED


def download_requests(ctx: Any, reqs: list[TransferRequest]) -> bool:
    """Download these (the lock held by the caller); True when every one ended in place."""
    transfers = asyncio.run(_run(ctx, reqs))
    return _report(ctx, transfers) == EXIT_OK


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
        say = f"Nothing to download in {path}: no entry has a chosen source with a download link."
        print(json.dumps({"message": say, "files": []}) if getattr(ctx.args, "json", False) else say)
        return EXIT_OK
    with StateLock(ctx.state_dir, "comfy-fixer --download"):
        # The scan and the search are not repeated: their counts stay those of the run that wrote them.
        ctx.status.carry_over(read_json(ctx.state_dir / "status.json"),
                              ("workflows_scanned", "missing_models", "civitai_matches", "huggingface_matches"))
        transfers = asyncio.run(_run(ctx, reqs))
    return _report(ctx, transfers)

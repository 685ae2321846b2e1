"""The fix run: resolve -> download -> verify, incremental, one failure never stopping the rest.

One `FixRun` per run. It owns the per-model rows the status document and the panel show, and it
is the only stateful object; the stages it drives are the resolver and the transfer manager.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from ..actionlog import action
from ..config import Config
from ..constants import hf_endpoint, is_pickle
from ..errors import ErrorInfo, FixerError, TokenName, UnsafePath, error_info
from ..events import (
    ErrorRaised,
    Event,
    EventBus,
    ModelResolved,
    PhaseChanged,
    Progress,
    ResolutionChanged,
    RunFinished,
    TransferDone,
    TransferProgress,
)
from ..host.host import target_root
from ..identity.hash_index import HashIndex, index_path
from ..models import Candidate, ModelRef, Resolution, Transfer, TransferRequest, to_jsonable
from ..read.inventory import Inventory
from ..read.names import confine
from ..shapes import FINAL_STATES, Overall, Row, RunData, RunSummary
from ..transfer.progress import eta_seconds
from ..transfer.queue import TransferManager
from ..upstream.source_spec import parse_hf_url
from .resolve import (
    ResolveContext,
    Resolver,
    bytes_source,
    candidate_entry,
    unresolved_event,
)

log = logging.getLogger(__name__)
# A failed download tries the next source, unless no other source can help (the disk, the user).
NO_FALL_THROUGH = frozenset({"disk_full", "unsafe_name", "unsafe_folder", "run_locked", "target_busy",
                             "already_exists"})


def hf_repo_page(url: str | None) -> str | None:
    """The repository page of a Hugging Face file URL (where a gated repo's license is accepted), or None."""
    hf = parse_hf_url(url or "", hf_endpoint())
    if hf is None:
        return None
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}/{hf[0]}"


def place_local_copy(src: str, dest_root: str, name: str) -> str:
    """Hard-link a file the user already has into place (copy across file systems); never moves theirs."""
    dest = confine(dest_root, name)
    if dest.exists():
        return str(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return str(dest)


class FixRun:
    def __init__(self, refs: list[ModelRef], *, config: Config, secrets: dict[str, str], bus: EventBus,
                 folders: dict[str, list[str]], inventory: Inventory | None,
                 state_dir: Path | None, comfyui_root: Path | None = None, workflow: str = "",
                 chosen: dict[str, Candidate] | None = None, review: bool = False,
                 save_as: dict[str, str] | None = None, families: dict[str, str] | None = None,
                 extensions: Callable[[str], frozenset[str]] | None = None,
                 recorded: dict[str, Resolution] | None = None):
        self.run_id = uuid.uuid4().hex[:12]
        self.refs = refs
        self.config = config
        self.secrets = secrets
        self.bus = bus
        self.folders = folders
        self.extensions = extensions  # Host.extensions: the file types each folder lists
        self.inventory = inventory
        self.state_dir = state_dir
        self.comfyui_root = comfyui_root
        self.workflow = workflow
        self.rows: dict[str, Row] = {r.name: Row(r.name, r.folder) for r in refs}
        # The sha256 each workflow states: the only bytes ever accepted for that model, whatever brings them.
        self.stated_sha256 = {r.name: sha for r in refs if (sha := r.stated_sha256)}
        self._index: HashIndex | None = None  # hashes local copies no source vouched for (made when needed)
        self.chosen = dict(chosen or {})  # sources the user picked: downloaded without searching again
        self.recorded = dict(recorded or {})  # what an earlier run chose (--resume): taken as it was
        # A link the user pasted keeps its file's real name (a .safetensors is never saved as .pth);
        # the panel repoints the widget to it.
        self.save_as = dict(save_as or {})
        self.families = families  # workflow -> model family from the whole scan (sources.family.workflow_families)
        self.resolutions: dict[str, Resolution] = {}
        self.result: RunData | None = None  # the run's end state, once it finished
        self.transfers: dict[str, Transfer] = {}
        self.started = time.time()
        self.manager: TransferManager | None = None  # made when the run starts
        self._cancelled = False
        # Review before download: resolved files wait in state "review" until approve() (the panel's
        # "Download 6 models, 41.2 GB" click); nothing is fetched before.
        self.review = review
        self._held: list[tuple[Row, Candidate, str, str]] = []
        self._approved = asyncio.Event()
        self._failed_urls: dict[str, set[str]] = {}  # per model, the links that failed at download time
        self._fall_through: list[str] = []  # models whose download failed, waiting for their next source
        self._unsubscribe = bus.subscribe(self._on_event)

    # --- state the panel reads ------------------------------------------------------------
    def snapshot(self) -> RunData:
        """The run as status.json's `data` and the panel show it."""
        active = [r for r in self.rows.values() if r.total]
        done = sum(r.bytes_done for r in active)
        total = sum(r.total or 0 for r in active)
        speed = sum(r.speed for r in self.rows.values() if r.state == "downloading")
        summary = self._summary() if all(r.state in FINAL_STATES for r in self.rows.values()) else None
        return RunData(run_id=self.run_id, workflow=self.workflow, models=[replace(r) for r in self.rows.values()],
                       overall=Overall(done, total, speed, eta_seconds(done, total, speed)), summary=summary)

    def data(self) -> dict[str, Any]:
        return to_jsonable(self.snapshot())

    def seed_counts(self) -> dict[str, Any]:
        """The agent guide's counters, true per model: matches by where the bytes come from, downloads by how
        each model ended (a copy linked from this computer is not a download; a failed source that fell
        through to one that worked is a success)."""
        origins = [bytes_source(r.chosen) for r in self.resolutions.values()]
        downloaded = [r for r in self.rows.values() if r.origin not in (None, "local")]
        current = next((r.name for r in self.rows.values() if r.state == "downloading"), None)
        return {"civitai_matches": origins.count("civitai"), "huggingface_matches": origins.count("huggingface"),
                "downloads_successful": sum(1 for r in downloaded if r.state == "done"),
                # A download refused for want of a token waits for it (the panel's "skipped"), yet it failed.
                "downloads_failed": sum(1 for r in downloaded if r.state == "failed"
                                        or (r.state == "skipped" and r.error is not None)),
                "current_download": current,
                "local_matches": origins.count("local"), "not_found": origins.count("not_found"),
                "downloads_waiting_for_token": sum(1 for r in downloaded if r.state == "skipped" and r.error),
                "downloads_cancelled": sum(1 for r in downloaded if r.state == "cancelled")}

    def _summary(self) -> RunSummary:
        """How many models ended in each final state."""
        return RunSummary(**{s: sum(1 for r in self.rows.values() if r.state == s) for s in FINAL_STATES})

    def _progress(self) -> None:
        finished = sum(1 for r in self.rows.values() if r.state in FINAL_STATES)
        self.bus.emit(Progress(finished, len(self.rows)))

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (TransferProgress, TransferDone)):
            t: Transfer = event.transfer
            row = self.rows.get(t.request.model_name)
            if row is None:
                return
            row.bytes_done, row.total, row.speed = t.bytes_done, t.total, t.speed
            row.eta = eta_seconds(t.bytes_done, t.total, t.speed)
            row.state = t.state if t.state != "queued" else "resolved"
            if t.state == "done":
                row.path, row.sha256, row.speed, row.eta = t.target, t.sha256 or row.sha256, 0.0, None
            if t.state in ("failed", "cancelled"):
                row.error = t.error
                row.speed, row.eta = 0.0, None
            if t.state == "failed" and row.needs_token and t.error is not None and t.error.code == "login_required":
                row.state = "skipped"  # waits for the token the review said it needs: not a failure
            if isinstance(event, TransferDone) and row.state == "failed" and not self._cancelled \
                    and (t.error.code if t.error else "") not in NO_FALL_THROUGH:
                self._failed_urls.setdefault(row.name, set()).add(t.request.url)
                self._fall_through.append(row.name)
            if isinstance(event, TransferDone):
                self._progress()

    # --- the run ------------------------------------------------------------------------------
    def _out_dir(self) -> Path | None:
        return self.state_dir / "output" if self.state_dir else None

    def _new_manager(self) -> TransferManager:
        self.manager = TransferManager(self.config.download, self.secrets, self.bus, self._out_dir())
        return self.manager

    def _manager(self) -> TransferManager:
        """The run's download queue (made by run(); a row chosen before it starts gets one too)."""
        return self.manager if self.manager is not None else self._new_manager()

    async def run(self) -> dict[str, Any]:
        manager = self._new_manager()
        try:
            return await self._run()
        except asyncio.CancelledError:
            # Ctrl-C / SIGTERM: every download stops keeping its bytes, and the connections close before
            # the loop does (no "Unclosed connector" on the way out).
            self.cancel()
            await asyncio.shield((self.manager or manager).wait())
            raise

    async def _run(self) -> dict[str, Any]:
        self.bus.emit(PhaseChanged("resolving", total=len(self.refs)))
        ctx = ResolveContext(config=self.config.search, secrets=self.secrets, inventory=self.inventory,
                             state_dir=self.state_dir, comfyui_root=self.comfyui_root,
                             catalogs=self.config.search.use_catalogs, families=self.families)
        for row in self.rows.values():
            row.state = "resolving"
        for ref in self.refs:
            if ref.name in self.chosen:
                await self._handle(Resolution(ref.name, ref.folder, self.chosen[ref.name], tried=["chosen by you"]))
            elif ref.name in self.recorded:
                await self._handle(self.recorded[ref.name])
        try:
            todo = [r for r in self.refs if r.name not in self.chosen and r.name not in self.recorded]
            async for res in Resolver(ctx).resolve(todo):
                if self._cancelled:
                    break
                await self._handle(res)
        except Exception as e:  # a resolver crash must not lose the downloads already running
            log.exception("resolver failed")
            self.bus.emit(ErrorRaised(ErrorInfo("search_failed", f"Searching for sources failed: {e}"), repr(e)))
            for row in self.rows.values():
                if row.state == "resolving":
                    row.state, row.error = "failed", ErrorInfo("search_failed", f"search failed: {e}")
        if self._held and not self._cancelled:
            self.bus.emit(PhaseChanged("review"))
            await self._approved.wait()
            if not self.transfers:  # nothing fetched yet: the downloads use the settings as approved
                self._new_manager()
            for row, c, folder, name in self._held:
                if row.state == "review":
                    await self._start_or_fail(row, c, folder, name)
        self.bus.emit(PhaseChanged("downloading"))
        await self._manager().wait()
        while self._fall_through and not self._cancelled:
            names, self._fall_through = self._fall_through, []
            for name in dict.fromkeys(names):
                await self._next_source(name)
            await self._manager().wait()
        return self._finish()

    def use_settings(self, config: Config, secrets: dict[str, str]) -> None:
        """Settings and tokens as they are now (changed during the review): used by what starts after it."""
        self.config, self.secrets = config, dict(secrets)

    async def _next_source(self, name: str) -> None:
        """A source failed at download time: the next candidate sure enough to take, else the sources the
        first pick made unnecessary (a catalog's dead link: Civitai and Hugging Face were never asked)."""
        res, row = self.resolutions.get(name), self.rows[name]
        if res is None or res.chosen is None or row.state != "failed":
            return
        failed = self._failed_urls.get(name, set())
        threshold = self.config.search.fuzzy_threshold

        def usable(cands: list[Candidate]) -> list[Candidate]:
            return [c for c in cands if c.url and c.url not in failed and c.source != "local"
                    and c.confidence >= threshold and (c.folder or row.folder)]

        pool = usable(res.candidates)
        if not pool:
            ref = next((r for r in self.refs if r.name == name), None)
            ctx = ResolveContext(config=self.config.search, secrets=self.secrets, inventory=None,
                                 state_dir=self.state_dir, comfyui_root=self.comfyui_root, catalogs=False,
                                 families=self.families)
            async for again in Resolver(ctx).resolve([ref] if ref else []):
                pool = usable(([again.chosen] if again.chosen else []) + again.candidates)
        if not pool:
            action("fall_through_none", name=name, failed=sorted(failed))
            return
        nxt, old = pool[0], res.chosen
        res.candidates = [old] + [c for c in res.candidates if c is not nxt]
        res.chosen = nxt
        why = row.error.message if row.error else "failed"
        res.tried.append(f"{old.source} link failed at download time ({why}); next: {nxt.source} {nxt.url}")
        res.why = f"The first source ({old.source}) failed at download time; then: {nxt.reason}."
        action("fall_through", name=name, failed=old.url, next=nxt.url, source=nxt.source)
        row.error, row.bytes_done, row.total = None, 0, None
        row.source, row.origin, row.url, row.reason, row.confidence = (nxt.source, bytes_source(nxt), nxt.url,
                                                                      nxt.reason, nxt.confidence)
        row.size, row.sha256 = nxt.size, nxt.sha256
        self.bus.emit(ResolutionChanged(res))
        await self._start_or_fail(row, nxt, nxt.folder or row.folder or "", name)

    def approve(self, names: set[str] | None = None) -> None:
        """Start the reviewed downloads (all, or only `names`; the others are skipped)."""
        for row, _c, _folder, name in self._held:
            if row.state == "review" and names is not None and name not in names:
                row.state = "skipped"
        self._approved.set()

    async def _handle(self, res: Resolution) -> None:
        self.resolutions[res.name] = res
        self.bus.emit(ModelResolved(res))  # output/resolutions.json follows it (outputs.ResolutionsFile)
        row = self.rows[res.name]
        row.candidates = [candidate_entry(c) for c in res.candidates[:5]]
        c = res.chosen
        if c is None:
            row.state = "needs_choice" if res.candidates else "not_found"
            row.reason = res.why or "no match is sure enough to download automatically: pick one of the candidates"
            row.tried = list(res.tried)
            action("unresolved", name=res.name, folder=res.folder, tried=res.tried,
                   candidates=len(res.candidates))
            self.bus.emit(unresolved_event(res))
            self._progress()
            return
        row.source, row.origin, row.url = c.source, bytes_source(c), c.url
        row.reason, row.confidence = c.reason, c.confidence
        row.size, row.sha256 = c.size, c.sha256
        folder = c.folder or res.folder
        row.folder = folder
        if is_pickle(c.filename or res.name):
            row.warnings.append("pickle format (.ckpt/.pt/.pth/.bin) can run code when loaded; prefer .safetensors")
        if c.gated or c.needs_token:
            token: TokenName = c.needs_token or "HF_TOKEN"
            if not self.secrets.get(token):
                row.warnings.append(f"needs {token}" + (f" and the license accepted at {c.url}" if c.gated else ""))
                row.needs_token = token
                row.license_url = hf_repo_page(c.url) if c.gated else None
        if not folder:
            row.state, row.error = "needs_choice", ErrorInfo("folder_unknown", "the folder for this file is unknown: "
                                                             "choose one")
            self.bus.emit(ErrorRaised(ErrorInfo("folder_unknown", f"Model folder not known: {res.name}: choose the "
                                                "folder it belongs in", folder=None), c.reason))
            self._progress()
            return
        if self.review:
            row.state = "review"
            self._held.append((row, c, folder, res.name))
            return
        await self._start_or_fail(row, c, folder, res.name)
        # Its first steps (its script and record, a download slot) while the next resolution waits: when the
        # searches end together the resolutions come back to back, and the downloads would start only after all.
        await asyncio.sleep(0)

    async def _start_or_fail(self, row: Row, c: Candidate, folder: str, name: str) -> None:
        try:
            await self.start(row, c, folder, name)
        except FixerError as e:
            row.state, row.error = "failed", e.info()
            self.bus.emit(ErrorRaised(error_info(e, f"Download failed: {name}"), str(e)))
            if e.code == "sha256_mismatch" and not self._cancelled:  # other bytes: the next source may have them
                self._failed_urls.setdefault(name, set()).add(c.url or "")
                self._fall_through.append(name)
            self._progress()

    async def _refuse_other_bytes(self, c: Candidate, name: str) -> None:
        """Raise (sha256_mismatch, both hashes said) when `c` is known -- or, for a local copy no source
        vouched for, now found -- to hold other bytes than the sha256 the workflow states for `name`."""
        want = self.stated_sha256.get(name)
        if want is None:
            return
        have = (c.sha256 or "").lower() or None
        if have is None and c.local_path and not c.url:
            if self._index is None:
                self._index = HashIndex(index_path(self.state_dir) if self.state_dir else None)
            have = await asyncio.to_thread(self._index.sha256, c.local_path)
            if have is None:
                raise FixerError(f"{name}: cannot read {c.local_path} to check it holds the sha256 the workflow "
                                 "states", code="file_missing")
        if have is None or have == want:
            return
        action("candidate_refused", model=name, url=c.url, local_path=c.local_path, source=c.source,
               reason="sha256_differs", sha256=have, workflow_sha256=want)
        raise FixerError(f"{name}: {c.local_path or c.url or c.filename} holds other bytes than the workflow states "
                         f"(sha256 {have}, expected {want}); not taken", code="sha256_mismatch")

    async def start(self, row: Row, c: Candidate, folder: str, name: str) -> None:
        # A file already on this disk: the local source's, or a near name's the fuzzy matcher scored.
        on_disk = c.local_path if c.local_path and (c.source == "local" or not c.url) else None
        saved_as = name if on_disk else self.save_as.get(name, name)
        dest_root = target_root(self.folders, folder, name=saved_as, extensions=self.extensions)
        await self._refuse_other_bytes(c, name)
        want = self.stated_sha256.get(name)
        if on_disk:
            row.path = await asyncio.to_thread(place_local_copy, on_disk, dest_root, name)
            row.state = "done"
            action("linked", name=name, folder=folder, src=c.local_path, dest=row.path)
            self._progress()
            return
        if not c.url:
            raise UnsafePath(name, "the chosen source has no download address")
        # Verified against the workflow's sha256 when it states one, else the source's.
        req = TransferRequest(url=c.url, folder=folder, filename=saved_as, expected_size=c.size,
                              sha256=want or c.sha256, source=bytes_source(c), model_name=name)
        row.state = "resolved"
        self.transfers[name] = await self._manager().submit(req, dest_root)

    def cancel(self, name: str | None = None) -> None:
        if name is None:
            self._cancelled = True
            self._approved.set()
        elif name in self.rows and self.rows[name].state == "review":
            self.rows[name].state = "cancelled"
        if self.manager is None:
            return
        if name is None:
            self.manager.cancel()
            for row in self.rows.values():
                if row.state not in FINAL_STATES:
                    row.state = "cancelled"
        elif name in self.transfers:
            self.manager.cancel(self.transfers[name].target)

    async def choose(self, name: str, candidate: Candidate) -> None:
        """The user picked a candidate (or retries): download it within this run's manager."""
        row = self.rows[name]
        row.error, row.state = None, "resolved"
        folder = candidate.folder or row.folder
        if not folder:
            raise FixerError(f"{name}: choose the folder it belongs in", code="folder_unknown")
        row.folder = folder
        await self.start(row, candidate, folder, name)
        await self._manager().wait()

    def _finish(self) -> dict[str, Any]:
        self._unsubscribe()
        data = self.snapshot()
        data.summary = summary = replace(self._summary(), seconds=round(time.time() - self.started, 2))
        self.result = data
        self.bus.emit(RunFinished(summary))
        # The run got to its end: `complete`, its failures counted in data and listed in errors[] (the guide's
        # agent then reads the results); `error` is for a run that could not finish.
        self.bus.emit(PhaseChanged("complete"))
        return to_jsonable(data)

"""The engine as ComfyUI's server side sees it: scan a posted workflow, run fixes, report status.

Thin adapters (server_routes.py) call this; it knows nothing about aiohttp or ComfyUI. Settings
the page changes persist in the state directory; tokens are kept there with owner-only
permissions and never returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..actionlog import action, keep_actions_in
from ..config import Config
from ..errors import ErrorCode, FixerError, UnsafePath, error_info
from ..events import ErrorRaised, Event, EventBus, PhaseChanged, RunFinished, ScanFinished, TransferDone
from ..host.host import Host, model_folders, target_root
from ..identity.panel import IdentityPanel
from ..models import Candidate, Resolution, to_jsonable
from ..shapes import DoneEvent, DoneFile, Row, RunData, RunSummary
from ..sources.family import report_families
from ..sources.local import LocalSource
from ..state import StateLock, StatusDocument, read_json, settled_status, write_json_atomic
from ..throttle import WriteThrottle
from ..transfer.resume import discard
from ..upstream.tokens import SecretStore, load_secrets
from . import settings as settings_schema
from .application import OFFERED_PACKS_FILE, Application, models_to_fetch
from .portable import public_url
from .review import destination
from .run import FixRun, place_local_copy

log = logging.getLogger(__name__)
Listener = Callable[[str, dict[str, Any]], None]
SEND_INTERVAL = 0.25  # at most ~4 status events a second to the page
SENT_AT_ONCE = (PhaseChanged, TransferDone, RunFinished)  # and these at once

class RunBusy(FixerError):
    default_code: ClassVar[ErrorCode] = "run_busy"

    def __init__(self, workflow: str = "") -> None:
        self.workflow = workflow
        what = f"A fix for {workflow}" if workflow else "A fix"
        super().__init__(f"{what} is already running: wait for it to finish or cancel it first.")


class PackNotOffered(FixerError):
    """install_pack asked for a pack id the last scan did not offer as installable."""

    default_code: ClassVar[ErrorCode] = "pack_not_offered"

    def __init__(self, pack_id: str) -> None:
        self.pack_id = pack_id
        super().__init__(f"{pack_id!r} is not a pack the last scan offered to install (only packs ComfyUI-Manager's "
                         "map lists for the workflow's missing node types are). Scan the workflow again and use "
                         "the Install button of the pack it shows.")


class NotQueued(FixerError):
    """unqueue named a workflow whose fix is not waiting (it started already, or was never queued)."""

    default_code: ClassVar[ErrorCode] = "not_queued"

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        super().__init__(f"The fix for {workflow} is not waiting in the queue: it has started or ended already "
                         "(cancel it in the panel if it runs).")


MEMORY_WORKFLOWS = 16  # workflows whose earlier rows are kept (bounded: a long session opens many)


@dataclass
class QueuedFix:
    workflow: Any
    name: str
    items: list[str] | None
    review: bool


def remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Keep `value` as the newest entry of a bounded LRU `store`."""
    store[key] = value
    store.move_to_end(key)
    while len(store) > MEMORY_WORKFLOWS:
        store.popitem(last=False)


class FixerService:
    def __init__(self, host: Host, state_dir: Path, config: Config | None = None,
                 comfyui_root: Path | None = None, comfyui_version: str | None = None,
                 busy: Callable[[], bool] | None = None):
        self.busy = busy  # ComfyUI is running a prompt (the background hash index waits meanwhile)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        keep_actions_in(state_dir / "log")
        self.defaults = config or Config()  # config.json's values, before the page's changes
        self.secret_store = SecretStore(state_dir / settings_schema.SECRETS_FILE)
        saved = settings_schema.saved_changes(read_json(state_dir / settings_schema.SETTINGS_FILE, {}))
        # Inside ComfyUI the download scripts are only a record of the last run (the CLI keeps them all).
        self.app = Application(state_dir, settings_schema.apply(self.defaults, saved), host,
                               secrets=lambda: load_secrets(self.secret_store.read()), comfyui_root=comfyui_root,
                               comfyui_version=comfyui_version, run_view=self._panel_data, keep_scripts=False)
        # A finished earlier run's file is not shown as this service's; one a killed run left saying
        # "downloading" is settled into `error` (and then shown, being newer than what was seen).
        self.status_doc.mark_seen()
        settled_status(self.state_dir, "ComfyUI's comfyfixer service")
        self.bus.subscribe(self._forward)  # after the application's: the page gets the status they wrote
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._last_workflow: tuple[Any, str] | None = None
        self._workflows: OrderedDict[str, Any] = OrderedDict()  # the JSON each workflow was last fixed with
        # Rows and sources of earlier runs, per workflow: a pick, a paste or a retry is a run of its own,
        # and the other rows of the workflow keep what was found for them (not "Missing" again).
        self._memory: OrderedDict[str, dict[str, Row]] = OrderedDict()
        self._found: OrderedDict[str, dict[str, Resolution]] = OrderedDict()
        self._ended: OrderedDict[str, RunSummary] = OrderedDict()  # how each workflow's last run ended
        # Fixes pressed for other workflows while a run is busy: started one after the other when it ends.
        self._queued: OrderedDict[str, QueuedFix] = OrderedDict()
        self._sizing = 0  # files of the review whose size is being asked of their source
        # The page's status events: at most ~4 a second, the newest within the interval, phases and ends at once.
        self._sender = WriteThrottle(self._send, SEND_INTERVAL)
        self._sending_on: Event | None = None  # the event a send due now is for (None: the interval's last)

    # --- what the application holds --------------------------------------------------------
    @property
    def host(self) -> Host:
        return self.app.host

    @property
    def state_dir(self) -> Path:
        return self.app.state_dir

    @property
    def comfyui_root(self) -> Path | None:
        return self.app.comfyui_root

    @property
    def comfyui_version(self) -> str | None:
        return self.app.comfyui_version

    @property
    def config(self) -> Config:
        """The settings as the page left them (config.json's values under the page's changes)."""
        return self.app.config

    @property
    def bus(self) -> EventBus:
        return self.app.bus

    @property
    def status_doc(self) -> StatusDocument:
        return self.app.status

    @property
    def _run(self) -> FixRun | None:
        return self.app.run

    def secrets(self) -> dict[str, str]:
        return self.app.secrets()

    # --- events --------------------------------------------------------------------------
    def on_event(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        for fn in list(self._listeners):
            try:
                fn(name, payload)
            except Exception:
                log.exception("event listener failed")

    def _forward(self, event: Event) -> None:
        if isinstance(event, PhaseChanged) and event.phase == "review" and self._run is not None:
            self._size_unknown_files(self._run)
        self._sending_on = event
        try:
            self._sender.changed(force=isinstance(event, SENT_AT_ONCE))
        finally:
            self._sending_on = None

    def _send(self) -> None:
        event = self._sending_on
        if event is None or self.app.run_status.refreshed_on is not event:  # the page gets the rows as they are now
            self.app.run_status.refresh(force=event is None or isinstance(event, SENT_AT_ONCE))
        self._emit("comfyfixer.status", self.status())

    def _panel_data(self, run: FixRun) -> RunData:
        """The run's rows plus where each file goes, and while the run waits for review, the plan."""
        data = run.snapshot()
        for row in data.models:
            if row.folder and not row.path:
                row.dest, _ = destination(lambda folder: target_root(run.folders, folder), row.folder, row.name)
            if row.name in run.save_as:  # a pasted link's file keeps its name: the page repoints to it on landing
                row.saved_as = run.save_as[row.name]
        plan = self.app.review_plan(data.models, run.folders)
        if plan.files:
            data.plan = plan.doc(self.comfyui_root)
            data.plan.sizing = self._sizing
        data.models = self._with_earlier_rows(run.workflow, data.models)
        return data

    def _with_earlier_rows(self, workflow: str, rows: list[Row]) -> list[Row]:
        """This run's rows over the rows earlier runs of the same workflow left (marked `carried`), in
        their first order: an action on one row leaves the others as they were."""
        earlier = self._memory.get(workflow)
        if not earlier:
            return rows
        merged = {n: replace(r, carried=True) for n, r in earlier.items()}
        for r in rows:
            merged[r.name] = r
        return list(merged.values())

    def _remember(self, run: FixRun) -> None:
        """Keep the ended run's rows, sources and summary for the workflow's next scan and run."""
        data = self._panel_data(run)
        remember(self._memory, run.workflow, {r.name: replace(r, carried=False) for r in data.models})
        if data.summary is not None:
            remember(self._ended, run.workflow, data.summary)
        remember(self._found, run.workflow, {**self._found.get(run.workflow, {}), **run.resolutions})

    def _resolution(self, name: str, workflow: str | None = None) -> Resolution | None:
        """What the run of `workflow` (default: the last run's), or an earlier run of it, found for `name`."""
        run = self._run
        if run is None:
            return None
        workflow = workflow or run.workflow
        found = run.resolutions.get(name) if run.workflow == workflow else None
        return found or self._found.get(workflow, {}).get(name)

    def _size_unknown_files(self, run: FixRun) -> None:
        """Ask the sources the size of each file in the review whose search did not say it (in the background)."""
        # A file that waits for a token is not asked: nothing goes to it before the user approves with one.
        unknown = [r for r in run.rows.values()
                   if r.state == "review" and r.size is None and r.url and not r.needs_token]
        if not unknown:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # emitted outside the loop (a thread): the review keeps "N of unknown size"
        self._sizing = len(unknown)
        loop.create_task(self._probe_sizes(run, unknown))

    async def _probe_sizes(self, run: FixRun, rows: list[Row]) -> None:
        from ..transfer.size_probe import remote_size

        secrets, config = self.secrets(), self.config.download
        limit = asyncio.Semaphore(4)

        async def one(row: Row) -> None:
            async with limit:
                size = await remote_size(row.url or "", secrets, config, row.source or "")
            if size is not None and row.size is None:
                row.size = size
                action("size_probed", name=row.name, size=size)

        try:
            await asyncio.gather(*(one(r) for r in rows))
        finally:
            self._sizing = 0
            if run is self._run:
                self.app.run_status.refresh()
                self._emit("comfyfixer.status", self.status())

    # --- scan ----------------------------------------------------------------------------
    async def scan(self, workflow: dict[str, Any], name: str = "workflow") -> dict[str, Any]:
        """The page's scan (application.panel_scan), with what earlier runs of this workflow left (shown while
        another one runs)."""
        result = await asyncio.to_thread(self.app.panel_scan, workflow, name)
        self.index_in_background()
        result.rows = [replace(r, carried=True) for r in self._memory.get(name, {}).values()]
        result.last_run = self._ended.get(name)
        return to_jsonable(result)

    def index_in_background(self) -> None:
        """After a scan: the hashes for lockfiles and duplicates, computed in the background (never waited for).
        When one starts, the pages hear it at once: their index line shows, and they read the status until it
        ends (no event says each piece)."""
        if self.identity.index_in_background():
            self._emit("comfyfixer.status", self.status())

    def check_offered_pack(self, pack_id: str) -> None:
        """PackNotOffered unless the last scan offered `pack_id` as installable: a page (or a script) cannot
        have Manager install a pack no scan named from ComfyUI-Manager's map."""
        offered = read_json(self.state_dir / OFFERED_PACKS_FILE, [])
        if not isinstance(offered, list) or pack_id not in offered:
            raise PackNotOffered(pack_id)

    # --- fix runs ------------------------------------------------------------------------
    async def start_fix(self, workflow: dict[str, Any], name: str = "workflow", items: list[str] | None = None,
                        chosen: dict[str, Candidate] | None = None, review: bool = False,
                        save_as: dict[str, str] | None = None) -> dict[str, Any]:
        """Resolve and download the workflow's missing models; with `review`, stop after resolving
        until approve() (the panel's "Download 6 models, 41.2 GB" button)."""
        if self._task is not None and not self._task.done():
            running = self._run.workflow if self._run is not None else ""
            if name == running or not name:
                raise RunBusy(running)
            # Another workflow's fix: it waits its turn and starts by itself when the running one ends.
            remember(self._queued, name, QueuedFix(workflow, name, items, review))
            action("fix_queued", workflow=name, behind=running)
            self.status_doc.update(queued=list(self._queued), force=True)
            self._emit("comfyfixer.status", self.status())
            return self.status()
        # The lock first: a fix refused because a CLI run holds the state dir never touches its status.json.
        lock = StateLock(self.state_dir, f"fix of {name}").acquire()
        try:
            self.status_doc.reset()
            self.status_doc.update(phase="scanning", force=True)
            report, inventory = await asyncio.to_thread(self.app.scan_workflow, workflow, name)
            self.bus.emit(ScanFinished(report))
        except BaseException:
            lock.release()
            raise
        refs = models_to_fetch(report, items or None)
        self._last_workflow = (workflow, name)
        remember(self._workflows, name, workflow)
        run = self.app.new_run(refs, inventory=inventory, workflow=name, chosen=chosen, review=review,
                               save_as=save_as,
                               families=report_families(report))  # the present models and node types say it too
        self._task = asyncio.create_task(self._drive(run, lock))
        self.app.run_status.refresh()
        return self.status()

    def approve(self, names: list[str] | None = None) -> dict[str, Any]:
        """Start the downloads the user reviewed (all, or only `names`)."""
        run = self._run
        if run is None or not any(r.state == "review" for r in run.rows.values()):
            raise FixerError("Nothing is waiting for review: press Fix to look for the missing models first.",
                             code="request_invalid")
        # Tokens and download settings changed while the user read the review apply to what is approved.
        run.use_settings(self.config, self.secrets())
        run.approve({n.replace("\\", "/") for n in names} if names is not None else None)
        self.app.run_status.refresh()
        return self.status()

    def discard_partial(self, name: str) -> dict[str, Any]:
        """Delete the bytes a cancelled or failed download kept for resuming."""
        run = self._run
        row = run.rows.get(name) if run is not None else None
        transfer = run.transfers.get(name) if run is not None else None
        if row is None or transfer is None or row.state not in ("cancelled", "failed"):
            raise FixerError(f"{name}: no stopped download of it in this run; nothing to discard",
                             code="request_invalid")
        discard(transfer.part)
        row.bytes_done = 0
        action("partial_discarded", name=name, part=transfer.part)
        self.app.run_status.refresh()
        self._emit("comfyfixer.status", self.status())
        return self.status()

    async def _drive(self, run: FixRun, lock: StateLock) -> None:
        try:
            await run.run()
            data = run.result or run.snapshot()
            files = [DoneFile(r.folder or "", r.name, run.save_as.get(r.name))
                     for r in data.models if r.state == "done"]
            self._emit("comfyfixer.done", to_jsonable(DoneEvent(run.run_id, data.summary, files, run.workflow)))
        except Exception as e:  # the run's own errors are per model; this is a bug or a disk failure
            log.exception("fix run failed")
            self.bus.emit(ErrorRaised(error_info(e, f"The fix run stopped: {e}")))
            self.bus.emit(PhaseChanged("error"))
        finally:
            lock.release()
            self._remember(run)
            self._emit("comfyfixer.status", self.status())
            if self._queued:
                asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._start_queued()))

    async def _start_queued(self) -> None:
        """The next fix pressed while this one ran; if it cannot start, the status says so and why."""
        if not self._queued or (self._task is not None and not self._task.done()):
            return
        _, job = self._queued.popitem(last=False)
        self.status_doc.update(queued=list(self._queued), force=True)
        try:
            await self.start_fix(job.workflow, job.name, job.items, review=job.review)
        except FixerError as e:
            action("queued_fix_not_started", workflow=job.name, error=str(e))
            self.status_doc.add_error(error_info(e, f"The fix for {job.name} that was waiting did not start: {e}"),
                                      f"queued:{job.name}")
            self._emit("comfyfixer.status", self.status())

    def unqueue(self, name: str) -> dict[str, Any]:
        """Take the fix of workflow `name` off the queue before it starts (the queued notice's button)."""
        if self._queued.pop(name, None) is None:
            raise NotQueued(name)
        action("fix_unqueued", workflow=name)
        self.status_doc.update(queued=list(self._queued), force=True)
        self._emit("comfyfixer.status", self.status())
        return self.status()

    def status(self) -> dict[str, Any]:
        """This service's run's document while it has one going; otherwise status.json as it truly is when
        another process wrote it since (a CLI run in the same state dir, alive, finished or killed: settled
        as `--status` settles it, so scripts polling through ComfyUI stop waiting for a dead run); with the
        background hash index's progress beside it."""
        if (self._task is None or self._task.done()) and self.status_doc.written_elsewhere():
            doc = settled_status(self.state_dir, "ComfyUI's comfyfixer service")[0]
        else:
            doc = self.status_doc.snapshot()
        # The panel's status (shapes.PanelStatus): beside the run's document, this ComfyUI's background hash
        # index, O(1) to read and never started by a read.
        return {**doc, "index": self.identity.progress()}

    def cancel(self, name: str | None = None) -> dict[str, Any]:
        if self._run is not None:
            self._run.cancel(name)
            self.app.run_status.refresh()
        return self.status()

    async def retry(self, name: str, url: str | None = None, workflow: str | None = None) -> dict[str, Any]:
        """Download one failed, cancelled or unresolved model again: from `url` when the user picked one of
        the candidates the panel listed, else from the source chosen before. `workflow` names the workflow
        the row belongs to (the last run's when not given): its earlier rows and sources are kept."""
        res = self._resolution(name, workflow)
        if url is not None:
            offered = ([res.chosen] if res and res.chosen else []) + (res.candidates if res else [])
            candidate = next((c for c in offered if c.url == url or c.local_path == url), None)
            if candidate is None:
                raise FixerError(f"{name}: {url} is not one of the sources found for it; scan again to see them",
                                 code="request_invalid")
        else:
            candidate = res.chosen if res is not None else None
        if self._joins_run(name, workflow):
            if candidate is None:
                raise FixerError(f"{name}: no source to retry; pick one of the candidates", code="request_invalid")
            self._choose(name, candidate)
            return self.status()
        wf_name = workflow or (self._last_workflow[1] if self._last_workflow else None)
        if wf_name is None or wf_name not in self._workflows:
            raise FixerError(f"{name}: nothing to retry; run a fix first", code="request_invalid")
        return await self.start_fix(self._workflows[wf_name], wf_name, [name], {name: candidate} if candidate else None)

    def _joins_run(self, name: str, wf_name: str | None = None) -> bool:
        """Can `name` be fetched within the run going on (its row, or a row of the same workflow)?"""
        run = self._run
        if run is None or self._task is None or self._task.done() or wf_name not in (None, run.workflow):
            return False
        if name in run.rows:
            return True
        same = wf_name == run.workflow if wf_name is not None else name in self._memory.get(run.workflow, {})
        return same

    def _choose(self, name: str, candidate: Candidate) -> None:
        """Fetch `name` from `candidate` in the run going on; its row joins the run's rows if new."""
        run = self._run
        assert run is not None
        if name not in run.rows:
            earlier = self._memory.get(run.workflow, {}).get(name)
            run.rows[name] = Row(name, candidate.folder or (earlier.folder if earlier else None))
        row = run.rows[name]
        # The row says the source it now downloads from, not the search that found none.
        row.source, row.url = candidate.source, candidate.url
        row.reason, row.confidence = candidate.reason, candidate.confidence
        row.size, row.sha256, row.tried = candidate.size, candidate.sha256, []
        task = asyncio.create_task(run.choose(name, candidate))

        def said(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.warning("%s: the chosen source did not start: %s", name, t.exception())

        task.add_done_callback(said)

    async def relink(self, workflow: dict[str, Any], wf_name: str, name: str, folder: str,
                     path: str) -> dict[str, Any]:
        """The panel's "Use this file": link `path`, a file in another model folder, into `folder` as
        `name`, a model the workflow uses. When the workflow states a sha256 for it, the file is hashed
        (the hash index's word, else read now on a thread) and other bytes are refused, as a fix run
        refuses them (resolve.py): a file of the same name is not always the same model."""
        folders = self.host.folders()
        real = os.path.realpath(path)
        inside = any(os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root)
                     for roots in model_folders(folders).values() for root in roots if os.path.isdir(root))
        if not inside or not os.path.isfile(real):
            raise UnsafePath(path, "only files inside ComfyUI's model folders can be relinked")
        report, _ = await asyncio.to_thread(self.app.scan_workflow, workflow, wf_name)
        ref = next((s.ref for s in report.models if s.ref.name == name), None)
        if ref is None:
            raise FixerError(f"{name} is not a model this workflow uses; scan again", code="request_invalid")
        dest_root = target_root(self.app.write_folders([ref] if ref.folder == folder else [], folders), folder,
                                name=name, extensions=self.host.extensions)
        want = ref.stated_sha256
        have = await LocalSource(self.identity.index).sha256_of(real) if want else None
        if want and have != want:
            action("relink_refused", name=name, folder=folder, src=real, sha256=have, workflow_sha256=want,
                   reason="sha256_differs" if have else "file_missing")
            if have is None:
                raise FixerError(f"{name}: {real} could not be read to check it holds the sha256 the workflow "
                                 f"states for it ({want[:12]}…), so it was not linked. Download the workflow's "
                                 "own file instead (a fix of this model: Download on its row).", code="file_missing")
            raise FixerError(f"{name}: {real} holds other bytes (sha256 {have[:12]}…) than the workflow states for "
                             f"it (sha256 {want[:12]}…), so it was not linked: it is another file of the same name. "
                             "Download the workflow's own file instead (a fix of this model: Download on its row), "
                             "which is checked against that sha256.", code="sha256_differs")
        dest = await asyncio.to_thread(place_local_copy, real, dest_root, name)
        action("linked", name=name, folder=folder, src=real, dest=dest, by="panel",
               sha256_checked=want is not None)
        self._emit("comfyfixer.done", to_jsonable(DoneEvent(None, None, [DoneFile(folder, name)])))
        return {"ok": True, "folder": folder, "relpath": name.replace("\\", "/"), "path": dest}

    async def paste_link(self, workflow: dict[str, Any], wf_name: str, name: str, link: str) -> dict[str, Any]:
        """A link the user found for `name` (a not-found or pick-a-source row, or one not run yet):
        checked (sources.pasted), then downloaded like any other source under the file's real name;
        the run's other rows keep their results. The panel repoints the widget when it lands."""
        from ..sources.pasted import check_link

        report, _ = await asyncio.to_thread(self.app.scan_workflow, workflow, wf_name)
        ref = next((s.ref for s in report.models if s.ref.name == name), None)
        if ref is None:
            raise FixerError(f"{name} is not a model this workflow uses; scan again", code="request_invalid")
        candidate = await check_link(link, ref, config=self.config.search, secrets=self.secrets())
        folder = ref.folder or candidate.folder  # the folder the loader reads wins over the link's guess
        if not folder:
            raise FixerError(f"{name}: its ComfyUI folder is unknown, so the file has nowhere to go; install the "
                             "node pack that loads it, then scan again", code="folder_unknown")
        # Refused here, before anything starts, with the file's name: `hf:org/repo/evil.py` is not a model.
        target_root(self.app.write_folders([ref]), folder, name=candidate.filename, extensions=self.host.extensions)
        candidate = replace(candidate, folder=folder)
        action("user_link", name=name, folder=folder, source=candidate.source, saved_as=candidate.filename,
               url=public_url(candidate.url or ""))
        run = self._run
        if run is not None and self._joins_run(name, wf_name):
            run.save_as[name] = candidate.filename
            self._choose(name, candidate)
            return self.status()
        return await self.start_fix(workflow, wf_name, [name], {name: candidate}, save_as={name: candidate.filename})

    async def portable(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """The portable copy and the names it still has no link for (the panel says them)."""
        from .portable import make_portable, recorded_resolutions, without_link

        report, _ = await asyncio.to_thread(self.app.scan_workflow, workflow, "portable")
        used = {s.ref.name: s.ref.folder for s in report.models}
        known = await asyncio.to_thread(recorded_resolutions, self.state_dir / "output", used, self.comfyui_root)
        resolutions = known + (list(self._run.resolutions.values()) if self._run else [])
        out = make_portable(workflow, resolutions)
        return {"workflow": out, "without_link": without_link(out, used)}

    @cached_property
    def identity(self) -> IdentityPanel:
        return IdentityPanel(self.host, self.state_dir, str(self.comfyui_root or ""),
                             hashing=lambda: self.config.hashing, busy=self.busy or (lambda: False))

    async def lockfile(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """The workflow's models.lock.json (the panel's "Save lockfile")."""
        report, _ = await asyncio.to_thread(self.app.scan_workflow, workflow, "lockfile")
        return await asyncio.to_thread(self.identity.lockfile, report.models)

    async def duplicates(self, fix: bool = False) -> dict[str, Any]:
        return await asyncio.to_thread(self.identity.duplicates, fix)

    # --- settings ------------------------------------------------------------------------
    def _settings_path(self) -> Path:
        return self.state_dir / settings_schema.SETTINGS_FILE

    def settings(self) -> dict[str, Any]:
        """GET /settings: the schema the page draws its controls from, and the current values."""
        return {"schema": settings_schema.schema(self.defaults),
                "values": settings_schema.values(self.config, self.secrets())}

    def update_settings(self, patch: settings_schema.SettingsPatch) -> dict[str, Any]:
        """POST /settings, checked by `settings_schema.parse_patch`: the values persist, the tokens go
        to the secret store; the answer is GET /settings'."""
        if patch.config:
            saved = settings_schema.saved_changes(read_json(self._settings_path(), {}))
            write_json_atomic(self._settings_path(), {**saved, **patch.config})
            self.app.config = settings_schema.apply(self.config, patch.config)
        if patch.tokens:
            self.secret_store.update(patch.tokens)
        return self.settings()

"""The engine as ComfyUI's server side sees it: scan a posted workflow, run fixes, report status.

Thin adapters (server_routes.py) call this; it knows nothing about aiohttp or ComfyUI. Settings
the page changes persist in the state directory; tokens are kept there with owner-only
permissions and never returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..actionlog import action, keep_actions_in
from ..config import Config
from ..errors import ConfigError, ErrorCode, FixerError, UnsafePath, error_info
from ..events import Event, EventBus, PhaseChanged, RunFinished, ScanFinished, TransferDone
from ..host.host import Host, model_folders, target_root
from ..host.pack_nodes import without_download_nodes
from ..identity.panel import IdentityPanel
from ..models import Candidate, ModelRef, ModelStatus, Resolution, to_jsonable
from ..read.inventory import build_inventory
from ..shapes import DoneEvent, DoneFile, MissingNode, ModelEntry, PartialFile, Row, RunData, ScanResult
from ..sources.family import report_families
from ..state import StateLock, StatusDocument, read_json, settled_status, write_json_atomic
from ..transfer.resume import discard
from ..upstream.tokens import SecretStore, load_secrets
from . import settings as settings_schema
from .portable import public_url
from .report import counts, model_entry
from .review import destination, make_plan
from .run import FixRun, place_local_copy

log = logging.getLogger(__name__)
Listener = Callable[[str, dict], None]
SEND_INTERVAL = 0.25  # at most ~4 status events a second to the page

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


OFFERED_PACKS_FILE = "offered_packs.json"  # the pack ids the last scan offered (a worker's scan writes it too)


MEMORY_WORKFLOWS = 16  # workflows whose earlier rows are kept (bounded: a long session opens many)


@dataclass
class QueuedFix:
    workflow: Any
    name: str
    items: list[str] | None
    review: bool


def remember(store: OrderedDict, key: str, value: Any) -> None:
    """Keep `value` as the newest entry of a bounded LRU `store`."""
    store[key] = value
    store.move_to_end(key)
    while len(store) > MEMORY_WORKFLOWS:
        store.popitem(last=False)


class FixerService:
    def __init__(self, host: Host, state_dir: Path, config: Config | None = None,
                 comfyui_root: Path | None = None, comfyui_version: str | None = None):
        self.host = host
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        keep_actions_in(self.state_dir / "log")
        self.defaults = config or Config()  # config.json's values, before the page's changes
        self.config = settings_schema.apply(
            self.defaults, settings_schema.saved_changes(read_json(self._settings_path(), {})))
        self.secret_store = SecretStore(self.state_dir / settings_schema.SECRETS_FILE)
        self.comfyui_root = comfyui_root
        self.comfyui_version = comfyui_version
        self.bus = EventBus()
        self.status_doc = StatusDocument(self.state_dir / "status.json")
        # A finished earlier run's file is not shown as this service's; one a killed run left saying
        # "downloading" is settled into `error` (and then shown, being newer than what was seen).
        self.status_doc.mark_seen()
        settled_status(self.state_dir, "ComfyUI's comfyfixer service")
        self.bus.subscribe(self.status_doc)
        self.bus.subscribe(self._forward)
        self._listeners: list[Listener] = []
        self._run: FixRun | None = None
        self._task: asyncio.Task | None = None
        self._last_workflow: tuple[Any, str] | None = None
        self._workflows: OrderedDict[str, Any] = OrderedDict()  # the JSON each workflow was last fixed with
        # Rows and sources of earlier runs, per workflow: a pick, a paste or a retry is a run of its own,
        # and the other rows of the workflow keep what was found for them (not "Missing" again).
        self._memory: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
        self._found: OrderedDict[str, dict[str, Resolution]] = OrderedDict()
        # Fixes pressed for other workflows while a run is busy: started one after the other when it ends.
        self._queued: OrderedDict[str, QueuedFix] = OrderedDict()
        self._sizing = 0  # files of the review whose size is being asked of their source
        self._last_sent = 0.0
        self._trailing: threading.Timer | None = None
        self._send_lock = threading.Lock()

    # --- events --------------------------------------------------------------------------
    def on_event(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def _emit(self, name: str, payload: dict) -> None:
        for fn in list(self._listeners):
            try:
                fn(name, payload)
            except Exception:
                log.exception("event listener failed")

    def _forward(self, event: Event) -> None:
        if isinstance(event, PhaseChanged) and event.phase == "review" and self._run is not None:
            self._size_unknown_files(self._run)
        forced = isinstance(event, (PhaseChanged, TransferDone, RunFinished))
        with self._send_lock:
            now = time.monotonic()
            wait = SEND_INTERVAL - (now - self._last_sent)
            if not forced and wait > 0:
                # Throttled, but the newest state must still reach the page: send it when the interval ends.
                if self._trailing is None:
                    self._trailing = threading.Timer(wait, self._send_latest)
                    self._trailing.daemon = True
                    self._trailing.start()
                return
            self._last_sent = now
        self._refresh(force=forced)
        self._emit("comfyfixer.status", self.status())

    def _refresh(self, force: bool) -> None:
        """The run's rows into the status document (built only when they are sent, not per event)."""
        if self._run is not None:
            self._set_run_data(self._run, force)

    def _set_run_data(self, run: FixRun, force: bool) -> None:
        """The run's rows and the agent guide's counters into the status document."""
        self.status_doc.set_counts(run.seed_counts())
        self.status_doc.set_data(self._panel_data(run), force=force)

    def _root_for(self, folder: str) -> str:
        return target_root(self.host.folders(), folder)

    def _panel_data(self, run: FixRun) -> RunData:
        """The run's rows plus where each file goes, and while the run waits for review, the plan."""
        data = run.snapshot()
        for row in data.models:
            if row.folder and not row.path:
                row.dest, _ = destination(self._root_for, row.folder, row.name)
            if row.name in run.save_as:  # a pasted link's file keeps its name: the page repoints to it on landing
                row.saved_as = run.save_as[row.name]
        held = [(r.name, r.folder, r.size) for r in data.models if r.state == "review" and r.folder]
        if held:
            data.plan = make_plan(held, self._root_for).doc(self.comfyui_root)
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
        """Keep the ended run's rows and sources for the next run of its workflow."""
        rows = {r.name: replace(r, carried=False) for r in self._panel_data(run).models}
        remember(self._memory, run.workflow, rows)
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
                self.status_doc.set_data(self._panel_data(run), force=True)
                self._emit("comfyfixer.status", self.status())

    def _send_latest(self) -> None:
        with self._send_lock:
            self._trailing = None
            self._last_sent = time.monotonic()
        self._refresh(force=True)
        self._emit("comfyfixer.status", self.status())

    # --- scan ----------------------------------------------------------------------------
    def _scan_sync(self, workflow: Any, name: str):
        from ..read.scan import scan_workflow_data

        inventory = build_inventory(self.host)
        report = scan_workflow_data(without_download_nodes(workflow), name, self.host, inventory)
        if report.problems:
            raise ConfigError(f"workflow: {report.problems[0].error}")
        return report, inventory

    def _scan_with_packs(self, workflow: Any, name: str):
        """The panel's scan also names the packs of missing node types (a fix run has no use for them)."""
        from ..nodepacks.lookup import PackIndex, match_missing_nodes

        report, _ = self._scan_sync(workflow, name)
        packs = match_missing_nodes(report.missing_nodes, PackIndex.load(self.comfyui_root),
                                    self.comfyui_version) if report.missing_nodes else []
        return report, packs

    async def scan(self, workflow: dict, name: str = "workflow") -> dict[str, Any]:
        report, packs = await asyncio.to_thread(self._scan_with_packs, workflow, name)
        self.identity.index_in_background()  # hashes for lockfiles and duplicates: never waited for
        write_json_atomic(self.state_dir / OFFERED_PACKS_FILE, sorted({p.id for p in packs if p.manager_installable}))
        models = [model_entry(s, self._dest(s)) for s in report.models]
        for m in models:
            m.partial = partial_on_disk(m.dest) if m.dest else None
        summary = counts(report)
        # Files only an uninstalled pack can load: not downloadable until it is, so not counted as missing.
        summary.for_missing_packs = files_for_missing_packs(models, {n.node_type for n in report.missing_nodes},
                                                            {t: p.id or t for p in packs for t in p.node_types})
        summary.missing -= summary.for_missing_packs
        return to_jsonable(ScanResult(workflow=name, node_check=report.node_check, summary=summary, models=models,
                                      missing_nodes=[MissingNode(n.node_type, n.cnr_id, n.aux_id, n.ver, n.usages)
                                                     for n in report.missing_nodes],
                                      packs=packs, failed_packs=report.failed_packs,
                                      # What earlier runs of this workflow left (shown while another one runs).
                                      rows=[replace(r, carried=True) for r in self._memory.get(name, {}).values()]))

    def check_offered_pack(self, pack_id: str) -> None:
        """PackNotOffered unless the last scan offered `pack_id` as installable: a page (or a script) cannot
        have Manager install a pack no scan named from ComfyUI-Manager's map."""
        offered = read_json(self.state_dir / OFFERED_PACKS_FILE, [])
        if not isinstance(offered, list) or pack_id not in offered:
            raise PackNotOffered(pack_id)

    def _dest(self, s: ModelStatus) -> str | None:
        """A missing model's real destination path, so the panel says where it goes before it goes."""
        if s.state != "missing" or not s.ref.folder:
            return None
        return destination(self._root_for, s.ref.folder, s.ref.name)[0]

    # --- fix runs ------------------------------------------------------------------------
    def secrets(self) -> dict[str, str]:
        return load_secrets(self.secret_store.read())

    def _new_run(self, refs: list[ModelRef], inventory, name: str,
                 chosen: dict[str, Candidate] | None = None, review: bool = False,
                 save_as: dict[str, str] | None = None, families: dict[str, str] | None = None) -> FixRun:
        return FixRun(refs, config=self.config, secrets=self.secrets(), bus=self.bus, folders=self.host.folders(),
                      inventory=inventory, state_dir=self.state_dir,
                      comfyui_root=self.comfyui_root, workflow=name, chosen=chosen, review=review,
                      save_as=save_as, families=families, extensions=self.host.extensions)

    async def start_fix(self, workflow: dict, name: str = "workflow", items: list[str] | None = None,
                        chosen: dict[str, Candidate] | None = None, review: bool = False,
                        save_as: dict[str, str] | None = None) -> dict:
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
            report, inventory = await asyncio.to_thread(self._scan_sync, workflow, name)
            self.bus.emit(ScanFinished(report))
        except BaseException:
            lock.release()
            raise
        wanted = {i.replace("\\", "/") for i in items} if items else None
        refs = [s.ref for s in report.models if s.state == "missing" and (wanted is None or s.ref.name in wanted)]
        self._last_workflow = (workflow, name)
        remember(self._workflows, name, workflow)
        self._run = self._new_run(refs, inventory, name, chosen, review, save_as,
                                  report_families(report))  # the present models and node types say it too
        self._task = asyncio.create_task(self._drive(self._run, lock))
        self._set_run_data(self._run, True)
        return self.status()

    def approve(self, names: list[str] | None = None) -> dict:
        """Start the downloads the user reviewed (all, or only `names`)."""
        run = self._run
        if run is None or not any(r.state == "review" for r in run.rows.values()):
            raise FixerError("Nothing is waiting for review: press Fix to look for the missing models first.",
                             code="request_invalid")
        # Tokens and download settings changed while the user read the review apply to what is approved.
        run.use_settings(self.config, self.secrets())
        run.approve({n.replace("\\", "/") for n in names} if names is not None else None)
        self._set_run_data(run, True)
        return self.status()

    def discard_partial(self, name: str) -> dict:
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
        self._set_run_data(run, True)
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
            self.status_doc.add_error(error_info(e, f"The fix run stopped: {e}"))
            self.status_doc.update(phase="error", force=True)
        finally:
            lock.release()
            self._remember(run)
            prune_scripts(self.state_dir / "output", run.started)
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
        as `--status` settles it, so scripts polling through ComfyUI stop waiting for a dead run)."""
        if (self._task is None or self._task.done()) and self.status_doc.written_elsewhere():
            return settled_status(self.state_dir, "ComfyUI's comfyfixer service")[0]
        return self.status_doc.snapshot()

    def cancel(self, name: str | None = None) -> dict:
        if self._run is not None:
            self._run.cancel(name)
            self.status_doc.set_data(self._panel_data(self._run), force=True)
        return self.status()

    async def retry(self, name: str, url: str | None = None, workflow: str | None = None) -> dict:
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
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.warning(
            "%s: the chosen source did not start: %s", name, t.exception()))

    async def relink(self, name: str, folder: str, path: str) -> dict:
        folders = self.host.folders()
        real = os.path.realpath(path)
        inside = any(os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root)
                     for roots in model_folders(folders).values() for root in roots if os.path.isdir(root))
        if not inside or not os.path.isfile(real):
            raise UnsafePath(path, "only files inside ComfyUI's model folders can be relinked")
        dest = await asyncio.to_thread(place_local_copy, real,
                                       target_root(folders, folder, name=name, extensions=self.host.extensions), name)
        self._emit("comfyfixer.done", to_jsonable(DoneEvent(None, None, [DoneFile(folder, name)])))
        return {"ok": True, "folder": folder, "relpath": name.replace("\\", "/"), "path": dest}

    async def paste_link(self, workflow: dict, wf_name: str, name: str, link: str) -> dict:
        """A link the user found for `name` (a not-found or pick-a-source row, or one not run yet):
        checked (sources.pasted), then downloaded like any other source under the file's real name;
        the run's other rows keep their results. The panel repoints the widget when it lands."""
        from ..sources.pasted import check_link

        report, _ = await asyncio.to_thread(self._scan_sync, workflow, wf_name)
        ref = next((s.ref for s in report.models if s.ref.name == name), None)
        if ref is None:
            raise FixerError(f"{name} is not a model this workflow uses; scan again", code="request_invalid")
        candidate = await check_link(link, ref, config=self.config.search, secrets=self.secrets())
        folder = ref.folder or candidate.folder  # the folder the loader reads wins over the link's guess
        if not folder:
            raise FixerError(f"{name}: its ComfyUI folder is unknown, so the file has nowhere to go; install the "
                             "node pack that loads it, then scan again", code="folder_unknown")
        # Refused here, before anything starts, with the file's name: `hf:org/repo/evil.py` is not a model.
        target_root(self.host.folders(), folder, name=candidate.filename, extensions=self.host.extensions)
        candidate = replace(candidate, folder=folder)
        action("user_link", name=name, folder=folder, source=candidate.source, saved_as=candidate.filename,
               url=public_url(candidate.url or ""))
        if self._joins_run(name, wf_name):
            self._run.save_as[name] = candidate.filename
            self._choose(name, candidate)
            return self.status()
        return await self.start_fix(workflow, wf_name, [name], {name: candidate}, save_as={name: candidate.filename})

    async def portable(self, workflow: dict) -> dict:
        """The portable copy and the names it still has no link for (the panel says them)."""
        from .portable import make_portable, recorded_resolutions, without_link

        report, _ = await asyncio.to_thread(self._scan_sync, workflow, "portable")
        used = {s.ref.name: s.ref.folder for s in report.models}
        known = await asyncio.to_thread(recorded_resolutions, self.state_dir / "output", used, self.comfyui_root)
        resolutions = known + (list(self._run.resolutions.values()) if self._run else [])
        out = make_portable(workflow, resolutions)
        return {"workflow": out, "without_link": without_link(out, used)}

    @cached_property
    def identity(self) -> IdentityPanel:
        return IdentityPanel(self.host, self.state_dir, str(self.comfyui_root or ""))

    async def lockfile(self, workflow: dict) -> dict:
        """The workflow's models.lock.json (the panel's "Save lockfile")."""
        report, _ = await asyncio.to_thread(self._scan_sync, workflow, "lockfile")
        return await asyncio.to_thread(self.identity.lockfile, report.models)

    async def duplicates(self, fix: bool = False) -> dict:
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
            self.config = settings_schema.apply(self.config, patch.config)
        if patch.tokens:
            self.secret_store.update(patch.tokens)
        return self.settings()

def files_for_missing_packs(models: list[ModelEntry], missing_types: set[str], pack_of: dict[str, str]) -> int:
    """Mark each missing file that has nowhere to go in this ComfyUI (no folder, or a folder it does not have)
    and whose every loader is a missing node type with `needs_pack` (the pack's id, or the node type when
    no pack is known); returns how many."""
    marked = 0
    for m in models:
        types = [u.node_type for u in m.nodes]
        if m.state == "missing" and not m.dest and types and all(t in missing_types for t in types):
            m.needs_pack = pack_of.get(types[0], types[0])
            marked += 1
    return marked


def partial_on_disk(dest: str) -> PartialFile | None:
    """{bytes, total} a stopped download left at `dest` (its .part and sidecar), kept for resuming; or None."""
    from ..transfer.resume import covered, load, part_path

    part = part_path(dest)
    sidecar = load(part)
    try:
        size = part.stat().st_size
    except OSError:
        return None
    if sidecar is None or not size:
        return None
    kept = min(covered(sidecar.ranges), size)
    return PartialFile(bytes=kept, total=sidecar.total) if kept else None

def prune_scripts(output_dir: Path, since: float) -> int:
    """Inside ComfyUI the download scripts are only a record of the last run (the CLI keeps
    them all): older ones go, so the folder does not grow by one file per download forever."""
    removed = 0
    for path in output_dir.glob("download_[0-9]*.sh"):  # transfer.scripts.script_name
        try:
            if path.stat().st_mtime < since:
                path.unlink()
                removed += 1
        except OSError:
            continue  # another process removed or is replacing it; not ours to fight over
    return removed

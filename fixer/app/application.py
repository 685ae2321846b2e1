"""One ComfyFixerSmart: what the CLI, the ComfyUI service and the scan worker share.

`Application` holds the settings, the tokens, the ComfyUI it works on (its host), the state dir, the model
files on disk and the event bus, and offers the operations every front-end needs: scan workflows (files, or
one posted to the panel: what the scan worker runs too), choose which models a fix fetches (one rule,
`models_to_fetch`) and build a fix run. It subscribes the run's output files (outputs.py) for every front-end.
The front-ends keep what is theirs: the CLI its flags, prompts and printing (cli.py), the service its panel
state, queue and websocket events (service.py), the worker its pipes (comfy/scan_worker.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ..config import Config
from ..errors import ConfigError
from ..events import EventBus
from ..host.host import Host, target_root, with_pack_folders
from ..models import Candidate, MapSource, ModelRef, ModelStatus, Resolution, ScanReport
from ..shapes import MissingNode, ModelEntry, PackMatch, PartialFile, Row, RunData, ScanResult
from ..state import StatusDocument, write_json_atomic
from .outputs import ResolutionsFile, RunStatus, ScriptsOfLastRun, plain_view

if TYPE_CHECKING:
    from ..read.inventory import Inventory
    from .review import Plan
    from .run import FixRun

OFFERED_PACKS_FILE = "offered_packs.json"  # the pack ids the last panel scan offered (the worker's scan too)
# What a fix fetches: every model the workflow cannot load from the folder its loader reads. A copy on disk in
# another place ("elsewhere") is linked from there (never moved; no bytes downloaded when it is the same file),
# so the workflow runs after the fix; a refused reference ("unsafe") is never fetched.
FETCHED_STATES = ("missing", "elsewhere")
_FROM_A_PACK = frozenset(get_args(MapSource))  # folders learned from an installed pack's node definition


def models_to_fetch(report: ScanReport, wanted: Iterable[str] | None = None) -> list[ModelRef]:
    """The models a fix of `report`'s workflows fetches: the one rule of every front-end, narrowed to the
    names the user picked (`wanted`, with either slash) when given."""
    names = {w.replace("\\", "/") for w in wanted} if wanted is not None else None
    return [s.ref for s in report.models if s.state in FETCHED_STATES and (names is None or s.ref.name in names)]


class Application:
    """One ComfyFixerSmart over one ComfyUI and one state dir (see the module's docstring).

    `host` is the ComfyUI, or `make_host` builds it on first use (the CLI's --status needs none). `secrets`
    reads the tokens as they are now (by default the saved and environment ones). `run_view` is how the
    front-end shows a run's rows in status.json (the panel adds destinations and the review's plan).
    `keep_scripts=False` keeps only the last run's download scripts (inside ComfyUI)."""

    def __init__(self, state_dir: Path, config: Config, host: Host | None = None, *,
                 make_host: Callable[[], Host] | None = None,
                 secrets: Callable[[], dict[str, str]] | None = None, comfyui_root: Path | None = None,
                 comfyui_version: str | None = None, run_view: Callable[[FixRun], RunData] = plain_view,
                 keep_scripts: bool = True) -> None:
        self.state_dir = Path(state_dir)
        self.config = config
        self._host = host
        self._make_host = make_host
        self._secrets = secrets
        self.comfyui_root = comfyui_root
        self.comfyui_version = comfyui_version
        self._inventory: Inventory | None = None
        self.run: FixRun | None = None  # the last run built
        self.bus = EventBus()
        self.status = StatusDocument(self.state_dir / "status.json")
        # The run's rows before the document (it writes a new phase with them), then the other files.
        self.run_status = RunStatus(self.status, run_view)
        self.bus.subscribe(self.run_status)
        self.bus.subscribe(self.status)
        self.bus.subscribe(ResolutionsFile(self.output_dir))
        if not keep_scripts:
            self.bus.subscribe(ScriptsOfLastRun(self.output_dir))

    @property
    def output_dir(self) -> Path:
        return self.state_dir / "output"

    @property
    def host(self) -> Host:
        """The ComfyUI this application works on, built once."""
        if self._host is None:
            assert self._make_host is not None
            self._host = self._make_host()
        return self._host

    def secrets(self) -> dict[str, str]:
        if self._secrets is not None:
            return self._secrets()
        from ..upstream.tokens import load_secrets  # a scan never needs the tokens (nor their module's import)

        return load_secrets()

    # --- the model files on disk ---------------------------------------------------------------
    def inventory(self) -> Inventory:
        """The model files on disk, walked once: a scan and the fix after it share it (the CLI's one command)."""
        return self._inventory if self._inventory is not None else self.walk()

    def walk(self) -> Inventory:
        """The model files as they are now (the panel: files come and go between two requests)."""
        from ..read.inventory import build_inventory

        self._inventory = build_inventory(self.host)
        return self._inventory

    # --- scans ---------------------------------------------------------------------------------
    def scan_files(self, paths: list[str]) -> ScanReport:
        """Workflow files and folders (the CLI), against the model files walked once."""
        from ..read.scan import scan_paths

        return scan_paths(paths, self.host, self.inventory())

    def scan_workflow(self, workflow: Any, name: str) -> tuple[ScanReport, Inventory]:
        """One workflow posted by the page, against the model files as they are now. Our own download nodes
        are not what the workflow lacks; an unreadable workflow is refused naming its problem."""
        from ..host.pack_nodes import without_download_nodes
        from ..read.scan import scan_workflow_data

        inventory = self.walk()
        report = scan_workflow_data(without_download_nodes(workflow), name, self.host, inventory)
        if report.problems:
            raise ConfigError(f"workflow: {report.problems[0].error}")
        return report, inventory

    def packs_for(self, report: ScanReport) -> list[PackMatch]:
        """The node packs of the missing node types (the pack index loaded only when one is missing)."""
        if not report.missing_nodes:
            return []
        from ..nodepacks.lookup import PackIndex, match_missing_nodes

        return match_missing_nodes(report.missing_nodes, PackIndex.load(self.comfyui_root), self.comfyui_version)

    def panel_scan(self, workflow: Any, name: str) -> ScanResult:
        """The page's scan of a posted workflow (in ComfyUI's process or the scan worker's): each model with
        where it goes and what a stopped download left there, the packs of missing node types (their ids
        recorded as the ones an install may ask for). Earlier runs' rows are the service's to add."""
        from .report import counts, model_entry

        report, _ = self.scan_workflow(workflow, name)
        packs = self.packs_for(report)
        write_json_atomic(self.state_dir / OFFERED_PACKS_FILE, sorted({p.id for p in packs if p.manager_installable}))
        folders = self.host.folders()  # asked once: inside ComfyUI it lists models/ for the packs' own folders
        models = [model_entry(s, self.dest_of(s, folders)) for s in report.models]
        for m in models:
            m.partial = partial_on_disk(m.dest) if m.dest else None
        summary = counts(report)
        # Files only an uninstalled pack can load: not downloadable until it is, so not counted as missing.
        summary.for_missing_packs = files_for_missing_packs(models, {n.node_type for n in report.missing_nodes},
                                                            {t: p.id or t for p in packs for t in p.node_types})
        summary.missing -= summary.for_missing_packs
        return ScanResult(workflow=name, node_check=report.node_check, summary=summary, models=models,
                          missing_nodes=[MissingNode(n.node_type, n.cnr_id, n.aux_id, n.ver, n.usages)
                                         for n in report.missing_nodes],
                          packs=packs, failed_packs=report.failed_packs)

    def write_folders(self, refs: Iterable[ModelRef] = (),
                      folders: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
        """Where files for `refs` may go: the host's folders (`folders` when the caller already asked for
        them), plus models/<key> for a folder an installed pack's loader among them reads without registering
        it (learned from the pack's definition, never from a workflow's word or a keyword guess)."""
        keys = {r.folder for r in refs if r.folder and r.folder_source in _FROM_A_PACK}
        return with_pack_folders(self.host.folders() if folders is None else folders, self.host.models_dir(), keys)

    def dest_of(self, s: ModelStatus, folders: dict[str, list[str]]) -> str | None:
        """Where a fix puts a model it fetches (a missing one, or one linked in from another place: the panel's
        "Use this file"), so the panel says where it goes before it goes; `folders`: the host's."""
        from .review import destination

        if s.state not in FETCHED_STATES or not s.ref.folder:
            return None
        within = self.write_folders([s.ref], folders)
        return destination(lambda folder: target_root(within, folder), s.ref.folder, s.ref.name)[0]

    def review_plan(self, rows: Iterable[Row], folders: dict[str, list[str]]) -> Plan:
        """The plan of the files a run holds for review (the CLI's question, the panel's button), into the
        run's folders."""
        from .review import make_plan

        return make_plan(((r.name, r.folder, r.size) for r in rows if r.state == "review" and r.folder),
                         lambda folder: target_root(folders, folder))

    # --- fix runs ------------------------------------------------------------------------------
    def new_run(self, refs: list[ModelRef], *, inventory: Inventory | None, workflow: str,
                families: dict[str, str] | None = None, chosen: dict[str, Candidate] | None = None,
                recorded: dict[str, Resolution] | None = None, save_as: dict[str, str] | None = None,
                review: bool = False) -> FixRun:
        """A fix run over this application's settings, tokens (as they are now), ComfyUI and bus; its rows
        go to status.json from now on."""
        from .run import FixRun

        host = self.host
        run = FixRun(refs, config=self.config, secrets=self.secrets(), bus=self.bus, folders=self.write_folders(refs),
                     extensions=host.extensions, inventory=inventory, state_dir=self.state_dir,
                     comfyui_root=self.comfyui_root, workflow=workflow, chosen=chosen, recorded=recorded,
                     review=review, save_as=save_as, families=families)
        self.run = run
        self.run_status.follow(run)
        return run


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


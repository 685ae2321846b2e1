"""The engine's life inside a running ComfyUI: one service per process, its events, Manager installs.

Nothing here imports ComfyUI: the pack's entry point hands its objects over (`attach` with a
`ComfyLinks`). Both adapters use this module: the routes (server_routes.py) serve the service and
queue installs, the nodes (nodes.py) read the settings and tokens the page saved. The engine has one
name in every process (`fixer`), so even when ComfyUI imports the pack twice (its path-based name and
`custom_nodes.<folder>`) both copies of the adapters reach this one module, its one service and its
record of the server whose route table already holds our routes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    from ..app.service import FixerService
    from ..host.failed_packs import ImportFailureLog
    from ..host.host import FolderPathsHost

log = logging.getLogger("fixer.comfyui")
_service_lock = threading.Lock()


class ComfyLinks(NamedTuple):
    """What the engine needs from the ComfyUI process. A NamedTuple (immutable, typed) rather than a frozen
    dataclass: ComfyUI's start-up builds it, and a dataclass's generated methods cost ~0.6 ms of that."""

    server: Any  # PromptServer.instance: sends events, lists the routes Manager added
    folder_paths: Any  # ComfyUI's folder_paths module
    node_classes: Callable[[], dict[str, Any]]  # the live NODE_CLASS_MAPPINGS (packs add to it while loading)
    version: str | None = None  # comfyui_version.__version__
    tls: bool = False  # ComfyUI serves https (--tls-keyfile)
    import_failures: Callable[[], dict[str, str]] | None = None  # pack path -> why ComfyUI could not import it


_links: ComfyLinks | None = None
_service: FixerService | None = None
_routes_on: Any = None  # the server whose route table holds our routes
_failure_log: ImportFailureLog | None = None


def attach(links: ComfyLinks) -> None:
    """Called by the pack's entry point inside ComfyUI, once per copy of the pack. A second copy hands
    over the same server and changes nothing; another server (a new one in tests) starts afresh."""
    global _links, _service
    with _service_lock:
        if _links is None or _links.server is not links.server:
            _links, _service = links, None


def claim_routes(server: Any) -> bool:
    """True the first time for `server`: the caller registers the routes. ComfyUI refuses to start on
    duplicate routes, so a second copy of the pack must not add them again."""
    global _routes_on
    with _service_lock:
        if _routes_on is server:
            return False
        _routes_on = server
        return True


def attached() -> ComfyLinks | None:
    return _links


def current_links() -> ComfyLinks:
    if _links is None:
        raise RuntimeError("ComfyFixerSmart runs outside ComfyUI here: nothing handed it ComfyUI's objects.")
    return _links


def import_failure_log() -> ImportFailureLog:
    """The process's one keeper of ComfyUI's "Cannot import ... module" warnings, on the root logger."""
    global _failure_log
    with _service_lock:
        if _failure_log is None:
            from ..host.failed_packs import ImportFailureLog

            _failure_log = ImportFailureLog()
            logging.getLogger().addHandler(_failure_log)
        return _failure_log


def service() -> FixerService:
    """The FixerService of this ComfyUI, built on first use (keeps ComfyUI's start-up fast).

    The Download node may ask first, from ComfyUI's prompt worker thread, hence the lock.
    """
    global _service
    links = current_links()
    with _service_lock:
        if _service is None:
            _service = build_service(links)
        return _service


def build_when_serving(server: Any) -> None:
    """Once ComfyUI's web server starts (every pack loaded), the service is built on a thread of its own:
    building it settles a status.json a killed run left saying "downloading" (scripts reading the file stop
    waiting without anyone opening the page), and ComfyUI's start-up never waits for it."""
    signal = getattr(getattr(server, "app", None), "on_startup", None)
    if signal is None or getattr(signal, "frozen", True):
        return

    async def start_building(_app: Any) -> None:
        threading.Thread(target=_build_quietly, name="comfyfixer-service", daemon=True).start()

    signal.append(start_building)


def _build_quietly() -> None:
    try:
        service()
    except Exception:  # noqa: BLE001 - never ComfyUI's start; the first request builds it again and says why
        log.exception("comfyfixer: the service could not be built at start")


def comfy_host(links: ComfyLinks) -> FolderPathsHost:
    from ..host.host import FolderPathsHost

    loop = getattr(links.server, "loop", None)
    return FolderPathsHost(links.folder_paths, node_classes=links.node_classes,
                           import_failures=links.import_failures,
                           confine=on_loop(loop) if isinstance(loop, asyncio.AbstractEventLoop) else None)


def on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], Any]], Any]:
    """Run a short synchronous call on `loop`'s thread and wait for it (from any other thread). The folder
    probe uses it: ComfyUI answers /object_info and validates prompts on that thread, so they never run
    while a node's INPUT_TYPES() holds the probe's markers. On the loop's own thread, or with the loop
    stopped, the call runs right there."""

    def run(fn: Callable[[], Any]) -> Any:
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop or loop.is_closed() or not loop.is_running():
            return fn()
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed back to the waiting thread as it was
                done.set_exception(e)

        loop.call_soon_threadsafe(call)
        return done.result()

    return run


def build_service(links: ComfyLinks) -> FixerService:
    from ..app.service import FixerService
    from ..config import load_config

    fp = links.folder_paths
    # ComfyUI's user directory: the user's own, where ComfyUI keeps their settings too. Its config.json
    # is the only configuration read inside ComfyUI (never one from a workflow folder).
    state_dir = Path(fp.get_user_directory()) / "comfyfixer"
    state_dir.mkdir(parents=True, exist_ok=True)
    # Tokens: the service reads the environment, ~/.secrets and the ones saved from the page itself.
    svc = FixerService(comfy_host(links), state_dir, load_config(state_dir / "config.json"),
                       comfyui_root=Path(fp.base_path), comfyui_version=links.version,
                       busy=prompt_running(links.server))
    svc.on_event(event_forwarder(links.server.send_sync, fp))
    log.info("comfyfixer: service ready, state in %s", state_dir)
    return svc


def prompt_running(server: Any) -> Callable[[], bool]:
    """Whether ComfyUI is executing or has queued a prompt, from its PromptServer's queue
    (`prompt_queue.get_tasks_remaining()`: the queue plus the running prompt, under the queue's own lock).
    A ComfyUI without that method is never called busy: the read limit still applies."""

    def busy() -> bool:
        queue = getattr(server, "prompt_queue", None)
        remaining = getattr(queue, "get_tasks_remaining", None)
        try:
            return callable(remaining) and int(remaining()) > 0
        except Exception:  # noqa: BLE001 - another ComfyUI's queue: not knowing is not busy
            return False

    return busy


def invalidate_filename_lists(folder_paths: Any, files: list[dict[str, str]]) -> None:
    """Drop ComfyUI's cached file lists of the folders these files landed in.

    The cache is only dropped on its own when a scanned directory's mtime changes; a file
    written into an existing subfolder does not change the folder root's mtime.
    """
    from ..constants import map_legacy

    for folder in {f["folder"] for f in files if isinstance(f, dict) and f.get("folder")}:
        folder_paths.filename_list_cache.pop(map_legacy(folder), None)


def event_forwarder(send_sync: Callable[..., None], folder_paths: Any) -> Callable[[str, dict[str, Any]], None]:
    """svc.on_event subscriber: refresh file lists when files land, then tell every page."""

    def forward(event: str, payload: dict[str, Any]) -> None:
        if event == "comfyfixer.done":
            invalidate_filename_lists(folder_paths, payload.get("files") or [])
        send_sync(event, payload)  # thread-safe: queued onto ComfyUI's loop

    return forward


def base_url(address: str | None, port: int | None, tls: bool = False) -> str:
    """How this process reaches its own ComfyUI server (Manager's install API is HTTP only)."""
    address = address or "127.0.0.1"
    if address in ("0.0.0.0", "::"):
        address = "127.0.0.1"  # listening everywhere: loopback reaches it without leaving the host
    if ":" in address:
        address = f"[{address}]"
    return f"{'https' if tls else 'http'}://{address}:{port or 8188}"


async def install_pack(pack_id: str) -> str | None:
    """Queue `pack_id` with the ComfyUI-Manager this ComfyUI runs; None when it runs none.

    The API is told apart by Manager's routes on our own server, looked up now: Manager may
    register after this pack. The pack id is what the scan's `packs[].id` says: a registry id, or
    "github-user/repo" of a pack Manager's own list names (never a repository a workflow alone names).
    """
    links = _links
    if links is None:
        return None
    from ..nodepacks import lookup as nodepacks
    from ..nodepacks import manager
    routes = links.server.app.router.routes()
    canonical = (getattr(getattr(r, "resource", None), "canonical", None) for r in routes)
    api = manager.detect_from_routes(c for c in canonical if isinstance(c, str))
    if api is None:
        return None
    index = await asyncio.to_thread(nodepacks.PackIndex.load, links.folder_paths.base_path)
    target = manager.listed_target(index, pack_id)
    url = base_url(getattr(links.server, "address", None), getattr(links.server, "port", None), links.tls)
    queued = await manager.queue_install(url, target, api, index=index)
    return f"ComfyUI-Manager is installing {queued.title}. {manager.RESTART_NOTE}"

"""The engine's life inside a running ComfyUI: one service per process, its events, Manager installs.

Nothing here imports ComfyUI: the pack's entry point hands its objects over once (`attach` with a
`ComfyLinks`). Both adapters use this module: the routes (server_routes.py) serve the service and
queue installs, the nodes (nodes.py) read the settings and tokens the page saved. `engine(name)`
is how the adapters import the rest of the engine lazily, from the same copy of it as this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

log = logging.getLogger("fixer.comfyui")

# The service is kept on the PromptServer, like the route guard in __init__.py: if ComfyUI imported
# the pack twice (its path-based name and `custom_nodes.<folder>`), the routes (first copy) and the
# nodes (last copy) still share one service and its settings.
SERVICE_ATTR = "_comfyfixer_service"
_service_lock = threading.Lock()


def engine(module: str) -> ModuleType:
    """fixer.<module>, imported on first use from this copy of the engine (the pack's own in ComfyUI)."""
    return importlib.import_module(f"{__package__.rpartition('.')[0]}.{module}")


@dataclass(frozen=True)
class ComfyLinks:
    """What the engine needs from the ComfyUI process."""

    server: Any  # PromptServer.instance: keeps the service, sends events, lists the routes Manager added
    folder_paths: Any  # ComfyUI's folder_paths module
    node_classes: Callable[[], dict[str, Any]]  # the live NODE_CLASS_MAPPINGS (packs add to it while loading)
    version: str | None = None  # comfyui_version.__version__
    tls: bool = False  # ComfyUI serves https (--tls-keyfile)
    import_failures: Callable[[], dict[str, str]] | None = None  # pack path -> why ComfyUI could not import it


_links: ComfyLinks | None = None


def attach(links: ComfyLinks) -> None:
    """Called by the pack's entry point inside ComfyUI, once per copy of the pack."""
    global _links
    _links = links


def attached() -> ComfyLinks | None:
    return _links


def current_links() -> ComfyLinks:
    if _links is None:
        raise RuntimeError("ComfyFixerSmart runs outside ComfyUI here: nothing handed it ComfyUI's objects.")
    return _links


def service() -> Any:
    """The FixerService of this ComfyUI, built on first use (keeps ComfyUI's start-up fast).

    The Download node may ask first, from ComfyUI's prompt worker thread, hence the lock.
    """
    links = current_links()
    svc = getattr(links.server, SERVICE_ATTR, None)
    if svc is None:
        with _service_lock:
            svc = getattr(links.server, SERVICE_ATTR, None)
            if svc is None:
                svc = build_service(links)
                setattr(links.server, SERVICE_ATTR, svc)
    return svc


def comfy_host(links: ComfyLinks) -> Any:
    loop = getattr(links.server, "loop", None)
    return engine("host.host").FolderPathsHost(links.folder_paths, node_classes=links.node_classes,
                                               import_failures=links.import_failures,
                                               confine=on_loop(loop) if isinstance(loop, asyncio.AbstractEventLoop)
                                               else None)


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


def build_service(links: ComfyLinks) -> Any:
    fp = links.folder_paths
    state_dir = Path(fp.get_user_directory()) / "comfyfixer"
    state_dir.mkdir(parents=True, exist_ok=True)
    # Tokens: the service reads the environment, ~/.secrets and the ones saved from the page itself.
    svc = engine("app.service").FixerService(comfy_host(links), state_dir,
                                         engine("config").load_config(state_dir / "config.json"),
                                         comfyui_root=Path(fp.base_path), comfyui_version=links.version)
    svc.on_event(event_forwarder(links.server.send_sync, fp))
    log.info("comfyfixer: service ready, state in %s", state_dir)
    return svc


def invalidate_filename_lists(folder_paths: Any, files: list[dict[str, str]]) -> None:
    """Drop ComfyUI's cached file lists of the folders these files landed in.

    The cache is only dropped on its own when a scanned directory's mtime changes; a file
    written into an existing subfolder does not change the folder root's mtime.
    """
    map_legacy = engine("constants").map_legacy
    for folder in {f.get("folder") for f in files if isinstance(f, dict) and f.get("folder")}:
        folder_paths.filename_list_cache.pop(map_legacy(folder), None)


def event_forwarder(send_sync: Callable[..., None], folder_paths: Any) -> Callable[[str, dict], None]:
    """svc.on_event subscriber: refresh file lists when files land, then tell every page."""

    def forward(event: str, payload: dict) -> None:
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
    manager, nodepacks = engine("nodepacks.manager"), engine("nodepacks.lookup")
    routes = links.server.app.router.routes()
    api = manager.detect_from_routes(getattr(getattr(r, "resource", None), "canonical", None) for r in routes)
    if api is None:
        return None
    index = await asyncio.to_thread(nodepacks.PackIndex.load, links.folder_paths.base_path)
    target = manager.listed_target(index, pack_id)
    url = base_url(getattr(links.server, "address", None), getattr(links.server, "port", None), links.tls)
    queued = await manager.queue_install(url, target, api, index=index)
    return f"ComfyUI-Manager is installing {queued.title}. {manager.RESTART_NOTE}"

"""HTTP adapter for the ComfyUI page: check the request, call FixerService, answer JSON. No logic.

`add_routes(routes, get_service)` mounts every handler of the contract on any aiohttp
`RouteTableDef`: ComfyUI's `PromptServer.instance.routes` (from __init__.py, at import time) or a
fresh table in tests. `comfy_service()` builds the service inside ComfyUI on the first request.
The request checks are small pure functions (`cross_origin_reason`, `field_*`, `settings_patch`)
so tests hit them directly as well as through aiohttp's test client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import threading
import unicodedata
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

if __package__:  # loaded by ComfyUI as part of the pack: use the pack's own copy of the engine
    from .fixer.errors import FixerError
    from .fixer.names import unsafe_reason
else:  # tests and tools with the repo root on sys.path
    from fixer.errors import FixerError
    from fixer.names import unsafe_reason

log = logging.getLogger("fixer.comfyui")

PREFIX = "/comfyfixer"
# A UI workflow with several subgraph definitions is a few MB; 16 MiB leaves room and still
# bounds what one request can make the server hold.
MAX_BODY_BYTES = 16 * 2**20
# Bodies up to this size decode on the loop (well under a millisecond); larger ones in a thread.
INLINE_DECODE_BYTES = 64 * 2**10
BIG_BODY_READ_SECONDS = 120
# Bodies larger than that are decoded and handled one at a time (see _guarded).
MAX_BIG_BODIES = 1
MAX_TEXT_CHARS = 1024
MAX_ITEMS = 10_000
# Settings the page may change; tokens are write-only (the service stores them, never returns them).
SETTINGS_TYPES: dict[str, type] = {
    "hf_token": str, "civitai_api_key": str, "max_concurrent": int, "connections_per_file": int,
    "allow_pickle": bool, "check_on_load": bool,
}
SECRET_SETTINGS = ("hf_token", "civitai_api_key")
# FixerError subclasses whose HTTP status is not 400. Matched by class name so the pack's copy of
# the engine (`<pack>.fixer`) and a top-level `fixer` map alike.
STATUS_BY_ERROR = {"RunBusy": 409, "ManagerError": 409}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestRefused(Exception):
    """A request we answer with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# Pure request checks
# ---------------------------------------------------------------------------------------------

def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:  # "host:notaport"
        return ("", None)
    return ((parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme))


def cross_origin_reason(origin: str | None, host: str | None, scheme: str = "http") -> str | None:
    """Why a request is cross-origin (refuse it), or None.

    No Origin header means a same-origin fetch or a tool such as curl, which ComfyUI also lets
    through. Otherwise Origin's host:port must equal the Host header's, whatever address ComfyUI
    listens on (ComfyUI's own check only covers loopback hosts).
    """
    if origin is None:
        return None
    o = urlsplit(origin.strip())
    if o.scheme not in ("http", "https") or not o.hostname:
        return f"Cross-origin request refused (Origin {origin!r}). Use the ComfyUI page itself."
    o_host, o_port = _host_port(o.netloc, o.scheme)
    h_host, h_port = _host_port(host or "", scheme)
    if not h_host or (o_host, o_port) != (h_host, h_port):
        return (f"Cross-origin request refused: Origin {origin} does not match Host {host}. "
                "Use the ComfyUI page itself.")
    return None


def json_content_type_reason(content_type: str | None) -> str | None:
    """Only JSON bodies: a browser cannot send them cross-site without a CORS preflight."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return "Send the request body as JSON with the header Content-Type: application/json."
    return None


def _each_object(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def decode_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise RequestRefused(400, "The request body is empty; send a JSON object.")
    try:
        # Plain json.loads is one C call that holds the GIL for the whole parse (165 ms for a 13 MiB
        # workflow), so decoding in a thread would still stall the loop. A Python-level hook, called
        # for every object, lets the interpreter hand the GIL to the loop every few milliseconds.
        body = json.loads(raw, object_hook=_each_object)
    except (UnicodeDecodeError, ValueError) as e:
        raise RequestRefused(400, f"The request body is not valid JSON: {e}") from None
    except RecursionError:
        raise RequestRefused(400, "The request body is nested too deeply to be a workflow.") from None
    if not isinstance(body, dict):
        raise RequestRefused(400, f"The request body must be a JSON object, got {type(body).__name__}.")
    return body


def _plain_text_reason(value: str, max_chars: int) -> str | None:
    if len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "contains control characters"
    return None


def field_workflow(body: dict[str, Any], field: str = "workflow") -> dict[str, Any]:
    value = body.get(field)
    if value is None:
        raise RequestRefused(400, f"'{field}' is missing: send the workflow JSON object.")
    if not isinstance(value, dict):
        raise RequestRefused(400, f"'{field}' must be a workflow JSON object, got {type(value).__name__}.")
    return value


def field_text(body: dict[str, Any], field: str, *, default: str | None = None,
               required: bool = False, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise RequestRefused(400, f"'{field}' is missing.")
        return default
    if not isinstance(value, str):
        raise RequestRefused(400, f"'{field}' must be a string, got {type(value).__name__}.")
    if required and not value.strip():
        raise RequestRefused(400, f"'{field}' is empty.")
    reason = _plain_text_reason(value, max_chars)
    if reason:
        raise RequestRefused(400, f"'{field}' {reason}.")
    return value


def field_model_name(body: dict[str, Any], field: str = "name", *, required: bool = True) -> str | None:
    """A model name as the workflow writes it; never absolute, never climbing out with '..'."""
    value = field_text(body, field, required=required)
    if value is None:
        return None
    reason = unsafe_reason(value)
    if reason:
        raise RequestRefused(400, f"'{field}' {value!r} is refused: {reason}.")
    return value


def field_items(body: dict[str, Any], field: str = "items") -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list):
        raise RequestRefused(400, f"'{field}' must be a list of model names, got {type(value).__name__}.")
    if len(value) > MAX_ITEMS:
        raise RequestRefused(400, f"'{field}' has more than {MAX_ITEMS} entries.")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RequestRefused(400, f"'{field}[{i}]' must be a string, got {type(item).__name__}.")
        field_model_name({f"{field}[{i}]": item}, f"{field}[{i}]")
    return list(value)


def field_folder(body: dict[str, Any], field: str = "folder") -> str:
    """A ComfyUI folder key such as "loras": one plain word, never a path."""
    value = field_text(body, field, required=True, max_chars=128)
    assert value is not None
    if not all(c.isalnum() or c in "_-." for c in value) or value.strip(".") == "":
        raise RequestRefused(400, f"'{field}' {value!r} is not a model folder name such as 'loras'.")
    return value


def field_abs_path(body: dict[str, Any], field: str = "path") -> str:
    value = field_text(body, field, required=True, max_chars=4096)
    assert value is not None
    if not (value.startswith("/") or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")):
        raise RequestRefused(400, f"'{field}' must be an absolute path of a file in a model folder.")
    return value


def field_pack_id(body: dict[str, Any], field: str = "pack_id") -> str:
    """A registry id ("comfyui-foo") or "github-user/repo", as ComfyUI-Manager takes them."""
    value = field_text(body, field, required=True, max_chars=200)
    assert value is not None
    parts = value.split("/")
    ok = len(parts) <= 2 and all(p and p[0].isalnum() and all(c.isalnum() or c in "_-." for c in p)
                                 for p in parts)
    if not ok:
        raise RequestRefused(400, f"'{field}' {value!r} is not a node pack id such as 'comfyui-foo' "
                                  "or 'github-user/repo'.")
    return value


def settings_patch(body: dict[str, Any]) -> dict[str, Any]:
    """The settings a POST may change, type-checked; unknown fields are refused by name."""
    patch: dict[str, Any] = {}
    for key, value in body.items():
        want = SETTINGS_TYPES.get(key)
        if want is None:
            raise RequestRefused(400, f"'{key}' is not a setting; known: {', '.join(SETTINGS_TYPES)}.")
        if want is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RequestRefused(400, f"'{key}' must be a whole number of at least 1, got {value!r}.")
        elif want is bool:
            if not isinstance(value, bool):
                raise RequestRefused(400, f"'{key}' must be true or false, got {value!r}.")
        else:
            if not isinstance(value, str):
                raise RequestRefused(400, f"'{key}' must be a string, got {type(value).__name__}.")
            value = value.strip()
            if _plain_text_reason(value, 4096) or any(c.isspace() for c in value):
                raise RequestRefused(400, f"'{key}' is not a token (it has spaces, control characters "
                                          "or is too long).")
        patch[key] = value
    return patch


def public_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as the page may see them: token values never leave the server."""
    return {k: v for k, v in settings.items() if k not in SECRET_SETTINGS}


def status_for(error: FixerError) -> int:
    for cls in type(error).__mro__:
        if cls.__name__ in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls.__name__]
    return 400


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def read_body(request: web.Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    reason = json_content_type_reason(request.headers.get("Content-Type"))
    if reason:
        raise RequestRefused(415, reason)
    too_big = RequestRefused(413, f"The request body is larger than {max_bytes // 2**20} MiB.")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_big
    # Read the stream ourselves so the cap holds for chunked bodies without a Content-Length too.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(2**16):
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def free_gradually(body: dict[str, Any]) -> None:
    """Drop a big decoded workflow a slice at a time: freeing it in one call holds the GIL (and so
    ComfyUI's event loop) for the whole cascade, while a Python loop lets other threads in between."""
    stack: list[Any] = [body]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            stack.extend(v for v in obj.values() if isinstance(v, (dict, list)) and len(v) > 256)
        elif isinstance(obj, list):
            stack.extend(v for v in obj if isinstance(v, (dict, list)) and len(v) > 256)
            while obj:
                del obj[-256:]
    body.clear()


@contextlib.asynccontextmanager
async def collector_paused():
    """No garbage collection while one big workflow is alive: a decoded workflow holds no reference
    cycles (refcounting frees it), but each full collection would walk its millions of objects with the
    GIL held, ~130 ms a time. Big bodies are handled one at a time, so this never nests; garbage other
    threads make meanwhile waits the few seconds until the collector is back."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _guarded(fn: Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]],
             *, has_body: bool, max_bytes: int, big_bodies: asyncio.Semaphore) -> Handler:
    """Refuse cross-origin calls, read the JSON body, and turn every failure into {"error"}."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            reason = cross_origin_reason(request.headers.get("Origin"), request.headers.get("Host"),
                                         request.scheme)
            if reason:
                log.warning("comfyfixer: %s %s: %s", request.method, request.path, reason)
                raise RequestRefused(403, reason)
            length = request.content_length if has_body else 0
            if length is not None and length <= INLINE_DECODE_BYTES:
                raw = await read_body(request, max_bytes) if has_body else b"{}"
                if len(raw) <= INLINE_DECODE_BYTES:
                    return await fn(request, decode_body(raw))
                raise RequestRefused(400, "The request body is longer than its Content-Length.")
            # Big workflows (or bodies of unknown length) go one at a time, read, decoded off the loop
            # and scanned, while the others wait unread in their sockets. Read all at once, every
            # socket read re-takes the GIL from the busy scan thread (up to 5 ms each): with 20
            # uploads that stalled the loop for over 100 ms. Decoded, a multi-MB workflow is ~10x its
            # size in objects that each full garbage collection would walk: the collector pauses.
            async with big_bodies:
                try:  # a stalled upload must not hold the queue of big bodies forever
                    raw = await asyncio.wait_for(read_body(request, max_bytes), BIG_BODY_READ_SECONDS)
                except asyncio.TimeoutError:
                    raise RequestRefused(408, "The request body did not arrive in time; send it again.") from None
                async with collector_paused():
                    body = await asyncio.to_thread(decode_body, raw)
                    try:
                        return await fn(request, body)
                    finally:  # freeing it is ~40 ms per 13 MiB: a thread drops it piece by piece
                        await asyncio.to_thread(free_gradually, body)
        except RequestRefused as e:
            return error_response(e.status, e.message)
        except FixerError as e:
            return error_response(status_for(e), str(e))
        except Exception as e:  # the page gets a message; the traceback goes to the ComfyUI log
            log.exception("comfyfixer: %s %s failed", request.method, request.path)
            return error_response(500, f"Internal error in ComfyFixerSmart ({type(e).__name__}: {e}); "
                                       "see the ComfyUI log.")

    handler.__name__ = f"comfyfixer_{fn.__name__}"
    return handler


def add_routes(routes: web.RouteTableDef, get_service: Callable[[], Any], *,
               install_pack: Callable[[str], Awaitable[str | None]] | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Register the /comfyfixer routes of the contract on `routes` (exactly once per table).

    `get_service()` returns the FixerService (created lazily by the caller). `await install_pack(pack_id)`
    queues a node pack install and returns a message, or None when no installer is available
    (default: the ComfyUI-Manager this ComfyUI runs).
    """
    installer = install_pack or comfy_install_pack
    big_bodies = asyncio.Semaphore(MAX_BIG_BODIES)

    def post(path: str) -> Callable:
        def deco(fn):
            routes.post(PREFIX + path)(_guarded(fn, has_body=True, max_bytes=max_body_bytes,
                                                big_bodies=big_bodies))
            return fn
        return deco

    def get(path: str) -> Callable:
        def deco(fn):
            routes.get(PREFIX + path)(_guarded(fn, has_body=False, max_bytes=max_body_bytes,
                                               big_bodies=big_bodies))
            return fn
        return deco

    @post("/scan")
    async def scan(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow = field_workflow(body)
        name = field_text(body, "name", default="workflow")
        return web.json_response(await get_service().scan(workflow, name))

    @post("/fix")
    async def fix(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow = field_workflow(body)
        name = field_text(body, "name", default="workflow")
        items = field_items(body)
        return web.json_response(await get_service().start_fix(workflow, name, items), status=202)

    @get("/status")
    async def status(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(get_service().status())

    @post("/cancel")
    async def cancel(request: web.Request, body: dict[str, Any]) -> web.Response:
        name = field_model_name(body, required=False)
        return web.json_response(get_service().cancel(name))

    @post("/retry")
    async def retry(request: web.Request, body: dict[str, Any]) -> web.Response:
        name = field_model_name(body)
        url = field_text(body, "url", default=None)
        return web.json_response(await get_service().retry(name, url))

    @post("/relink")
    async def relink(request: web.Request, body: dict[str, Any]) -> web.Response:
        name = field_model_name(body)
        folder = field_folder(body)
        path = field_abs_path(body)
        return web.json_response(await get_service().relink(name, folder, path))

    @get("/settings")
    async def settings(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(public_settings(get_service().settings()))

    @post("/settings")
    async def update_settings(request: web.Request, body: dict[str, Any]) -> web.Response:
        patch = settings_patch(body)
        return web.json_response(public_settings(get_service().update_settings(patch)))

    @post("/portable")
    async def portable(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow = field_workflow(body)
        return web.json_response({"workflow": get_service().portable(workflow)})

    @post("/install_pack")
    async def install(request: web.Request, body: dict[str, Any]) -> web.Response:
        pack_id = field_pack_id(body)
        message = await installer(pack_id)
        if message is None:
            raise RequestRefused(409, f"ComfyUI-Manager is not running in this ComfyUI, so {pack_id} cannot be "
                                      "installed from here. Start ComfyUI with --enable-manager, or install "
                                      "the pack by hand (see its install commands).")
        return web.json_response({"ok": True, "message": message}, status=202)


# ---------------------------------------------------------------------------------------------
# Inside ComfyUI: the service, its events, the Manager
# ---------------------------------------------------------------------------------------------

def _engine(module: str) -> Any:
    """fixer.<module>, from the same copy of the engine this file uses (imported on first use)."""
    import importlib

    return importlib.import_module(f".fixer.{module}", __package__) if __package__ \
        else importlib.import_module(f"fixer.{module}")


def comfyui_version() -> str | None:
    try:
        import comfyui_version as v  # ComfyUI's own module, beside main.py
    except ImportError:
        return None
    return getattr(v, "__version__", None)


def _comfy_node_classes() -> dict[str, Any]:
    import nodes  # ComfyUI's nodes module (absolute import: never this pack's nodes.py)

    return nodes.NODE_CLASS_MAPPINGS


def invalidate_filename_lists(folder_paths: Any, files: list[dict[str, str]]) -> None:
    """Drop ComfyUI's cached file lists of the folders these files landed in.

    The cache is only dropped on its own when a scanned directory's mtime changes; a file
    written into an existing subfolder does not change the folder root's mtime.
    """
    map_legacy = _engine("constants").map_legacy
    for folder in {f.get("folder") for f in files if isinstance(f, dict) and f.get("folder")}:
        folder_paths.filename_list_cache.pop(map_legacy(folder), None)


def event_forwarder(send_sync: Callable[..., None], folder_paths: Any) -> Callable[[str, dict], None]:
    """svc.on_event subscriber: refresh file lists when files land, then tell every page."""

    def forward(event: str, payload: dict) -> None:
        if event == "comfyfixer.done":
            invalidate_filename_lists(folder_paths, payload.get("files") or [])
        send_sync(event, payload)  # thread-safe: queued onto ComfyUI's loop

    return forward


_SERVICE_ATTR = "_comfyfixer_service"
_service_lock = threading.Lock()


def comfy_service() -> Any:
    """The FixerService of this ComfyUI, built on first use (keeps ComfyUI's start-up fast).

    Kept on the PromptServer, like the route guard in __init__.py: if the pack was imported twice,
    the routes (first copy) and the nodes (last copy) still share one service and its settings.
    The download node may ask first, from ComfyUI's prompt worker thread, hence the lock.
    """
    from server import PromptServer

    ps = PromptServer.instance
    svc = getattr(ps, _SERVICE_ATTR, None)
    if svc is None:
        with _service_lock:
            svc = getattr(ps, _SERVICE_ATTR, None)
            if svc is None:
                svc = build_comfy_service()
                setattr(ps, _SERVICE_ATTR, svc)
    return svc


def build_comfy_service() -> Any:
    import folder_paths  # ComfyUI's module
    from server import PromptServer

    config_mod, host_mod = _engine("config"), _engine("host")
    FixerService = _engine("service").FixerService
    state_dir = Path(folder_paths.get_user_directory()) / "comfyfixer"
    state_dir.mkdir(parents=True, exist_ok=True)
    host = host_mod.FolderPathsHost(folder_paths, node_classes=_comfy_node_classes)
    # Tokens: the service reads the environment, ~/.secrets and the ones saved from the page itself.
    svc = FixerService(host, state_dir, config_mod.load_config(state_dir / "config.json"),
                       comfyui_root=Path(folder_paths.base_path), comfyui_version=comfyui_version())
    svc.on_event(event_forwarder(PromptServer.instance.send_sync, folder_paths))
    log.info("comfyfixer: service ready, state in %s", state_dir)
    return svc


def comfy_base_url() -> str:
    """How this process reaches its own ComfyUI server (Manager's install API is HTTP only)."""
    from server import PromptServer

    ps = PromptServer.instance
    address, port = getattr(ps, "address", None) or "127.0.0.1", getattr(ps, "port", 8188)
    if address in ("0.0.0.0", "::", ""):
        address = "127.0.0.1"  # listening everywhere: loopback reaches it without leaving the host
    if ":" in address:
        address = f"[{address}]"
    try:
        from comfy.cli_args import args
        scheme = "https" if getattr(args, "tls_keyfile", None) else "http"
    except ImportError:
        scheme = "http"
    return f"{scheme}://{address}:{port}"


async def comfy_install_pack(pack_id: str) -> str | None:
    """Queue `pack_id` with the ComfyUI-Manager this ComfyUI runs; None when it runs none.

    The API is told apart by Manager's routes on our own server, looked up now: Manager may
    register after this pack. The pack id is what the scan's `packs[].id` says: a registry id
    or "github-user/repo".
    """
    from server import PromptServer

    manager, nodepacks = _engine("manager"), _engine("nodepacks")
    paths = [getattr(getattr(r, "resource", None), "canonical", None) for r in PromptServer.instance.app.router.routes()]
    api = manager.detect_from_routes(paths)
    if api is None:
        return None
    import folder_paths

    index = await asyncio.to_thread(nodepacks.PackIndex.load, folder_paths.base_path)
    if "/" in pack_id:
        pack: Any = index.pack(f"https://github.com/{pack_id}") or {"title": pack_id,
                                                                     "repository": f"https://github.com/{pack_id}"}
    else:
        pack = index.pack_by_id(pack_id) or {"title": pack_id, "cnr_id": pack_id}
    queued = await manager.queue_install(comfy_base_url(), pack, api, index=index)
    return f"ComfyUI-Manager is installing {queued.title}. {manager.RESTART_NOTE}"

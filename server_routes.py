"""HTTP adapter for the ComfyUI page: read the request, call FixerService, answer JSON. No logic.

`add_routes(routes, get_service)` mounts every handler of the contract on any aiohttp
`RouteTableDef`: ComfyUI's `PromptServer.instance.routes` (from __init__.py, at import time) or a
fresh table in tests. Who may call and what a body must hold are the pure checks of
fixer/comfy/web_guard.py; the service's lifetime and Manager installs are fixer/comfy/runtime.py.
`comfy_links()` gathers what the engine needs from the running ComfyUI, the one place here that
imports ComfyUI's modules.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from fixer.comfy import runtime as comfy_runtime

if TYPE_CHECKING:
    from fixer.comfy.scan_worker import ScanWorker
    from fixer.comfy.wait_line import WaitLine

log = logging.getLogger("fixer.comfyui")

PREFIX = "/comfyfixer"
# The contract's routes. ComfyUI builds its route table right after the packs load, so they are registered
# at import; what answers them (the handlers, the request checks, the scan worker) loads on the first request
# (add_routes), which keeps ComfyUI's start-up at a few milliseconds for this pack. A handler added to
# `handlers` needs its line here (tests/test_routes.py checks both name the same routes).
ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/scan"), ("POST", "/fix"), ("POST", "/approve"), ("POST", "/discard_partial"),
    ("POST", "/paste_link"), ("GET", "/status"), ("GET", "/folder_map"), ("POST", "/folder_map"),
    ("POST", "/cancel"), ("POST", "/unqueue"), ("POST", "/retry"), ("POST", "/relink"), ("GET", "/settings"),
    ("POST", "/settings"),
    ("POST", "/portable"), ("POST", "/lockfile"), ("POST", "/duplicates"), ("POST", "/duplicates/fix"),
    ("POST", "/install_pack"),
)
# A UI workflow with several subgraph definitions is a few MB; 16 MiB leaves room and still
# bounds what one request can make the server hold.
MAX_BODY_BYTES = 16 * 2**20
# Bodies up to this size decode on the loop (well under a millisecond); larger ones in a thread.
INLINE_DECODE_BYTES = 64 * 2**10
BIG_BODY_READ_SECONDS = 120
# Bodies larger than that are decoded and handled one at a time (see _guarded), with at most this many
# more waiting; the next is answered 503 + Retry-After at once (fixer/comfy/wait_line.py).
MAX_BIG_BODIES = 1
MAX_WAITING_BIG_BODIES = 3
# Scans of bodies larger than this run in the scan worker process (fixer/comfy/scan_worker.py): decoded,
# a 13 MiB workflow is ~230,000 containers, whose allocation makes CPython walk all of ComfyUI's
# objects in full garbage collections (1.9-2.7 s loop stalls in benchmarks/load_bench.py).
WORKER_SCAN_BYTES = 2**20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

def error_response(status: int, message: str, code: str = "request_invalid",
                   retry_after: int | None = None) -> web.Response:
    """{"error": what to do, "code": the stable code of fixer/errors.py (the page words codes, not messages)},
    and how long to wait ({"retry_after"} and the Retry-After header) when the refusal says."""
    extra = {"retry_after": retry_after} if retry_after is not None else {}
    return web.json_response({"error": message, "code": code, **extra}, status=status,
                             headers={"Retry-After": str(retry_after)} if retry_after is not None else None)


async def read_body(request: web.Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    from fixer.comfy.web_guard import RequestRefused, json_content_type_reason

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


RawHandler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


def _guarded(fn: Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]],
             *, has_body: bool, max_bytes: int, big_bodies: WaitLine,
             raw_above: tuple[int, RawHandler] | None = None) -> Handler:
    """Refuse callers other than the ComfyUI page, read the JSON body, turn every failure into {"error"}.

    `raw_above` = (size, handler): bodies larger than size go to handler undecoded.
    """
    from fixer.comfy.web_guard import RequestRefused, caller_refusal, decode_body, status_for
    from fixer.constants import CLIENT_HEADER
    from fixer.errors import FixerError

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            refused = caller_refusal(request.headers.get("Origin"), request.headers.get("Host"), request.scheme,
                                     fetch_site=request.headers.get("Sec-Fetch-Site"),
                                     client_header=request.headers.get(CLIENT_HEADER))
            if refused:
                log.warning("comfyfixer: %s %s: %s", request.method, request.path, refused.message)
                raise refused
            length = request.content_length if has_body else 0
            if length is not None and length <= INLINE_DECODE_BYTES:
                raw = await read_body(request, max_bytes) if has_body else b"{}"
                if len(raw) <= INLINE_DECODE_BYTES:
                    return await fn(request, decode_body(raw))
                raise RequestRefused(400, "The request body is longer than its Content-Length.")
            # Big workflows (or bodies of unknown length) go one at a time, read, decoded off the loop
            # and scanned, while a few others wait unread in their sockets (more are refused: 503).
            # Read all at once, every socket read re-takes the GIL from the busy scan thread (up to
            # 5 ms each): with 20 uploads that stalled the loop for over 100 ms.
            async with big_bodies:
                try:  # a stalled upload must not hold the queue of big bodies forever
                    raw = await asyncio.wait_for(read_body(request, max_bytes), BIG_BODY_READ_SECONDS)
                except asyncio.TimeoutError:
                    raise RequestRefused(408, "The request body did not arrive in time; send it again.") from None
                if raw_above is not None and len(raw) > raw_above[0]:
                    return await raw_above[1](request, raw)
                body = await asyncio.to_thread(decode_body, raw)
                try:
                    return await fn(request, body)
                finally:  # freeing it is ~40 ms per 13 MiB: a thread drops it piece by piece
                    await asyncio.to_thread(free_gradually, body)
        except RequestRefused as e:
            return error_response(e.status, e.message, e.code, e.retry_after)
        except FixerError as e:
            return error_response(status_for(e), str(e), e.code)
        except Exception as e:  # the page gets a message; the traceback goes to the ComfyUI log
            log.exception("comfyfixer: %s %s failed", request.method, request.path)
            return error_response(500, f"Internal error in ComfyFixerSmart ({type(e).__name__}: {e}); "
                                       "see the ComfyUI log.", "unexpected")

    handler.__name__ = f"comfyfixer_{fn.__name__}"
    return handler


def add_routes(routes: web.RouteTableDef, get_service: Callable[[], Any], *,
               install_pack: Callable[[str], Awaitable[str | None]] | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, scan_worker: ScanWorker | None = None,
               worker_scan_bytes: int = WORKER_SCAN_BYTES) -> None:
    """Register the /comfyfixer routes of the contract on `routes` (exactly once per table).

    `get_service()` returns the FixerService (created lazily by the caller). `await install_pack(pack_id)`
    queues a node pack install and returns a message, or None when no installer is available
    (default: the ComfyUI-Manager this ComfyUI runs). Scans of bodies over `worker_scan_bytes` run in
    `scan_worker` (default: a worker process started on the first one).

    Each route gets a stand-in; the first request to any of them builds every handler (`handlers`) on the
    event loop's thread, in one synchronous step, so concurrent first requests find them built.
    """
    built: dict[tuple[str, str], Handler] = {}

    def handler_for(method: str, path: str) -> Handler:
        if not built:
            built.update(handlers(get_service, install_pack=install_pack, max_body_bytes=max_body_bytes,
                                  scan_worker=scan_worker, worker_scan_bytes=worker_scan_bytes))
        return built[(method, path)]

    for method, path in ROUTES:
        routes.route(method, PREFIX + path)(_stand_in(method, path, handler_for))


def _stand_in(method: str, path: str, handler_for: Callable[[str, str], Handler]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            real = handler_for(method, path)
        except Exception as e:  # the page gets a message; the traceback goes to the ComfyUI log
            log.exception("comfyfixer: the request handlers could not be loaded")
            return error_response(500, f"ComfyFixerSmart could not load its request handlers ({type(e).__name__}: "
                                       f"{e}); see the ComfyUI log.", "unexpected")
        return await real(request)

    handler.__name__ = f"comfyfixer{path.replace('/', '_')}_{method.lower()}"
    return handler


def handlers(get_service: Callable[[], Any], *, install_pack: Callable[[str], Awaitable[str | None]] | None,
             max_body_bytes: int, scan_worker: ScanWorker | None,
             worker_scan_bytes: int) -> dict[tuple[str, str], Handler]:
    """The handler of each route in ROUTES, by (method, path); see add_routes for the arguments."""
    from fixer.comfy.scan_worker import ScanWorker
    from fixer.comfy.wait_line import WaitLine
    from fixer.comfy.web_guard import (
        RequestRefused,
        field_abs_path,
        field_folder,
        field_items,
        field_model_name,
        field_pack_id,
        field_text,
        field_types,
        field_workflow,
        scan_fields,
    )

    installer = install_pack or comfy_runtime.install_pack
    worker = scan_worker or ScanWorker()
    big_bodies = WaitLine(MAX_BIG_BODIES, MAX_WAITING_BIG_BODIES, what="big workflow")
    table: dict[tuple[str, str], Handler] = {}

    async def scan_in_worker(request: web.Request, raw: bytes) -> web.Response:
        return web.Response(body=await worker.scan(raw, get_service()), content_type="application/json")

    def post(path: str, raw_above: tuple[int, RawHandler] | None = None) -> Callable:
        def deco(fn):
            table[("POST", path)] = _guarded(fn, has_body=True, max_bytes=max_body_bytes, big_bodies=big_bodies,
                                             raw_above=raw_above)
            return fn
        return deco

    def get(path: str) -> Callable:
        def deco(fn):
            table[("GET", path)] = _guarded(fn, has_body=False, max_bytes=max_body_bytes, big_bodies=big_bodies)
            return fn
        return deco

    @post("/scan", raw_above=(worker_scan_bytes, scan_in_worker))
    async def scan(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow, name = scan_fields(body)
        return web.json_response(await get_service().scan(workflow, name))

    @post("/fix")
    async def fix(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow = field_workflow(body)
        name = field_text(body, "name", default="workflow")
        items = field_items(body)
        review = body.get("review") is True  # the panel's "Review before download" setting
        return web.json_response(await get_service().start_fix(workflow, name, items, review=review), status=202)

    @post("/approve")
    async def approve(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(get_service().approve(field_items(body)))

    @post("/discard_partial")
    async def discard_partial(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(get_service().discard_partial(field_model_name(body)))

    @post("/paste_link")
    async def paste_link(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow = field_workflow(body)
        wf_name = field_text(body, "workflow_name", default="workflow")
        name = field_model_name(body)
        link = field_text(body, "link", required=True)
        return web.json_response(await get_service().paste_link(workflow, wf_name, name, link), status=202)

    @get("/status")
    async def status(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(get_service().status())

    @get("/folder_map")
    async def folder_map(request: web.Request, body: dict[str, Any]) -> web.Response:
        # What the scans the user started learned of each node type's folders: never probes a node.
        return web.json_response(get_service().host.folder_maps())

    @post("/folder_map")
    async def probe_folder_map(request: web.Request, body: dict[str, Any]) -> web.Response:
        # The CLI's --server scan asks the folders of the node types its workflows use.
        types = field_types(body)
        return web.json_response(await asyncio.to_thread(get_service().host.folder_maps, types, ask=True))

    @post("/unqueue")
    async def unqueue(request: web.Request, body: dict[str, Any]) -> web.Response:
        # A fix pressed for another workflow while one runs waits its turn: this takes it off the queue.
        return web.json_response(get_service().unqueue(field_text(body, "workflow", required=True)))

    @post("/cancel")
    async def cancel(request: web.Request, body: dict[str, Any]) -> web.Response:
        name = field_model_name(body, required=False)
        return web.json_response(get_service().cancel(name))

    @post("/retry")
    async def retry(request: web.Request, body: dict[str, Any]) -> web.Response:
        name = field_model_name(body)
        url = field_text(body, "url", default=None)
        workflow = field_text(body, "workflow", default=None)  # the workflow the row belongs to
        return web.json_response(await get_service().retry(name, url, workflow))

    @post("/relink")
    async def relink(request: web.Request, body: dict[str, Any]) -> web.Response:
        # The workflow says which bytes the model is (a sha256 it states): other bytes are not linked.
        workflow = field_workflow(body)
        wf_name = field_text(body, "workflow_name", default="workflow")
        name = field_model_name(body)
        folder = field_folder(body)
        path = field_abs_path(body)
        return web.json_response(await get_service().relink(workflow, wf_name, name, folder, path))

    @get("/settings")
    async def settings(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(get_service().settings())

    @post("/settings")
    async def update_settings(request: web.Request, body: dict[str, Any]) -> web.Response:
        from fixer.app.settings import parse_patch  # the settings schema loads on first use, not at start-up

        patch = parse_patch(body)  # refused by name before the service is built
        return web.json_response(get_service().update_settings(patch))

    @post("/portable")
    async def portable(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow = field_workflow(body)
        return web.json_response(await get_service().portable(workflow))

    @post("/lockfile")
    async def lockfile(request: web.Request, body: dict[str, Any]) -> web.Response:
        workflow = field_workflow(body)
        return web.json_response(await get_service().lockfile(workflow))

    @post("/duplicates")  # a POST: a first report hashes every model file, work no GET may start
    async def duplicates(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(await get_service().duplicates())

    @post("/duplicates/fix")
    async def fix_duplicates(request: web.Request, body: dict[str, Any]) -> web.Response:
        return web.json_response(await get_service().duplicates(fix=True))

    @post("/install_pack")
    async def install(request: web.Request, body: dict[str, Any]) -> web.Response:
        pack_id = field_pack_id(body)
        get_service().check_offered_pack(pack_id)  # only what the last scan offered from Manager's map
        message = await installer(pack_id)
        if message is None:
            raise RequestRefused(409, f"ComfyUI-Manager is not running in this ComfyUI, so {pack_id} cannot be "
                                      "installed from here. Start ComfyUI with --enable-manager, or install "
                                      "the pack by hand (see its install commands).", code="manager_missing")
        return web.json_response({"ok": True, "message": message}, status=202)

    return table


# ---------------------------------------------------------------------------------------------
# Inside ComfyUI
# ---------------------------------------------------------------------------------------------

def comfy_links(prompt_server: Any) -> comfy_runtime.ComfyLinks:
    """What the engine needs from this ComfyUI process, read from ComfyUI's own modules."""
    import folder_paths

    try:
        import comfyui_version  # ComfyUI's own module, beside main.py
        version = getattr(comfyui_version, "__version__", None)
    except ImportError:
        version = None
    try:
        from comfy.cli_args import args
        tls = bool(getattr(args, "tls_keyfile", None))
    except ImportError:
        tls = False
    # ComfyUI's `nodes` module, looked up when asked: packs still add classes after this one loads.
    return comfy_runtime.ComfyLinks(server=prompt_server, folder_paths=folder_paths,
                                    node_classes=lambda: sys.modules["nodes"].NODE_CLASS_MAPPINGS,
                                    version=version, tls=tls, import_failures=_import_failures())


def _import_failures() -> Callable[[], dict[str, str]]:
    """Which packs ComfyUI could not import, and why: its warnings kept from now on (packs loading after
    this one, by the process's one handler, fixer.comfy.runtime.import_failure_log), plus its log buffer
    (those before)."""
    from fixer.host.failed_packs import failures_in

    handler = comfy_runtime.import_failure_log()

    def read() -> dict[str, str]:
        try:
            from app.logger import get_logs  # ComfyUI's in-memory log (its last few hundred lines)
            earlier = failures_in(list(get_logs() or []))
        except ImportError:
            earlier = {}
        return {**earlier, **handler.failures}

    return read

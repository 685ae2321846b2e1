"""Core of the fake upstream: fixtures, fault rules, request log, lifecycle. Routes live beside it."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "upstream"


def payload_bytes(p: dict) -> bytes:
    """The byte recipe of tests/data/upstream/README.md."""
    unit = p["seed"].encode()
    if p["recipe"] == "repeat":
        return (unit * (p["size"] // len(unit) + 1))[: p["size"]]
    n = p["n_values"]
    data = (unit * (2 * n // len(unit) + 1))[: 2 * n]
    hdr = json.dumps(
        {"__metadata__": {"fixture": p["seed"]},
         "weight": {"dtype": "F16", "shape": [n], "data_offsets": [0, 2 * n]}},
        separators=(",", ":"),
    ).encode()
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    return struct.pack("<Q", len(hdr)) + hdr + data


UPSTREAM = web.AppKey("upstream", object)  # route handlers find the FakeUpstream here


@dataclass
class Fault:
    """Answer requests whose path matches `path` (regex) with `status` (and headers/body), `times` times.

    `times=None` means forever. `delay` seconds are slept first (latency or a hang). Only requests
    with `method` (None: any) and on `host` (None: any; "localhost" = the CDN name) are matched.
    """

    path: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: int | None = 1
    delay: float = 0.0
    method: str | None = None
    host: str | None = None
    hits: int = 0

    def matches(self, request: web.Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and request.method != self.method:
            return False
        if self.host and request.host.split(":")[0] != self.host:
            return False
        return re.search(self.path, request.path_qs) is not None


CLOUDFLARE_1015 = ("<!DOCTYPE html><html><head><title>Access denied | civitai.com used Cloudflare to restrict "
                   "access</title></head><body><h1>Error 1015</h1><h2>You are being rate limited</h2></body></html>")


def service_of(path: str) -> str | None:
    """Which upstream a request is for (both are served from one port): their limits are separate."""
    if path.startswith(("/api/v1/", "/api/download/", "/red/api/v1/")):
        return "civitai"
    if path.startswith("/api/models") or "/resolve/" in path:
        return "huggingface"
    return None


@dataclass
class RateLimit:
    """Every `every`-th request to `service` answers 429 with Retry-After, as both services do to a client that
    asks too fast (docs/upstream.md, "Refusals"): the Hub with its RateLimit headers, Civitai's edge (Cloudflare)
    with an HTML page. Retry-After may be fractional here so that tests stay fast."""

    service: str  # "huggingface" or "civitai"
    every: int
    retry_after: float = 1.0
    times: int | None = None  # refuse at most this many requests (None: for the whole test)
    seen: int = 0
    hits: int = 0

    def answer(self, request: web.Request) -> web.Response | None:
        if service_of(request.path) != self.service or (self.times is not None and self.hits >= self.times):
            return None
        self.seen += 1
        if self.seen % self.every:
            return None
        self.hits += 1
        wait = f"{self.retry_after:g}"
        if self.service == "huggingface":
            return web.json_response({"error": "You have exceeded our rate limit. Please retry later."}, status=429,
                                     headers={"Retry-After": wait, "RateLimit": f'"api";r=0;t={wait}',
                                              "RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
        return web.Response(status=429, text=CLOUDFLARE_1015, content_type="text/html", headers={"Retry-After": wait})


@dataclass
class LoggedRequest:
    method: str
    host: str
    path_qs: str
    headers: dict[str, str]


class FakeUpstream:
    """Start with `with FakeUpstream() as up:`; `up.hf_endpoint`, `up.civitai_base_url`, `up.cdn_base`."""

    def __init__(self, fixtures: Path = FIXTURES, latency: float = 0.0):
        self.fixtures = fixtures
        self.latency = latency  # seconds added to every request (benchmarks)
        self.faults: list[Fault] = []
        self.rate_limits: list[RateLimit] = []
        self.requests: list[LoggedRequest] = []
        self.state: dict[str, Any] = {}  # route modules keep their own mutable state here
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.payloads: dict[str, dict] = self.load_json("civitai/payloads.json")["payloads"]
        self._payload_cache: dict[str, bytes] = {}

    # fixtures -----------------------------------------------------------
    def load_json(self, rel: str) -> Any:
        return json.loads((self.fixtures / rel).read_text(encoding="utf-8"))

    def payload(self, key: str) -> bytes:
        if key not in self._payload_cache:
            self._payload_cache[key] = payload_bytes(self.payloads[key])
        return self._payload_cache[key]

    # addresses ----------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    hf_endpoint = base
    civitai_base_url = base

    @property
    def red_base(self) -> str:
        """Civitai's red domain (all content); the configured base plays civitai.com."""
        return f"{self.base}/red"

    def civitai_2026(self, green: bool = True, key_required: bool = True) -> None:
        """Civitai as in 2026 (docs/upstream.md): every download needs a key, and the configured domain
        answers searches SFW-only without saying so (`green`) while the red domain serves everything."""
        self.state["civitai_green"] = green
        self.state["civitai_key_required"] = key_required

    @property
    def cdn_base(self) -> str:
        return f"http://localhost:{self.port}"

    def env(self) -> dict[str, str]:
        # HF_HUB_DISABLE_IMPLICIT_TOKEN: a developer's `hf auth login` token never reaches a test or the
        # processes it starts (tests pass the tokens they mean explicitly).
        return {"HF_ENDPOINT": self.base, "CIVITAI_BASE_URL": self.base, "CIVITAI_RED_BASE_URL": self.red_base,
                "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}

    # faults -------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def rate_limit(self, service: str, every: int, retry_after: float = 1.0, times: int | None = None) -> RateLimit:
        """Switch on 429s for one service: every `every`-th request to it is refused (at most `times`)."""
        rule = RateLimit(service, every, retry_after, times)
        self.rate_limits.append(rule)
        return rule

    def clear(self) -> None:
        self.faults.clear()
        self.rate_limits.clear()
        self.requests.clear()

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        self.requests.append(LoggedRequest(request.method, request.host, request.path_qs, dict(request.headers)))
        if self.latency:
            await asyncio.sleep(self.latency)
        for rule in self.rate_limits:
            refused = rule.answer(request)
            if refused is not None:
                return refused
        for fault in self.faults:
            if fault.matches(request):
                fault.hits += 1
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is None:
                    break
                body = fault.body
                if isinstance(body, (dict, list)):
                    return web.json_response(body, status=fault.status, headers=fault.headers)
                return web.Response(status=fault.status, headers=fault.headers, text=body or "")
        return await handler(request)

    # lifecycle ----------------------------------------------------------
    def make_app(self) -> web.Application:
        from . import api_routes, file_routes

        app = web.Application(middlewares=[self._middleware])
        app[UPSTREAM] = self
        file_routes.add_routes(app, self)
        api_routes.add_routes(app, self)
        return app

    def start(self) -> "FakeUpstream":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.make_app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                fut.result(5)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread:
                    self._thread.join(5)

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

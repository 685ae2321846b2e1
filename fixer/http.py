"""Async JSON over HTTP for the resolver: a per-service concurrency limit, timeouts, and retries.

Retries follow what both upstreams ask of clients (upstream-apis.md A.8, B.7): on 429 and 503
wait `Retry-After` when the server gives it (seconds or an HTTP date), otherwise back off
exponentially with full jitter; connection errors and timeouts are retried the same way.
Other answers (401, 404, 400 ...) are returned to the caller, who knows what they mean.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import aiohttp

log = logging.getLogger("fixer.http")

RETRY_STATUSES = frozenset({429, 503, 502, 504})
DOWN_MEMO_SECONDS = 60.0  # how long a service that did not answer is skipped
MAX_RETRY_AFTER = 60.0  # never sleep longer than this on one answer, whatever the server says


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError):
            return None

    def error_text(self) -> str:
        """The server's own words: X-Error-Message, a JSON `error`/`message`, or the first line of text."""
        msg = self.headers.get("X-Error-Message")
        if msg:
            return msg
        data = self.json()
        if isinstance(data, dict):
            for key in ("error", "message"):
                if isinstance(data.get(key), str):
                    return data[key]
        return self.body[:200].decode("utf-8", "replace").strip() or f"HTTP {self.status}"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None when absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def ratelimit_reset_seconds(value: str | None) -> float | None:
    """Seconds until the window resets from the IETF RateLimit header the Hub sends on 429
    (`"api";r=0;t=120`), which huggingface_hub >= 1.2 also honours."""
    m = re.search(r"(?:^|;)\s*t=(\d+(?:\.\d+)?)", value or "")
    return float(m.group(1)) if m else None


def backoff_delay(attempt: int, base: float = 0.25, cap: float = 8.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform(0, min(cap, base*2^attempt))."""
    r = rng or random
    return r.uniform(0, min(cap, base * (2**attempt)))


@dataclass
class HttpClient:
    """One aiohttp session for a resolve run; `service` names the limiter (one per upstream service).

    The limit is per service rather than per host name: Civitai and Hugging Face are separate
    services even when a test serves both from one local port.
    """

    per_service: int = 4
    timeout: float = 20.0
    retries: int = 4
    backoff_base: float = 0.25
    _session: aiohttp.ClientSession | None = None
    _limits: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    # Services that did not answer at all after every retry: the run's other queries to them fail at
    # once for a while (a machine offline would otherwise spend every retry on every model).
    _down: dict[str, tuple[BaseException, float]] = field(default_factory=dict)

    async def __aenter__(self) -> "HttpClient":
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), headers={"User-Agent": "ComfyFixerSmart/0.1"}
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    def _limit(self, service: str) -> asyncio.Semaphore:
        if service not in self._limits:
            self._limits[service] = asyncio.Semaphore(max(1, self.per_service))
        return self._limits[service]

    async def request(
        self,
        service: str,
        method: str,
        url: str,
        *,
        params: Any = None,
        data: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send with retries; returns the last answer. Raises aiohttp.ClientError/TimeoutError when the
        service could not be reached at all after every retry."""
        assert self._session is not None, "use `async with HttpClient()`"
        down = self._down.get(service)
        if down and time.monotonic() - down[1] < DOWN_MEMO_SECONDS:
            raise aiohttp.ClientConnectionError(f"{service} could not be reached a moment ago: {down[0]}")
        attempt = 0
        while True:
            try:
                async with self._limit(service):
                    async with self._session.request(
                        method, url, params=params, data=data, json=json_body, headers=headers, allow_redirects=False
                    ) as resp:
                        reply = Reply(resp.status, resp.headers, await resp.read(), str(resp.url))
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                dns = isinstance(e, getattr(aiohttp, "ClientConnectorDNSError", ())) or isinstance(
                    getattr(e, "os_error", None), socket.gaierror)
                if attempt >= (min(1, self.retries) if dns else self.retries):  # a name rarely resolves seconds later
                    if isinstance(e, aiohttp.ClientConnectionError):
                        self._down[service] = (e, time.monotonic())
                    raise
                delay = backoff_delay(attempt, self.backoff_base)
                log.info("%s %s failed (%s); retry %d in %.2fs", method, url, e.__class__.__name__, attempt + 1, delay)
            else:
                if reply.status not in RETRY_STATUSES or attempt >= self.retries:
                    return reply
                wait = retry_after_seconds(reply.headers.get("Retry-After"))
                if wait is None and reply.status == 429:
                    wait = ratelimit_reset_seconds(reply.headers.get("RateLimit"))
                delay = min(MAX_RETRY_AFTER, wait) if wait is not None else backoff_delay(attempt, self.backoff_base)
                log.info("%s %s answered %d; retry %d in %.2fs", method, url, reply.status, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def get(self, service: str, url: str, **kw: Any) -> Reply:
        return await self.request(service, "GET", url, **kw)

    async def post(self, service: str, url: str, **kw: Any) -> Reply:
        return await self.request(service, "POST", url, **kw)

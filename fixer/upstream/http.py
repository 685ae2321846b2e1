"""The one HTTP policy: retries, backoff, Retry-After, which statuses retry, and what an error answer means.

Used by the resolver's API calls (`HttpClient`), the downloader's pieces and the Download node's
version lookup alike; each use passes its own `RetryPolicy` numbers, the rules are these:
- 429/503 (and the other statuses of `RetryPolicy.statuses`) and connection errors are retried;
  the wait is the server's `Retry-After` (seconds or an HTTP date; on a 429 without it, the Hub's
  `RateLimit: ...;t=<reset>`), else exponential backoff with jitter (docs/upstream.md, "Refusals");
- a server asking for longer than `max_retry_after` is not waited for: the call fails at once
  with a message saying how long it asked and what to do, instead of hanging the run;
- every other error answer becomes one typed error with the fix in its message (`http_error`,
  modelled on huggingface_hub's `hf_raise_for_status`): 401 -> AuthRequired "set a token",
  gated -> "accept the license at <repo page>", 404 -> NotFoundUpstream, 429 -> RateLimited.
A server's own words are quoted at most one line long and never as HTML (`server_message`).
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
from typing import Any, AsyncIterator, Callable, Mapping

import aiohttp

from ..constants import hf_offline
from ..errors import AuthRequired, DownloadError, FixerError, NotFoundUpstream, RateLimited, TokenName
from .services import SERVICES

log = logging.getLogger("fixer.upstream.http")

# What the resolver's API calls retry; a 500 from an API is an answer, not a hiccup.
API_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# What a file transfer retries: CDNs and storage hosts also answer 408/425/500 on a bad moment.
TRANSFER_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DOWN_MEMO_SECONDS = 60.0  # how long a service that did not answer is skipped
MESSAGE_LIMIT = 200  # characters of a server's own words quoted in a message


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one kind of call retries. Numbers differ per use; the rules do not."""

    retries: int = 5
    base: float = 1.0  # first backoff, doubled per attempt
    cap: float = 30.0
    max_retry_after: float = 120.0  # a server asking for longer is not waited for: the call fails at once
    statuses: frozenset[int] = TRANSFER_RETRY_STATUSES

    def delay(self, attempt: int, retry_after: float | None = None,
              rand: Callable[[], float] = random.random) -> float:
        """Seconds before retry number `attempt` (0-based): the server's wait wins, else backoff with jitter."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        jitter: float = 0.5 + rand() / 2
        return min(self.cap, self.base * 2.0**attempt) * jitter


API_RETRY = RetryPolicy(retries=4, base=0.25, cap=8.0, max_retry_after=60.0, statuses=API_RETRY_STATUSES)


def retry_delay(attempt: int, retry_after: float | None, policy: RetryPolicy,
                rand: Callable[[], float] = random.random) -> float:
    return policy.delay(attempt, retry_after, rand)


def backoff_delay(attempt: int, base: float = 0.25, cap: float = 8.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base*2^attempt)."""
    return RetryPolicy(base=base, cap=cap).delay(attempt, None, (rng or random).random)


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


def asked_wait(status: int, headers: Mapping[str, str]) -> float | None:
    """How long the server asked us to wait before asking again, if it said."""
    wait = retry_after_seconds(headers.get("Retry-After"))
    if wait is None and status == 429:
        wait = ratelimit_reset_seconds(headers.get("RateLimit"))
    return wait


def server_message(headers: Mapping[str, str], body: bytes | str) -> str:
    """The server's own words, one short line: X-Error-Message, a JSON `message`/`error`, or plain text.
    Never an HTML page (a proxy's or CDN's error page says nothing a person can act on)."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else (body or "")
    said = headers.get("X-Error-Message") or ""
    if not said:
        try:
            data = json.loads(text) if text.lstrip()[:1] in ("{", "[") else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            said = next((data[k] for k in ("message", "error") if isinstance(data.get(k), str)), "")
        elif not re.search(r"<\s*(html|body|head|!doctype|div|p|h1|title)\b", text[:2000], re.I):
            said = text
    said = " ".join(said.split())
    return said if len(said) <= MESSAGE_LIMIT else said[: MESSAGE_LIMIT - 1] + "…"


def http_error(status: int, headers: Mapping[str, str], body: bytes | str, *, what: str, service: str | None,
               has_token: bool, host: str = "", repo: str = "", repo_page: str = "") -> FixerError:
    """The typed error for an error answer, with what to do in its message.

    `service` is "huggingface", "civitai" or None (another host, named by `host`); `what` names the thing
    asked for ("flux.safetensors in org/repo", "Model version 12"); `repo` and `repo_page` the HF repo.
    """
    known = SERVICES.get(service or "")
    label = known.label if known else host or "the server"
    token = known.token if known else None
    message = server_message(headers, body)
    where = service or host or None
    if status in (429, 503):
        return rate_limited(label, status, asked_wait(status, headers), what, token if not has_token else None,
                            service=where)
    if service == "huggingface":
        repo = repo or "the repo"
        page = repo_page or "its page on the Hub"
        if headers.get("X-Error-Code") == "GatedRepo":
            who = "the account of HF_TOKEN has not been granted access yet" if has_token else "no HF_TOKEN is set"
            return AuthRequired(label, f"{repo} is a gated repo and {who}: accept its license at {page} while "
                                "signed in, then set HF_TOKEN to a token of that account", code="license_required",
                                needs_token="HF_TOKEN", license_url=repo_page or None, service=service, status=status)
        if status in (401, 403):
            if headers.get("X-Error-Code") == "RepoNotFound" or not has_token:
                return AuthRequired(label, f"{repo} is private or does not exist; check the URL, and if it is "
                                    "private set HF_TOKEN to a token with access", code="private_or_missing",
                                    needs_token="HF_TOKEN", service=service, status=status)
            return AuthRequired(label, f"HF_TOKEN was rejected ({message or status}); create a new read token "
                                "at huggingface.co/settings/tokens", code="token_rejected", needs_token="HF_TOKEN",
                                service=service, status=status)
    if service == "civitai":
        if status == 401:
            remedy = ("the CIVITAI_API_KEY was rejected: it is invalid or expired; create a new key in Civitai's "
                      "account settings" if has_token else
                      "this file needs a Civitai account: set CIVITAI_API_KEY (Civitai account settings, API keys)")
            return AuthRequired(label, f"{remedy} ({message})" if message else remedy,
                                code="token_rejected" if has_token else "login_required",
                                needs_token="CIVITAI_API_KEY", service=service, status=status)
        if status == 403:
            text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else (body or "")
            if "early access" in text.lower():  # Civitai's own answer (not ours): the only sign of Early Access
                deadline = re.search(r'"deadline"\s*:\s*"([^"]+)"', text)
                until = f" until {deadline.group(1)}" if deadline else ""
                return AuthRequired(label, f"this version is in Early Access{until}; buy access on its Civitai "
                                    "page with the account of CIVITAI_API_KEY, or choose another version",
                                    code="early_access", needs_token=None if has_token else "CIVITAI_API_KEY",
                                    service=service, status=status)
            return AuthRequired(label, f"your account has no access to this file ({message or 'forbidden'}); "
                                "check that CIVITAI_API_KEY belongs to an account that may download it",
                                code="no_access", needs_token=None if has_token else "CIVITAI_API_KEY",
                                service=service, status=status)
        if status == 410:
            return DownloadError(f"Civitai: {what} is archived and no longer downloadable ({message})",
                                 code="archived", service=service, status=status)
    if status in (401, 403):
        return AuthRequired(label, f"HTTP {status} ({message or 'access denied'}); this host needs credentials "
                            "the fixer does not have", code="no_access", service=where, status=status)
    if status in (404, 410):
        return NotFoundUpstream(label, what, service=where, status=status)
    return DownloadError(f"{what}: {label} answered HTTP {status} ({message or 'no message'})",
                         code="server_error" if status >= 500 else "http_error", service=where, status=status)


def rate_limited(label: str, status: int, wait: float | None, what: str, token: TokenName | None,
                 service: str | None = None) -> RateLimited:
    """RateLimited: how long the server asked to wait (if it said), for what, and what to do."""
    why = "rate limit" if status == 429 else "service busy"
    remedy = "try again later" + (f" or add a token ({token})" if token else "")
    return RateLimited(label, why, wait, what, remedy, service=service, token_helps=token)


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
        """The server's own words (`server_message`), or `HTTP <status>` when it gave none."""
        return server_message(self.headers, self.body) or f"HTTP {self.status}"


def next_link(link: str | None) -> str | None:
    """The `rel="next"` URL of a `Link` header (how the Hub pages lists, as huggingface_hub follows them)."""
    m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link or "")
    return m.group(1) if m else None


@dataclass
class HttpClient:
    """One aiohttp session for a resolve run; `service` names the limiter (one per upstream service).

    The limit is per service rather than per host name: Civitai and Hugging Face are separate
    services even when a test serves both from one local port.
    """

    per_service: int = 4
    timeout: float = 20.0
    retries: int = API_RETRY.retries
    backoff_base: float = API_RETRY.base
    _session: aiohttp.ClientSession | None = None
    _limits: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    # Services that did not answer at all after every retry: the run's other queries to them fail at
    # once for a while (a machine offline would otherwise spend every retry on every model).
    _down: dict[str, tuple[BaseException, float]] = field(default_factory=dict)

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(retries=self.retries, base=self.backoff_base, cap=API_RETRY.cap,
                           max_retry_after=API_RETRY.max_retry_after, statuses=API_RETRY.statuses)

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
        """Send with retries; returns the last answer (also one asking to wait longer than the policy's
        cap, at once). Raises aiohttp.ClientError/TimeoutError when the service could not be reached at
        all after every retry."""
        assert self._session is not None, "use `async with HttpClient()`"
        if service == "huggingface" and hf_offline():
            raise aiohttp.ClientConnectionError("HF_HUB_OFFLINE is set: no request is sent to Hugging Face "
                                                "(unset it to search the Hub)")
        policy = self.retry
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
                if attempt >= (min(1, policy.retries) if is_dns_failure(e) else policy.retries):
                    if isinstance(e, aiohttp.ClientConnectionError):
                        self._down[service] = (e, time.monotonic())
                    raise
                delay = policy.delay(attempt)
                log.info("%s %s failed (%s); retry %d in %.2fs", method, url, e.__class__.__name__, attempt + 1, delay)
            else:
                wait = asked_wait(reply.status, reply.headers)
                if reply.status not in policy.statuses or attempt >= policy.retries or (
                        wait is not None and wait > policy.max_retry_after):
                    return reply
                delay = policy.delay(attempt, wait)
                log.info("%s %s answered %d; retry %d in %.2fs", method, url, reply.status, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def get(self, service: str, url: str, **kw: Any) -> Reply:
        return await self.request(service, "GET", url, **kw)

    async def post(self, service: str, url: str, **kw: Any) -> Reply:
        return await self.request(service, "POST", url, **kw)

    async def pages(self, service: str, url: str, *, params: Any = None, headers: Mapping[str, str] | None = None,
                    max_pages: int | None = None) -> AsyncIterator[Reply]:
        """GET `url` and each `Link: rel="next"` page after it (the query is in the next link); stops after
        an error answer (yielded, for the caller to report) or `max_pages`."""
        pages = 0
        next_url: str | None = url
        while next_url and (max_pages is None or pages < max_pages):
            reply = await self.get(service, next_url, params=params, headers=headers)
            pages += 1
            yield reply
            if not reply.ok:
                return
            next_url, params = next_link(reply.headers.get("Link")), None


def is_dns_failure(e: BaseException) -> bool:
    """The host name did not resolve (it rarely starts resolving seconds later: retry once at most)."""
    dns_error = getattr(aiohttp, "ClientConnectorDNSError", None)  # aiohttp >= 3.10
    return (dns_error is not None and isinstance(e, dns_error)) or isinstance(
        getattr(e, "os_error", None) or e.__cause__, socket.gaierror)


STATUS_WORDS = {401: "refused without a login", 403: "refused", 404: "not found", 429: "rate limited",
                500: "server error", 502: "bad gateway", 503: "unavailable", 504: "gateway timeout"}


def said(reply: Reply) -> str:
    """What a server said, fit to show a person (callers add "(HTTP <status>)"): its own words, never an
    HTML or XML page (Cloudflare and storage hosts answer errors with markup), else what the status means."""
    return server_message(reply.headers, reply.body) or STATUS_WORDS.get(reply.status, "no message")

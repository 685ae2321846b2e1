"""The download protocol: what the server's answers mean, the errors between attempts, and the connection guard.

- `remote_of`: size, range support and validator from the probe (HF's X-Linked-Etag/-Size on the redirect);
- `Retryable` / `LinkExpired` / `ValidatorChanged`: what the engine does next (retry, renew the signed
  link, start over); a final refusal becomes the typed error of fixer.upstream.http's mapper (`refusal`);
- `open_session`: the one aiohttp session of a queue, whose resolver checks every address a name
  resolves to before connecting (policy.check_address), on every hop and every connection.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from typing import Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ..constants import hf_endpoint
from ..errors import ErrorCode, FixerError
from ..upstream.http import http_error
from ..upstream.services import service_of_token
from ..upstream.source_spec import parse_hf_url
from .policy import check_address, redact, token_name_for
from .settings import READ_BUFSIZE, USER_AGENT

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


class Retryable(Exception):
    """A failure worth another try (network, 5xx, 429, stall)."""

    def __init__(self, message: str, retry_after: float | None = None, unreachable: bool = False,
                 dns: bool = False, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable  # no answer at all (connection or name resolution failed)
        self.dns = dns
        self.status = status  # the HTTP status that asked for the retry, if one did

    @property
    def code(self) -> ErrorCode:
        """What it is when no retry is left."""
        if self.unreachable:
            return "unreachable"
        return _RETRY_CODES.get(self.status or 0, "server_error" if self.status else "interrupted")


_RETRY_CODES: dict[int, ErrorCode] = {429: "rate_limited", 503: "service_busy"}


class LinkExpired(Exception):
    """The storage/CDN host refused a signed link (they expire, e.g. after an hour): resolve it again."""


class ValidatorChanged(Exception):
    """The remote file is not the one the bytes on disk came from: start over."""


@dataclass
class Remote:
    """What the probe learned about the remote file."""

    url: str  # after redirects; pieces are fetched from here
    total: int | None
    ranges: bool
    validator: str | None
    if_range: str | None  # a strong ETag, sent as If-Range so a changed file answers 200
    etag: str | None
    linked_size: int | None
    linked_sha256: str | None = None  # HF's X-Linked-Etag of an LFS file is its sha256


def strip_etag(value: str | None) -> str | None:
    if not value:
        return None
    return value.strip().removeprefix("W/").strip('"') or None


def content_range_total(value: str | None) -> tuple[int, int | None] | None:
    """(start, total) from `bytes START-END/TOTAL`."""
    m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", value or "")
    if not m:
        return None
    return int(m.group(1)), (int(m.group(3)) if m.group(3) != "*" else None)


def remote_of(resp: aiohttp.ClientResponse, hops: Sequence[Mapping[str, str]]) -> Remote:
    """What the answer to `GET Range: bytes=0-` (and the redirects before it) tells about the file."""
    linked_etag = next((strip_etag(h.get("X-Linked-Etag")) for h in hops if h.get("X-Linked-Etag")), None)
    linked_size = next((int(h["X-Linked-Size"]) for h in hops if (h.get("X-Linked-Size") or "").isdigit()), None)
    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("identity", "")
    total: int | None = None
    ranges = False
    if resp.status == 206 and not encoded:
        cr = content_range_total(resp.headers.get("Content-Range"))
        if cr is None or cr[0] != 0:
            resp.close()
            raise Retryable("the server answered a range request with a malformed Content-Range")
        total, ranges = cr[1], cr[1] is not None
    elif not encoded and resp.content_length is not None:
        total = resp.content_length
    etag_raw = resp.headers.get("ETag")
    etag = strip_etag(etag_raw)
    strong = etag_raw if etag_raw and not etag_raw.startswith("W/") else None
    validator = linked_etag or etag or resp.headers.get("Last-Modified")
    linked_sha256 = linked_etag.lower() if linked_etag and re.fullmatch(r"[0-9a-fA-F]{64}", linked_etag) else None
    return Remote(url=str(resp.url), total=total, ranges=ranges, validator=validator, if_range=strong, etag=etag,
                  linked_size=linked_size, linked_sha256=linked_sha256)


def refusal(status: int, headers: Mapping[str, str], body: bytes, start_url: str, label: str, source: str,
            secrets: Mapping[str, str]) -> FixerError:
    """The specific, actionable error for a refusal of `start_url` (fixer.upstream.http's mapper, told which
    file and repo)."""
    token = token_name_for(start_url, source)
    owner = service_of_token(token)
    service = owner.key if owner else ""
    what, repo, page = f"{label} ({redact(start_url)})", "", ""
    if service == "huggingface":
        hf = parse_hf_url(start_url, hf_endpoint())
        repo = hf[0] if hf else "/".join([p for p in urlsplit(start_url).path.split("/") if p][:2])
        page = f"{hf_endpoint()}/{repo}" if repo else hf_endpoint()
        what = f"{hf[2] if hf else label} in {repo}"
    elif service == "civitai" and status == 410:
        what = label
    return http_error(status, headers, body, what=what, service=service, has_token=bool(token and secrets.get(token)),
                      host=str(urlsplit(start_url).hostname), repo=repo, repo_page=page)


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to addresses a download must never reach."""

    def __init__(self, extra_hosts: list[str] | tuple[str, ...] = ()):
        self._inner = DefaultResolver()
        self._extra = tuple(extra_hosts)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            check_address(host, r["host"], self._extra)
        return results

    async def close(self) -> None:
        await self._inner.close()


def open_session(extra_hosts: list[str] | tuple[str, ...], timeout: float,
                 connections: int = 4) -> aiohttp.ClientSession:
    """The session downloads share: per-read timeouts, `connections` sockets at most, the guarded resolver."""
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections,
                                     resolver=GuardedResolver(extra_hosts))
    per_read = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
    return aiohttp.ClientSession(timeout=per_read, connector=connector, read_bufsize=READ_BUFSIZE,
                                 headers={"User-Agent": USER_AGENT})


def describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out waiting for data"
    text = str(e) or type(e).__name__
    return re.sub(r"https?://[^\s'\"<>]+", lambda m: redact(m.group(0)), text)  # no tokens or signatures

"""How big a file is before it is downloaded: the review's totals are exact when a source did not say.

One HEAD request, redirects followed by hand with the downloads' own rules (each hop
checked, the token only on its own origin); the size comes from Content-Range, a redirect's
X-Linked-Size (Hugging Face LFS) or Content-Length. Never raises: an unknown size is None.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin

import aiohttp

from ..config import DownloadConfig
from ..errors import FixerError
from .policy import auth_headers, check_redirect, check_start_url, strip_secret_query, with_url_token
from .protocol import REDIRECT_STATUS, content_range_total, open_session
from .settings import MAX_REDIRECTS

log = logging.getLogger(__name__)
PROBE_SECONDS = 15.0  # a review waits for these; a slow host gives "unknown size", not a stuck panel


async def remote_size(url: str, secrets: dict[str, str], config: DownloadConfig, source: str = "") -> int | None:
    """The byte size of the file at `url`, or None when the server does not say or cannot be reached."""
    try:
        check_start_url(url, config.extra_allowed_hosts)
        async with open_session(config.extra_allowed_hosts, min(config.timeout_seconds, PROBE_SECONDS), 2) as session:
            return await asyncio.wait_for(_size(session, url, secrets, config, source), PROBE_SECONDS)
    except (FixerError, aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
        log.info("size of %s unknown: %s", strip_secret_query(url), e)
        return None


async def _size(session: aiohttp.ClientSession, url: str, secrets: dict[str, str], config: DownloadConfig,
                source: str) -> int | None:
    start = strip_secret_query(url)
    secrets = with_url_token(url, secrets, source)
    url = start
    for _ in range(MAX_REDIRECTS + 1):
        headers = {"Accept-Encoding": "identity", **auth_headers(url, secrets, start, source)}
        async with session.head(url, headers=headers, allow_redirects=False) as resp:
            if resp.status in REDIRECT_STATUS and "Location" in resp.headers:
                linked = resp.headers.get("X-Linked-Size", "")
                if linked.isdigit():
                    return int(linked)
                location = urljoin(url, resp.headers["Location"])
                check_redirect(url, location, config.extra_allowed_hosts)
                url = location
                continue
            if resp.status == 206:
                cr = content_range_total(resp.headers.get("Content-Range"))
                return cr[1] if cr else None
            if resp.status == 200 and resp.headers.get("Content-Encoding", "identity").lower() in ("identity", ""):
                return resp.content_length
            return None
    return None

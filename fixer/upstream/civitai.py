"""The Civitai API client: its hosts, its key, its calls, and what a version says about its files.

Civitai in 2026 (docs/upstream.md): every model download needs an API key, sent only as
`Authorization: Bearer` (a `?token=` URL lands in access logs); civitai.com may answer SFW-only without
saying so while civitai.red serves everything, the API answering on both; many sha256 hashes are looked up
in one `POST /api/v1/model-versions/by-hash`; an AIR may end in `+<fileId>`; files carry pickle and virus
scan results, versions early-access dates.

The host table: the configured base (CIVITAI_BASE_URL, default https://civitai.com) and the red domain
(CIVITAI_RED_BASE_URL, by default https://civitai.red when the base is civitai.com; empty turns it off).
The key goes to these hosts only, and downloads always start on the configured base: a download link a
red answer carries is moved there (the API is the same; the download policy knows that origin).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..constants import civitai_base_url
from ..errors import NotFoundUpstream, UpstreamError
from ..read.clues import AIR
from .http import HttpClient, Reply, http_error
from .services import CIVITAI
from .source_spec import SourceSpec

RED_DEFAULT = "https://civitai.red"
GREEN_HOSTS = CIVITAI.hosts  # the service table's: link parsing, downloads and tokens agree on them
KEY_NAME = CIVITAI.token
BATCH_LIMIT = 100  # sha256 values per POST /model-versions/by-hash
_FAILED_SCAN = {"Danger": "found something dangerous", "Error": "could not check it"}


def red_url(base: str | None = None) -> str | None:
    """The red domain's base, or None: CIVITAI_RED_BASE_URL when set (empty: none), else civitai.red for
    the public civitai.com and nothing for any other configured host (a mirror, a test's fake)."""
    env = os.environ.get("CIVITAI_RED_BASE_URL")
    if env is not None:
        return env.strip().rstrip("/") or None
    host = (urlsplit(base or civitai_base_url()).hostname or "").lower()
    return RED_DEFAULT if host in GREEN_HOSTS else None


def key_headers(secrets: Mapping[str, str]) -> dict[str, str]:
    """The key as a header, the only way it is ever sent."""
    key = secrets.get(KEY_NAME)
    return {"Authorization": f"Bearer {key}"} if key else {}


def on_base(url: str, base: str, red: str | None) -> str:
    """A download link from a red answer, moved to the configured base (same API, the origin downloads use)."""
    if not red or not url:
        return url
    r, u, b = urlsplit(red), urlsplit(url), urlsplit(base)
    if (u.scheme, u.netloc) != (r.scheme, r.netloc):
        return url
    path = u.path[len(r.path):] if r.path and u.path.startswith(r.path) else u.path
    return urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + path, u.query, u.fragment))


@dataclass(frozen=True)
class Air:
    ecosystem: str
    type: str
    model_id: int
    version_id: int
    file_id: int | None


def parse_air(text: str) -> Air | None:
    m = AIR.fullmatch(text.strip())
    if not m:
        return None
    return Air(m.group("base").lower(), m.group("type").lower(), int(m.group("model")), int(m.group("version")),
               int(m.group("file")) if m.group("file") else None)


def scan_refusal(file: Mapping[str, Any]) -> str | None:
    """Why a file must not be downloaded: Civitai's pickle or virus scan failed on it; None otherwise."""
    for key, what in (("pickleScanResult", "pickle scan"), ("virusScanResult", "virus scan")):
        result = str(file.get(key) or "")
        if result in _FAILED_SCAN:
            said = file.get(key.replace("Result", "Message"))
            detail = f" ({str(said)[:120]})" if isinstance(said, str) and said else ""
            return f"Civitai's {what} {_FAILED_SCAN[result]} in {file.get('name')}{detail}: refused"
    return None


def early_access_until(version: Mapping[str, Any], now: datetime | None = None) -> str | None:
    """The date a version's early access ends (ISO, as Civitai gives it) while it lasts, else None."""
    ends = version.get("earlyAccessEndsAt")
    if not isinstance(ends, str) or not ends:
        return "unknown" if version.get("availability") == "EarlyAccess" else None
    try:
        when = datetime.fromisoformat(ends.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return ends[:10] if when > (now or datetime.now(timezone.utc)) else None


def new_session(timeout: float = 20.0, per_service: int = 4, retries: int = 4) -> HttpClient:
    """The one place a Civitai session is made outside a resolve run (which shares its own)."""
    return HttpClient(per_service=per_service, timeout=timeout, retries=retries)


async def by_hash_batch(http: HttpClient, base: str, secrets: Mapping[str, str],
                        hashes: list[str]) -> tuple[dict[str, dict[str, Any]], Reply | None]:
    """sha256 (lower case) -> version body, for many hashes in as few requests as the limit allows; the first
    refusal is returned beside what was found (the caller falls back to one lookup per hash)."""
    found: dict[str, dict[str, Any]] = {}
    wanted = sorted({h.lower() for h in hashes if len(h) == 64})
    for i in range(0, len(wanted), BATCH_LIMIT):
        chunk = wanted[i:i + BATCH_LIMIT]
        reply = await http.post("civitai", f"{base}/api/v1/model-versions/by-hash", headers=key_headers(secrets),
                                json_body=[h.upper() for h in chunk])
        if not reply.ok:
            return found, reply
        body = reply.json()
        for version in body if isinstance(body, list) else []:
            if not isinstance(version, dict):
                continue
            for f in version.get("files") or []:
                sha = str(((f or {}).get("hashes") or {}).get("SHA256") or "").lower()
                if sha in chunk:
                    found.setdefault(sha, version)
    return found, None


def fetch_civitai_version(spec: SourceSpec, token: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
    """`civitai_version` from CIVITAI_BASE_URL on a session of its own; synchronous for the Download node and
    `get`, which call it outside any event loop."""

    async def run() -> dict[str, Any]:
        async with new_session(timeout=timeout) as http:
            return await civitai_version(http, spec, civitai_base_url(), {KEY_NAME: token} if token else {})

    return asyncio.run(run())


async def civitai_version(http: HttpClient, spec: SourceSpec, base: str, secrets: Mapping[str, str]) -> dict[str, Any]:
    """GET /api/v1/model-versions/<id> (or the model's newest version): retried and its refusals mapped as
    every other upstream call is (fixer.upstream.http)."""
    headers, has_token = key_headers(secrets), bool(secrets.get(KEY_NAME))

    async def get(path: str, what: str) -> dict[str, Any]:
        try:
            reply = await http.get("civitai", base + path, headers=headers)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise UpstreamError("Civitai", f"cannot reach {base}: {e or type(e).__name__}. Check the network and "
                                "retry.", code="unreachable", service="civitai") from None
        if not reply.ok:
            raise http_error(reply.status, reply.headers, reply.body, what=what, service="civitai",
                             has_token=has_token)
        body = reply.json()
        if not isinstance(body, dict):
            raise UpstreamError("Civitai", f"{what}: the answer was not a JSON object", reply.status, service="civitai")
        return body

    version_id = spec.version_id
    if version_id is None:
        model = await get(f"/api/v1/models/{spec.model_id}", f"Model {spec.model_id}")
        versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict) and v.get("id")]
        if not versions:
            raise NotFoundUpstream("Civitai", f"A version of model {spec.model_id}", service="civitai")
        version_id = int(versions[0]["id"])  # Civitai lists the newest version first
    return await get(f"/api/v1/model-versions/{version_id}", f"Model version {version_id}")

"""The workflow's own hints: `models[]` / `properties.models` entries and Note URLs (the scan turns both
into ModelHint). A hint is checked against the service it points to when it can be (Hugging Face
paths-info, Civitai model version), so a dead link falls through to the other sources instead of
becoming a failed download.

A `models[]` entry pairs a name with a URL: that URL is the file, saved under the entry's name even when
the URL's own file name differs (the frontend does the same; Note URLs only ever attach by file name).
When the Hub API does not answer for a link (a mirror without `/api`), the file URL itself answering a
HEAD is enough. Civitai AIR URNs (`urn:air:<base>:<type>:civitai:<model>@<version>`) name a version.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote, urlsplit

import aiohttp

from ..constants import hf_offline, map_legacy
from ..errors import HostNotAllowed
from ..models import Candidate, ModelHint, ModelRef
from ..read.clues import AIR
from ..transfer.policy import check_start_url
from ..upstream.civitai import parse_air
from ..upstream.http import said
from ..upstream.hub import OFFLINE_NOTE, gated_note, lfs_facts, paths_info, repo_gated, resolve_url
from ..upstream.source_spec import parse_hf_url
from .base import CONFIDENCE, Found, SearchRun
from .civitai import file_matches, version_candidate
from .family import family_of_air

_CIVITAI_DOWNLOAD = re.compile(r"/api/download/models/(\d+)")
_CIVITAI_PAGE = re.compile(r"/models/(\d+)")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# paths_info's words when the Hub answered for the file (anything else: the API did not answer, e.g. a mirror)
# (fixer.upstream.http's refusals all say "refused"; a bare 404 may be a mirror without the API: its file is asked for)
_CIVITAI_SHORT = re.compile(r"^civitai:(?:\d+@)?(\d+)$", re.I)


def _civitai_version_id(url: str, base: str) -> str | None:
    short = AIR.fullmatch(url.strip()) or _CIVITAI_SHORT.match(url.strip())
    if short:
        return short.group("version") if "version" in short.groupdict() else short.group(1)
    parts = urlsplit(url)
    if not (parts.netloc.endswith("civitai.com") or parts.netloc == urlsplit(base).netloc):
        return None
    m = _CIVITAI_DOWNLOAD.search(parts.path)
    if m:
        return m.group(1)
    v = re.search(r"modelVersionId=(\d+)", parts.query)
    return v.group(1) if v and _CIVITAI_PAGE.search(parts.path) else None


def short_id(url: str) -> bool:
    """An AIR URN or `civitai:<id>`: names a version, not a file, and may come for the whole workflow."""
    return bool(AIR.fullmatch(url.strip()) or _CIVITAI_SHORT.match(url.strip()))


class EmbeddedSource:
    name = "embedded"

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        hints = [h for h in ref.hints if h.url]
        if not hints:
            found.tried.append("workflow hints: none carry a URL")
            return found
        for h in hints:
            run.searched(ref, f"the workflow's link {h.url}")
            try:
                cand = await self._check(ref, run, h, found)
            except (aiohttp.ClientError, TimeoutError) as e:
                cand = self._plain(ref, h, f"could not check it ({e.__class__.__name__})")
            if cand:
                found.candidates.append(cand)
        return found

    def _folder(self, ref: ModelRef, h: ModelHint) -> str | None:
        return ref.folder or (map_legacy(h.directory) if h.directory else None)

    def _plain(self, ref: ModelRef, h: ModelHint, note: str, conf: float | None = None, size: int | None = None,
               sha256: str | None = None) -> Candidate:
        """A URL no service API vouches for. The scan pairs Note URLs by file name and models[] entries by
        their own name, so the link is this file even when its last path part reads otherwise."""
        url_name = unquote(urlsplit(h.url or "").path.rsplit("/", 1)[-1])
        conf = CONFIDENCE["embedded"] if conf is None else conf
        folder = self._folder(ref, h)
        reason = f"the workflow gives this URL ({note})"
        if url_name != ref.basename:
            reason += f"; saved as {ref.basename}, the name the workflow pairs with it"
        if folder is None:
            conf, reason = min(conf, CONFIDENCE["contested"]), reason + "; the model folder is unknown"
        is_sha256 = (h.hash_type or "sha256").lower() == "sha256" and len(h.hash or "") == 64
        want = (h.hash or "").lower() if is_sha256 else None
        return Candidate(source="embedded", filename=ref.name, folder=folder, confidence=conf, reason=reason,
                         url=h.url, size=size, sha256=sha256 or want)

    async def _head(self, ref: ModelRef, run: SearchRun, h: ModelHint, found: Found, why: str) -> Candidate | None:
        """Check a link by asking for the file itself (HEAD, redirects not followed): a 2xx or a redirect is a
        file there (with its size and sha256 when the Hub's headers say), 401/403/404/410 a dead link."""
        url = h.url or ""
        try:
            check_start_url(url)
        except HostNotAllowed:
            # Never ask a host the download guard does not know; the download itself applies the user's
            # extra allowed hosts (download.extra_allowed_hosts) and refuses the rest with the reason.
            return self._plain(ref, h, f"{why}, not checked")
        reply = await run.http.request("huggingface" if parse_hf_url(url, run.hf_endpoint) else "links", "HEAD", url)
        run.history.record("links", f"HEAD {url}", f"HTTP {reply.status}", ref.name)
        if reply.status in (401, 403, 404, 410):
            found.tried.append(f"workflow hint {url}: {why}, and the file URL answers HTTP {reply.status} "
                               f"({'not found' if reply.status in (404, 410) else 'refused without a login'})")
            return None
        if not (200 <= reply.status < 400):
            return self._plain(ref, h, f"{why}; the file URL answers HTTP {reply.status}, not checked")
        length = reply.headers.get("Content-Length") if reply.status < 300 else None
        size = reply.headers.get("X-Linked-Size") or length
        etag = (reply.headers.get("X-Linked-Etag") or "").strip('"').lower()
        return self._plain(ref, h, f"{why}; the file URL answers",
                           size=int(size) if size is not None and size.isdigit() else None,
                           sha256=etag if _SHA256.match(etag) else None)

    async def _check(self, ref: ModelRef, run: SearchRun, h: ModelHint, found: Found) -> Candidate | None:
        url = h.url or ""
        hf = parse_hf_url(url, run.hf_endpoint)
        want_sha = (h.hash or "").lower() if len(h.hash or "") == 64 else None
        if hf and hf_offline():
            found.tried.append(f"workflow hint {url}: {OFFLINE_NOTE}")
            return None
        if hf:
            repo_id, rev, path = hf
            info, gated = await asyncio.gather(paths_info(run, repo_id, path, rev), repo_gated(run, repo_id))
            run.history.record("huggingface", f"hint {repo_id}/{path}", "exists" if info.entry else info.error,
                               ref.name)
            if info.entry is None:
                if info.verdict:  # the Hub itself said no
                    found.tried.append(f"workflow hint {url}: {info.error}")
                    return None
                return await self._head(ref, run, h, found, f"the Hub API did not vouch for it ({info.error})")
            size, sha = lfs_facts(info.entry)
            if want_sha and sha and sha != want_sha:
                found.tried.append(f"workflow hint {url}: the file there has another sha256 than the hint says")
                return None
            reason = f"the workflow's own link: {path} in {repo_id}"
            conf = CONFIDENCE["hash_match"] if want_sha and sha == want_sha else CONFIDENCE["embedded"]
            folder = self._folder(ref, h)
            if folder is None:
                conf, reason = CONFIDENCE["contested"], reason + "; the model folder is unknown"
            if gated:
                reason += "; " + gated_note(run, repo_id)
            return Candidate(source="embedded", filename=ref.name, folder=folder, confidence=conf, reason=reason,
                             url=resolve_url(run.hf_endpoint, repo_id, path, rev), size=size, sha256=sha or want_sha,
                             gated=gated, needs_token="HF_TOKEN" if gated else None,
                             ids={"repo_id": repo_id, "path": path, "revision": rev})
        vid = _civitai_version_id(url, run.civitai_base)
        if vid:
            reply = await run.http.get("civitai", f"{run.civitai_base}/api/v1/model-versions/{vid}",
                                       headers=run.civitai_headers())
            run.history.record("civitai", f"hint version {vid}", "exists" if reply.ok else f"HTTP {reply.status}",
                               ref.name)
            if not reply.ok:
                found.note_reply("civitai", reply.status)
                found.tried.append(f"workflow hint {url}: Civitai says {said(reply)} (HTTP {reply.status})")
                return None
            version = reply.json() or {}
            files = version.get("files", [])
            model_type = (version.get("model") or {}).get("type")
            model = {"name": (version.get("model") or {}).get("name", "")}
            air = parse_air(url)
            pick = next((f for f in files if air and air.file_id and f.get("id") == air.file_id), None) \
                or next((f for f in files
                         if want_sha and (f.get("hashes") or {}).get("SHA256", "").lower() == want_sha), None) \
                or next((f for f in files if file_matches(ref.basename, model, version, f)), None)
            # A version id names no file: it is this reference's only when the name matches, or when it is the
            # one version the reference is pointed at (a URL's pairing, or its only AIR / resource).
            if pick is None and (not short_id(url) or sum(1 for x in ref.hints if x.url and short_id(x.url)) == 1):
                pick = next((f for f in files if f.get("primary")), files[0] if files else None)
            if pick is None:
                found.tried.append(f"workflow hint {url}: no file of Civitai version {vid} matches {ref.basename}"
                                   if files else f"workflow hint {url}: Civitai version {vid} has no downloadable "
                                   "file (archived?)")
                return None
            cand = version_candidate(ref, version, pick, model_type, CONFIDENCE["embedded"], "the workflow's own link",
                                     run.family(ref) if short_id(url) else None)  # a URL pairing is the author's word
            cand.source = "embedded"
            if air:
                cand.ids["air_ecosystem"] = air.ecosystem
                cand.ids["family"] = cand.ids.get("family") or family_of_air(air.ecosystem)
            if self._folder(ref, h) and not ref.folder:
                cand.folder = self._folder(ref, h)
            return cand
        return await self._head(ref, run, h, found, "not a Hugging Face or Civitai link")

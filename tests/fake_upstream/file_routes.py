"""Transfer-side routes of the fake: HF `/resolve`, Civitai `/api/download/models`, and the CDN/storage host.

Behaviour follows docs/upstream.md ("Downloads") and the fixtures (civitai/downloads.json,
huggingface/resolve.json, huggingface/errors/):
- HF resolve: LFS files answer 302 to the CDN on the `localhost` host name with X-Linked-Etag,
  X-Linked-Size, X-Repo-Commit and ETag (never X-Xet-Hash); small files answer 200 with the bytes.
  Gated repos answer 401 GatedRepo without a token (403 GatedRepo with one, when the test denies it).
- Civitai download: 307 to signed storage on `localhost`, whose answer carries Content-Disposition;
  401 for login-required versions without a token (header or ?token=), 403 Early Access when enabled,
  410 archived, 404 File not found.
- The CDN/storage honours Range (206 + Content-Range) and If-Range.

Tests and benchmarks register their own bytes with `register_hf_file` / `register_civitai_file`
(bytes in memory or a file on disk) and switch faults per file with `faults(up, key)`:
reset at an offset, trickle, wrong bytes, ETag change, ignore Range, redirect loop, redirect
elsewhere, a per-connection rate limit, and a body that never ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

from .server import UPSTREAM

_FLIP = bytes(b ^ 0x5A for b in range(256))  # "other bytes of the same length", fast via translate
STAND_IN = b"fixture stand-in: the real file is not served by the fake\n"
CHUNK = 64 * 1024
ENDLESS_SECONDS = 120.0  # an endless body still stops by itself, should a client never hang up


@dataclass
class FileFaults:
    """Per-file fault switches (all off by default)."""

    reset_at: int | None = None  # drop the connection when the body reaches this file offset ...
    reset_times: int | None = 1  # ... this many times (None: always)
    trickle: float | None = None  # bytes per second, a server that nearly hangs ...
    trickle_times: int | None = None  # ... for this many responses (None: always)
    wrong_bytes: bool = False  # serve corrupted bytes of the same length (hash mismatch)
    etag_change_after: int | None = None  # after this many CDN GETs the file's bytes and ETag change
    ignore_range: bool = False  # answer 200 with the whole file, no Accept-Ranges
    redirect_loop: bool = False  # the resolve/download route redirects to itself
    redirect_to: str | None = None  # the resolve/download route redirects here instead of the CDN
    rate: float | None = None  # per-connection bytes per second (benchmarks: 25 MB/s like a CDN)
    expire_after: int | None = None  # after this many CDN GETs the signed links issued so far expire (403)
    straggler_at: int | None = None  # the first response starting at this offset crawls at straggler_rate
    straggler_rate: float = 512 * 1024
    endless: bool = False  # 200 with no length and no ranges, the bytes repeated until the client hangs up


@dataclass
class ServedFile:
    key: str  # "hf:<repo>/<path>" or "civitai:<versionId>"
    data: bytes | None = None
    disk_path: str | None = None
    content_disposition: str | None = None
    faults: FileFaults = field(default_factory=FileFaults)
    gets: int = 0
    changed: bool = False
    signature: int = 0  # generation of the signed links; older ones are refused once expired
    _sha256: str | None = None
    _fd: int | None = None  # kept open: the throttled benchmark reads thousands of chunks a second

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else os.path.getsize(self.disk_path or "")

    def sha256(self) -> str:
        """Of the original bytes (a stable identity; ETags derive from it)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            if self.data is not None:
                h.update(self.data)
            else:
                with open(self.disk_path or "", "rb") as f:
                    while block := f.read(8 << 20):
                        h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256

    def served_sha256(self) -> str:
        """Of the bytes served now: what HF's X-Linked-Etag announces once the file was replaced."""
        if not self.changed:
            return self.sha256()
        h = hashlib.sha256()
        for pos in range(0, self.size, 8 << 20):
            h.update(self.read(pos, min(self.size, pos + (8 << 20))))
        return h.hexdigest()

    def etag(self) -> str:
        base = self.sha256()[:32]
        return f'"{base}-v2"' if self.changed else f'"{base}"'

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) as served now (after faults that alter content)."""
        if self.data is not None:
            out = self.data[start:end]
        else:
            if self._fd is None:
                self._fd = os.open(self.disk_path or "", os.O_RDONLY)
            out = os.pread(self._fd, end - start, start)
        if self.changed or self.faults.wrong_bytes:
            out = out.translate(_FLIP)
        return out


# ------------------------------------------------------------------------ registry -------------------


def _files(up: Any) -> dict[str, ServedFile]:
    return up.state.setdefault("served_files", {})


def hf_key(repo_id: str, path: str) -> str:
    return f"hf:{repo_id}/{path}"


def civitai_key(version_id: int | str) -> str:
    return f"civitai:{version_id}"


def faults(up: Any, key: str) -> FileFaults:
    """The fault switches of one file (created on first use, so faults may be set before a GET)."""
    return _served(up, key).faults


def register_hf_file(up: Any, repo_id: str, path: str, data: bytes | None = None, *, disk_path: str | None = None,
                     gated: bool = False, commit: str | None = None) -> str:
    """Serve `data` (or a file on disk) as an LFS file of an HF repo; returns its resolve URL."""
    sf = ServedFile(key=hf_key(repo_id, path), data=data, disk_path=disk_path)
    _files(up)[sf.key] = sf
    repos = up.state.setdefault("file_routes_repos", {})
    repo = repos.setdefault(repo_id, {"commit": commit or hashlib.sha1(repo_id.encode()).hexdigest(),
                                      "gated": gated, "files": {}})
    repo["files"][path] = {"lfs": True}
    return f"{up.base}/{repo_id}/resolve/main/{quote(path)}"


def register_civitai_file(up: Any, version_id: int, filename: str, data: bytes | None = None, *,
                          disk_path: str | None = None, requires_auth: bool = False) -> str:
    """Serve bytes as the primary file of a Civitai version; returns its download URL."""
    sf = ServedFile(key=civitai_key(version_id), data=data, disk_path=disk_path,
                    content_disposition=f'attachment; filename="{filename}"')
    _files(up)[sf.key] = sf
    up.state.setdefault("file_routes_versions", {})[str(version_id)] = {
        "status": 307, "requiresAuth": requires_auth, "primaryFile": filename,
        "contentDisposition": sf.content_disposition, "storageKey": f"model/{version_id}/{filename}",
        "unauthenticated": {"status": 401, "body": {
            "error": "Unauthorized",
            "message": "The creator of this asset requires you to be logged in to download it"}}}
    return f"{up.base}/api/download/models/{version_id}"


def _served(up: Any, key: str) -> ServedFile:
    """The file behind `key`: registered bytes, a fixture payload, or a stand-in for real files."""
    files = _files(up)
    if key in files:
        return files[key]
    data = STAND_IN
    disposition = None
    if key.startswith("civitai:"):
        v = _civitai_versions(up).get(key.split(":", 1)[1], {})
        if v.get("payload"):
            data = up.payload(v["payload"])
        disposition = v.get("contentDisposition")
    else:
        repo_id, path = _split_hf_key(key)
        entry = _resolve_fixture(up).get(repo_id, {}).get("files", {}).get(path, {})
        if entry.get("payload"):
            data = up.payload(entry["payload"])
        elif "content" in entry:
            data = entry["content"].encode()
    files[key] = ServedFile(key=key, data=data, content_disposition=disposition)
    return files[key]


def _split_hf_key(key: str) -> tuple[str, str]:
    rest = key.split(":", 1)[1]
    parts = rest.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _resolve_fixture(up: Any) -> dict[str, Any]:
    if "resolve_fixture" not in up.state:
        up.state["resolve_fixture"] = up.load_json("huggingface/resolve.json")["repos"]
        up.state["hf_index_fixture"] = up.load_json("huggingface/index.json")["repos"]
    return up.state["resolve_fixture"]


def _civitai_versions(up: Any) -> dict[str, Any]:
    if "downloads_fixture" not in up.state:
        up.state["downloads_fixture"] = up.load_json("civitai/downloads.json")["versions"]
    return {**up.state["downloads_fixture"], **up.state.get("file_routes_versions", {})}


# ------------------------------------------------------------------------ Hugging Face --------------


def _hf_error(name: str, repo_id: str, **headers: str) -> web.Response:
    spec = json.loads(json.dumps(_ERRORS_CACHE[name]).replace("<repo_id>", repo_id))
    hdrs = {**spec.get("headers", {}), **headers}
    if "body" in spec:
        return web.json_response(spec["body"], status=spec["status"], headers=hdrs)
    return web.Response(status=spec["status"], headers=hdrs, text=spec.get("body_text", ""))


_ERRORS_CACHE: dict[str, Any] = {}


def _load_errors(up: Any) -> None:
    if not _ERRORS_CACHE:
        for p in sorted((up.fixtures / "huggingface" / "errors").glob("*.json")):
            _ERRORS_CACHE[p.stem] = json.loads(p.read_text(encoding="utf-8"))


def _hf_repo(up: Any, repo_id: str) -> dict[str, Any] | None:
    """{commit, gated, files: {path: entry}} from registrations, the fixtures, or api_routes' catalogue."""
    own = up.state.get("file_routes_repos", {}).get(repo_id)
    fixture = _resolve_fixture(up).get(repo_id)
    if own or fixture:
        base = dict(fixture or {"commit": own["commit"], "files": {}})
        files = {**(fixture or {}).get("files", {}), **(own or {}).get("files", {})}
        gated = (own or {}).get("gated") or up.state["hf_index_fixture"].get(repo_id, {}).get("gated")
        return {"commit": (own or base)["commit"], "gated": gated, "files": files}
    cat = up.state.get("hf_repos", {}).get(repo_id)  # repos api_routes' add_hf_repo created
    if cat:
        files = {e["path"]: {"lfs": "lfs" in e, "sha256": (e.get("lfs") or {}).get("oid"), "size": e["size"]}
                 for e in cat.get("tree", []) if e.get("type") == "file"}
        return {"commit": cat["commit"], "gated": cat.get("info", {}).get("gated"), "files": files}
    return None


async def hf_resolve(request: web.Request) -> web.StreamResponse:
    up = request.app[UPSTREAM]
    _load_errors(up)
    repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
    rev = unquote(request.match_info["rev"])
    path = unquote(request.match_info["path"])
    token = request.headers.get("Authorization", "").startswith("Bearer ")
    repo = _hf_repo(up, repo_id)
    if repo is None:
        return _hf_error("404_repo_not_found_authenticated" if token else "401_repo_not_found_anonymous", repo_id)
    if repo.get("gated"):
        if not token:
            return _hf_error("401_gated_anonymous", repo_id)
        if repo_id in up.state.get("hf_gated_denied", set()):
            return _hf_error("403_gated_not_authorized", repo_id)
    commit = repo["commit"]
    if rev not in ("main", commit) and rev not in up.state.get("hf_revisions", {}).get(repo_id, ()):
        spec_headers = {"X-Error-Message": f"Invalid rev id: {rev}"}
        return web.json_response({"error": f"Invalid rev id: {rev}"}, status=404,
                                 headers={"X-Error-Code": "RevisionNotFound", **spec_headers})
    entry = repo["files"].get(path)
    if entry is None:
        return _hf_error("404_entry_not_found", repo_id, **{"X-Repo-Commit": commit})
    key = hf_key(repo_id, path)
    sf = _served(up, key)
    if not entry.get("lfs"):
        return web.Response(body=sf.read(0, sf.size), headers={
            "X-Repo-Commit": commit, "ETag": entry.get("ETag") or sf.etag(), "Accept-Ranges": "bytes"})
    registered = key in _files(up) and (sf.data is not STAND_IN)
    sha = sf.served_sha256() if registered or entry.get("payload") else (
        (entry.get("X-Linked-Etag") or "").strip('"') or entry.get("sha256") or sf.sha256())
    size = sf.size if registered or entry.get("payload") else int(entry.get("X-Linked-Size") or entry.get("size") or 0)
    name = path.rsplit("/", 1)[-1]
    query = urlencode({"X-Amz-Expires": "3600", "X-Amz-Signature": f"fake{sf.signature}-{sha[:16]}",
                       "response-content-disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"})
    location = f"{up.cdn_base}/cdn/{quote(key)}?{query}"
    location = _redirect_fault(request, sf, location)
    headers = {"Location": location, "X-Repo-Commit": commit, "X-Linked-Etag": f'"{sha}"',
               "X-Linked-Size": str(size), "ETag": entry.get("ETag") or f'"{hashlib.sha1(sha.encode()).hexdigest()}"'}
    return web.Response(status=302, headers=headers, text=f"Found. Redirecting to {location}")


def _redirect_fault(request: web.Request, sf: ServedFile, location: str) -> str:
    if sf.faults.redirect_loop:
        return str(request.url)
    return sf.faults.redirect_to or location


# ------------------------------------------------------------------------ Civitai --------------------


async def civitai_download(request: web.Request) -> web.StreamResponse:
    up = request.app[UPSTREAM]
    vid = request.match_info["vid"]
    v = _civitai_versions(up).get(vid)
    if v is None:
        return web.json_response({"error": "File not found"}, status=404)
    if v.get("status") == 410:
        return web.json_response(v.get("body") or {"error": "Model archived, not available for download"}, status=410)
    token = request.headers.get("Authorization", "").startswith("Bearer ") or bool(request.query.get("token"))
    if up.state.get("civitai_key_required") and not token:  # 2026: any model-file download needs a key
        return web.json_response({"error": "Unauthorized", "message": "Civitai requires a token for any model-file "
                                  "download"}, status=401)
    if v.get("requiresAuth") and not token:
        unauth = v.get("unauthenticated") or {"status": 401, "body": {"error": "Unauthorized"}}
        return web.json_response(unauth["body"], status=unauth["status"])
    if v.get("earlyAccess") and vid in {str(x) for x in up.state.get("civitai_early_access", ())}:
        return web.json_response(v["earlyAccess"]["body"], status=v["earlyAccess"]["status"])
    selection = {k: val for k, val in request.query.items() if k not in ("token",)}
    filename = v["primaryFile"]
    if selection:
        qs = "&".join(f"{k}={val}" for k, val in selection.items())
        if qs not in v.get("otherFiles", {}):
            return web.json_response({"error": "File not found"}, status=404)
        filename = v["otherFiles"][qs]
    key = civitai_key(vid)
    sf = _served(up, key)
    disposition = f'attachment; filename="{filename}"'
    query = urlencode({"X-Amz-Expires": "86400", "X-Amz-Signature": f"fake{sf.signature}-{vid}",
                       "response-content-disposition": disposition})
    location = _redirect_fault(request, sf, f"{up.cdn_base}/storage/{quote(key)}?{query}")
    return web.json_response({}, status=307, headers={"Location": location, "Cache-Control": "no-store, max-age=0"})


# ------------------------------------------------------------------------ CDN / storage --------------


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (value or "").strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix range: the last N bytes
        n = int(m.group(2))
        return max(0, size - n), size
    start = int(m.group(1))
    end = int(m.group(2)) + 1 if m.group(2) else size
    return start, min(end, size)


async def cdn(request: web.Request) -> web.StreamResponse:
    try:
        return await _cdn(request)
    except ConnectionError:  # the client hung up (it had the bytes it wanted)
        return web.Response(status=499)


async def _cdn(request: web.Request) -> web.StreamResponse:
    up = request.app[UPSTREAM]
    key = unquote(request.match_info["key"])
    sf = _served(up, key)
    if request.method == "GET":
        sf.gets += 1
        f = sf.faults
        if f.etag_change_after is not None and sf.gets > f.etag_change_after:
            sf.changed = True
        if f.expire_after is not None and sf.gets == f.expire_after + 1:
            sf.signature += 1
        if not request.query.get("X-Amz-Signature", "").startswith(f"fake{sf.signature}-"):
            return web.Response(status=403, content_type="application/xml",
                                text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
    size = sf.size
    headers = {"ETag": sf.etag(), "Content-Type": "application/octet-stream"}
    if sf.content_disposition and request.path.startswith("/storage/"):
        headers["Content-Disposition"] = sf.content_disposition
    if sf.faults.endless:
        return await _endless(request, sf, headers)
    rng = None if sf.faults.ignore_range else _parse_range(request.headers.get("Range"), size)
    if_range = request.headers.get("If-Range")
    if rng is not None and if_range is not None and if_range != sf.etag():
        rng = None  # the validator no longer matches: the whole (new) file, as RFC 9110 says
    if not sf.faults.ignore_range:
        headers["Accept-Ranges"] = "bytes"
    if rng is not None and rng[0] >= size:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = rng if rng is not None else (0, size)
    if rng is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    status = 206 if rng is not None else 200
    f = sf.faults
    plain = (not f.rate and not f.trickle and f.reset_at is None and not f.wrong_bytes and not sf.changed
             and f.straggler_at is None)
    if plain and sf.disk_path and request.method == "GET":
        return await _sendfile(request, sf, start, end, status, headers)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = end - start
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    trickle = f.trickle if f.trickle and (f.trickle_times is None or f.trickle_times > 0) else None
    if trickle and f.trickle_times is not None:
        f.trickle_times -= 1
    reset_at = f.reset_at if f.reset_at is not None and start <= f.reset_at < end and (
        f.reset_times is None or f.reset_times > 0) else None
    if reset_at is not None and f.reset_times is not None:
        f.reset_times -= 1
    rate = f.rate
    if f.straggler_at is not None and start == f.straggler_at:
        rate, f.straggler_at = f.straggler_rate, None  # one slow connection, as a CDN edge sometimes gives
    began = time.monotonic()
    pos = start
    while pos < end:
        if trickle:
            step = max(1, int(trickle / 20))
            await asyncio.sleep(step / trickle)
        else:
            step = CHUNK
        stop = min(end, pos + step, reset_at if reset_at is not None and reset_at > pos else end)
        await resp.write(sf.read(pos, stop))
        pos = stop
        if reset_at is not None and pos >= reset_at:
            await asyncio.sleep(0.05)  # let the bytes leave before the connection drops
            request.transport.close()  # type: ignore[union-attr]
            return resp
        if rate:
            ahead = (pos - start) / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
    await resp.write_eof()
    return resp


async def _endless(request: web.Request, sf: ServedFile, headers: dict[str, str]) -> web.StreamResponse:
    """A body without a length that never ends (chunked), as a hostile or broken server sends."""
    resp = web.StreamResponse(status=200, headers=headers)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    block = (sf.read(0, sf.size) or b"\0") * max(1, (4 * CHUNK) // max(sf.size, 1))
    deadline = time.monotonic() + ENDLESS_SECONDS
    while time.monotonic() < deadline:
        await resp.write(block)
    return resp


async def _sendfile(request: web.Request, sf: ServedFile, start: int, end: int, status: int,
                    headers: dict[str, str]) -> web.StreamResponse:
    """Unthrottled disk files: the kernel copies (sendfile), as a real CDN edge would not bottleneck."""
    loop = asyncio.get_running_loop()
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = end - start
    await resp.prepare(request)
    with open(sf.disk_path or "", "rb") as fh:
        try:
            await loop.sendfile(request.transport, fh, start, end - start)  # type: ignore[arg-type]
        except NotImplementedError:
            fh.seek(start)
            pos = start
            while pos < end:
                block = fh.read(min(CHUNK * 16, end - pos))
                await resp.write(block)
                pos += len(block)
    await resp.write_eof()
    return resp


def add_routes(app: web.Application, up: Any) -> None:
    app.router.add_get("/api/download/models/{vid}", civitai_download)
    app.router.add_get("/cdn/{key:.+}", cdn)
    app.router.add_get("/storage/{key:.+}", cdn)
    app.router.add_get("/{org}/{name}/resolve/{rev}/{path:.+}", hf_resolve)

"""The Hugging Face Hub's HTTP API as the resolver uses it: search, an organisation's repos, a repo's file
tree, one file's facts (paths-info), whether a repo is gated, and the download URL of a file.

We call the API with aiohttp rather than huggingface_hub's HfApi: HfApi is synchronous (a thread per call)
and its session does not share our per-service limit and Retry-After handling (fixer.upstream.http); the
endpoints and parameters are the ones HfApi sends (list_models, list_repo_tree, get_paths_info,
model_info). Every call is asked once per run (`HubRun.once`) and written to the search history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import aiohttp

from ..constants import hf_offline
from ..errors import AuthRequired
from .http import HttpClient, http_error, said
from .services import HF_TOKEN, HUGGINGFACE

T = TypeVar("T")
SEARCH_LIMIT = 50  # one page of the Hub's search
ORG_PAGE_SIZE = 100
ORG_PAGES = 5
OFFLINE_NOTE = "HF_HUB_OFFLINE is set: Hugging Face not searched"
# The Hub's own error codes (X-Error-Code) that are its verdict on a file, as opposed to a mirror without the API.
HUB_VERDICT_CODES = frozenset({"RepoNotFound", "EntryNotFound", "GatedRepo", "RevisionNotFound"})
GONE_CODES = frozenset({"RepoNotFound", "EntryNotFound", "RevisionNotFound"})  # the file does not exist there
SERVICE = HUGGINGFACE.key


class History(Protocol):
    def record(self, source: str, query: str, outcome: str, model: str = "") -> None: ...


class HubRun(Protocol):
    """What a call needs of the search run: the session, the endpoint, the token, a per-run memo, the history."""

    @property
    def http(self) -> HttpClient: ...

    @property
    def hf_endpoint(self) -> str: ...

    @property
    def history(self) -> History: ...

    @property
    def secrets(self) -> Mapping[str, str]: ...

    def once(self, key: Any, make: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


def resolve_url(endpoint: str, repo_id: str, path: str, revision: str = "main") -> str:
    return f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def auth_headers(run: HubRun) -> dict[str, str]:
    token = run.secrets.get(HF_TOKEN)
    return {"Authorization": f"Bearer {token}"} if token else {}


def lfs_facts(entry: dict[str, Any]) -> tuple[int | None, str | None]:
    """(size, sha256) of a tree or paths-info entry (the sha256 only for LFS files)."""
    lfs = entry.get("lfs") or {}
    return entry.get("size") or lfs.get("size"), (lfs.get("oid") or lfs.get("sha256") or None)


def gated_note(run: HubRun, repo_id: str) -> str:
    return f"gated: needs {HF_TOKEN} and the license accepted at {run.hf_endpoint}/{repo_id}"


def query_words(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items() if k in ("search", "author"))


async def list_models(run: HubRun, model: str, **params: str) -> list[dict[str, Any]]:
    """GET /api/models (HfApi.list_models), first page only. `model` names who asked, in the history."""
    query = {"full": "true", "sort": "downloads", "direction": "-1", "limit": str(SEARCH_LIMIT), **params}
    key = ("hf_search", tuple(sorted(query.items())))

    async def call() -> list[dict[str, Any]]:
        reply = await run.http.get(SERVICE, f"{run.hf_endpoint}/api/models", params=query, headers=auth_headers(run))
        if not reply.ok:
            run.history.record(SERVICE, query_words(query), f"HTTP {reply.status}: {said(reply)}", model)
            what = f"the search {params['search']!r}" if "search" in params else f"the repos of {params.get('author')}"
            raise http_error(reply.status, reply.headers, reply.body, what=what,
                             service=SERVICE, has_token=bool(run.secrets.get(HF_TOKEN)))
        items = reply.json() or []
        run.history.record(SERVICE, query_words(query), f"{len(items)} repos", model)
        return items if isinstance(items, list) else []

    return await run.once(key, call)


async def org_repos(run: HubRun, org: str, model: str) -> list[dict[str, Any]]:
    """Every repo of one organisation with its file list (list_models(author=org, full=True)), following
    Link pages up to ORG_PAGES; asked once per run and shared by all models."""

    async def call() -> list[dict[str, Any]]:
        params = {"author": org, "full": "true", "sort": "downloads", "direction": "-1", "limit": str(ORG_PAGE_SIZE)}
        items: list[dict[str, Any]] = []
        async for reply in run.http.pages(SERVICE, f"{run.hf_endpoint}/api/models", params=params,
                                          headers=auth_headers(run), max_pages=ORG_PAGES):
            if not reply.ok:
                run.history.record(SERVICE, f"author={org}", f"HTTP {reply.status}: {said(reply)}", model)
                break
            page = reply.json() or []
            items += page if isinstance(page, list) else []
        run.history.record(SERVICE, f"author={org} (all repos)", f"{len(items)} repos", model)
        return items

    return await run.once(("hf_org", org), call)


async def repo_tree(run: HubRun, repo_id: str, model: str) -> list[str]:
    """All file paths of a repo (recursive tree, following Link pages); used when a search omits siblings."""

    async def call() -> list[str]:
        paths: list[str] = []
        async for reply in run.http.pages(SERVICE, f"{run.hf_endpoint}/api/models/{repo_id}/tree/main",
                                          params={"recursive": "true", "expand": "false"}, headers=auth_headers(run)):
            if not reply.ok:
                run.history.record(SERVICE, f"tree {repo_id}", f"HTTP {reply.status}", model)
                break
            paths += [e["path"] for e in reply.json() or [] if isinstance(e, dict) and e.get("type") == "file"]
        run.history.record(SERVICE, f"tree {repo_id}", f"{len(paths)} files", model)
        return paths

    return await run.once(("hf_tree", repo_id), call)


@dataclass(frozen=True)
class PathInfo:
    """What the Hub says of one file: its tree entry (size, lfs.oid), or words for `tried` and whether
    that was the Hub's own verdict (the file is not there, or not for us) rather than a failure to ask."""

    entry: dict[str, Any] | None
    error: str = ""
    verdict: bool = False
    gone: bool = False  # the Hub says the repo, revision or file does not exist (not merely refused)


async def paths_info(run: HubRun, repo_id: str, path: str, revision: str = "main") -> PathInfo:
    """The PathInfo of one file (HfApi.get_paths_info); its error words always name Hugging Face."""

    async def call() -> PathInfo:
        url = f"{run.hf_endpoint}/api/models/{repo_id}/paths-info/{quote(revision, safe='')}"
        try:
            reply = await run.http.post(SERVICE, url, data={"paths": path, "expand": "false"},
                                        headers=auth_headers(run))
        except (aiohttp.ClientError, TimeoutError) as e:
            return PathInfo(None, OFFLINE_NOTE if hf_offline() else
                            f"could not reach Hugging Face ({e.__class__.__name__})")
        if not reply.ok:
            error = http_error(reply.status, reply.headers, reply.body, what=f"{path} in {repo_id}",
                               service=SERVICE, has_token=bool(run.secrets.get(HF_TOKEN)),
                               repo=repo_id, repo_page=f"{run.hf_endpoint}/{repo_id}")
            # The Hub's error code tells its own verdict (EntryNotFound) from a mirror without this API.
            hub_code = reply.headers.get("X-Error-Code", "")
            err = str(error) + (f" ({hub_code})" if hub_code else "")
            return PathInfo(None, err, hub_code in HUB_VERDICT_CODES or isinstance(error, AuthRequired),
                            gone=hub_code in GONE_CODES)
        entries = [e for e in reply.json() or [] if e.get("path") == path and e.get("type") == "file"]
        return PathInfo(entries[0]) if entries else PathInfo(None, f"{path} is not in {repo_id} on Hugging Face",
                                                              verdict=True, gone=True)

    async def logged() -> PathInfo:
        info = await call()
        size, sha = lfs_facts(info.entry) if info.entry else (None, None)
        run.history.record(SERVICE, f"paths-info {repo_id}/{path}",
                           f"size {size}, sha256 {sha}" if info.entry else info.error)
        return info

    return await run.once(("hf_paths_info", repo_id, revision, path), logged)


async def repo_gated(run: HubRun, repo_id: str) -> bool:
    """Whether the repo's model info says it is gated (its files need a token and the license accepted)."""

    async def call() -> bool:
        reply = await run.http.get(SERVICE, f"{run.hf_endpoint}/api/models/{repo_id}", headers=auth_headers(run))
        data = reply.json() if reply.ok else None
        return bool(isinstance(data, dict) and data.get("gated"))

    return await run.once(("hf_gated", repo_id), call)

"""ComfyUI-Manager client: is it installed and running, which install API it speaks, and queue one install.

Nothing here installs anything on its own: `queue_install` sends the one request a person asked
for (the panel's "Install with Manager"), and Manager does the cloning and pip work. The node
classes only appear after ComfyUI restarts, and every message says so.

The three install APIs, as read from the `comfyui-manager` 4.3 package source and Manager 3.x:

* "v2_task": `comfyui_manager/glob/manager_server.py` (the default UI since 4.0).
  `POST /v2/manager/queue/task` with a `QueueTaskItem` {ui_id, client_id, kind: "install",
  params: `InstallPackParams` {id, version, selected_version, repository, pip, mode, channel,
  skip_post_install}} (`comfyui_manager/data_models/generated_models.py`), then
  `POST /v2/manager/queue/start`. `do_install` resolves `"<id>@<selected_version>"`: a registry id
  with "latest", or, for a pack outside the registry, the key Manager's `get_custom_nodes` uses
  (the last part of its repository URL) with "unknown".
* "v2_batch": `comfyui_manager/legacy/manager_server.py` (`--enable-manager-legacy-ui`).
  `POST /v2/manager/queue/batch` {batch_id, install: [item]} queues and starts the worker itself and
  answers {"failed": [ids]}; item is {id, version, selected_version, channel, mode, files, pip,
  repository, ui_id, skip_post_install}, with version "unknown" and `files` for a git pack
  (`_queue_node_install`).
* "legacy": ComfyUI-Manager 3.x cloned into `custom_nodes/` (its `glob/manager_server.py`).
  `POST /manager/queue/install` with the same item, then `GET /manager/queue/start`.

Both 4.x servers refuse form content types on POST (`common/manager_security.py`
`reject_simple_form_post`), so bodies go as application/json. Detection uses
`GET /v2/manager/version`, `GET /v2/manager/is_legacy_manager_ui` and `GET /manager/version`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import aiohttp

from ..errors import FixerError
from .lookup import MANAGER_PACKAGE, PackIndex, normalize_repo

log = logging.getLogger("fixer.nodepacks.manager")

ManagerApi = Literal["v2_task", "v2_batch", "legacy"]

# Route that tells each API apart, most specific first (what `detect_from_routes` looks for).
API_ROUTES: tuple[tuple[str, ManagerApi], ...] = (
    ("/v2/manager/queue/task", "v2_task"),
    ("/v2/manager/queue/batch", "v2_batch"),
    ("/manager/queue/install", "legacy"),
)
MAPPINGS_PATH = {"v2_task": "/v2/customnode/getmappings", "v2_batch": "/v2/customnode/getmappings",
                 "legacy": "/customnode/getmappings"}
RESTART_NOTE = "When Manager reports it finished, restart ComfyUI and reload the page to load the new nodes."
PROBE_TIMEOUT = 5.0
SEND_TIMEOUT = 30.0  # getmappings returns the whole map (megabytes)


class ManagerError(FixerError):
    """ComfyUI-Manager could not be reached or refused a request; the message says what to do."""


@dataclass(frozen=True)
class ManagerStatus:
    installed: bool  # its files are on disk (custom_nodes folder or the pip package)
    running: bool  # its routes answer on the server
    api: ManagerApi | None = None
    version: str | None = None
    location: str | None = None

    @property
    def can_install(self) -> bool:
        return self.running and self.api is not None

    def message(self) -> str:
        if self.can_install:
            running = f"ComfyUI-Manager {self.version or ''} is running".replace("  ", " ")
            return f"{running}: packs can be installed with it."
        if self.installed:
            return ("ComfyUI-Manager is installed but not running (start ComfyUI with --enable-manager for the "
                    "pip package); install the packs with the commands shown.")
        return "ComfyUI-Manager is not installed; install the packs with the commands shown."


@dataclass(frozen=True)
class InstallTarget:
    """What Manager needs to install one pack: a registry id, or a repository and its files."""

    title: str
    cnr_id: str | None = None
    repository: str | None = None
    files: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()

    @classmethod
    def of(cls, pack: Any) -> "InstallTarget":
        """From a PackMatch, a PackCandidate, or their JSON form (what the panel sends back)."""
        get = pack.get if isinstance(pack, Mapping) else (lambda k, d=None: getattr(pack, k, d))
        kind = get("matched_by")
        title = str(get("title") or get("pack_title") or get("id") or get("repository") or "pack")
        if kind == "update_comfyui":
            raise ManagerError(f"{title}: these are ComfyUI core nodes; update ComfyUI instead of installing a pack.")
        cnr_id, repo = get("cnr_id"), get("repository")
        if not cnr_id and not repo:
            raise ManagerError(f"{title}: no pack is known to provide it, so there is nothing to install. "
                               "Search for the node type and install its pack by hand.")
        files = tuple(get("files") or ([repo] if repo else []))
        return cls(title=title, cnr_id=cnr_id or None, repository=repo or None, files=files,
                   pip=tuple(get("pip") or ()))

    @property
    def manager_key(self) -> str:
        """The id Manager's custom-node list uses for a pack outside the registry: its repo's last part."""
        return (self.files[0] if self.files else self.repository or "").rstrip("/").rsplit("/", 1)[-1]


def listed_target(index: PackIndex, pack_id: str) -> InstallTarget:
    """What to ask Manager to install for the panel's `pack_id`, only from a curated list.

    A registry id must name a pack Manager's own node list has (installed Manager or the shipped
    snapshot), and is installed from the registry by that id; a "github-user/repo" id must be such a
    pack too. An id only a shared workflow names (its `cnr_id` / `aux_id`) could be anyone's code:
    anyone can publish to the registry, so it is left to the person to review.
    """
    if "/" not in pack_id:
        known = index.pack_by_id(pack_id)
        if known is None:
            raise ManagerError(f"{pack_id!r} is not a pack in ComfyUI-Manager's list, so it is not installed from "
                               "here (anyone can publish to the registry). Read about it first; if you trust it, "
                               "install it by hand, then restart ComfyUI.")
        return InstallTarget(title=known.title, cnr_id=pack_id)
    pack = index.pack(f"https://github.com/{pack_id}")
    if pack is None:
        raise ManagerError(f"https://github.com/{pack_id} is not in ComfyUI-Manager's list of node packs (an "
                           "unlisted repository), so it is not installed from here. Read the repository first; "
                           "if you trust it, install it by hand with the commands shown, then restart ComfyUI.")
    return InstallTarget.of(pack)


@dataclass(frozen=True)
class ManagerRequest:
    method: Literal["GET", "POST"]
    path: str
    body: dict[str, Any] | None = None


@dataclass
class InstallQueued:
    title: str
    api: ManagerApi
    id: str  # the id Manager was asked to install
    requests: list[ManagerRequest] = field(default_factory=list)

    @property
    def message(self) -> str:
        return f"Queued {self.title} for install by ComfyUI-Manager. {RESTART_NOTE}"


# ---------------------------------------------------------------- detection


def detect_from_routes(paths: Iterable[str]) -> ManagerApi | None:
    """Inside ComfyUI: which install API the server's registered routes offer (None: no Manager).

    Pass the route paths at request time (Manager registers after this pack may load), e.g.
    `[r.resource.canonical for r in PromptServer.instance.app.router.routes()]`.
    """
    have = {p.removeprefix("/api") for p in paths if isinstance(p, str)}
    return next((api for route, api in API_ROUTES if route in have), None)


def installed_location(comfyui_root: Path | str | None, *, search_package: bool = True) -> str | None:
    """Where Manager's code is on disk: a custom_nodes/ComfyUI-Manager* folder, or the pip package."""
    if comfyui_root:
        custom_nodes = Path(comfyui_root).expanduser() / "custom_nodes"
        if custom_nodes.is_dir():
            for d in sorted(custom_nodes.iterdir()):
                name = d.name.lower()
                is_pack = (d / "__init__.py").is_file() or (d / MANAGER_PACKAGE).is_dir()
                if name.startswith("comfyui-manager") and not name.endswith(".disabled") and is_pack:
                    return str(d)
    if search_package:
        try:
            spec = importlib.util.find_spec(MANAGER_PACKAGE)  # never imported: it needs ComfyUI
        except (ImportError, ValueError):
            spec = None
        if spec and spec.submodule_search_locations:
            return str(list(spec.submodule_search_locations)[0])
    return None


async def probe(base_url: str, *, comfyui_root: Path | str | None = None,
                session: aiohttp.ClientSession | None = None, search_package: bool = True) -> ManagerStatus:
    """From outside: ask a ComfyUI server which Manager API it runs. GET requests only."""
    location = installed_location(comfyui_root, search_package=search_package)
    async with _SessionScope(session, PROBE_TIMEOUT) as s:
        version = await _get_text(s, base_url, "/v2/manager/version")
        if version is not None:
            flag = await _get_json(s, base_url, "/v2/manager/is_legacy_manager_ui")
            legacy_ui = isinstance(flag, dict) and flag.get("is_legacy_manager_ui") is True
            return ManagerStatus(True, True, "v2_batch" if legacy_ui else "v2_task", version.strip(), location)
        version = await _get_text(s, base_url, "/manager/version")
        if version is not None:
            return ManagerStatus(True, True, "legacy", version.strip(), location)
    return ManagerStatus(location is not None, False, None, None, location)


# ---------------------------------------------------------------- requests


def install_spec(target: InstallTarget, registry_id: str | None = None) -> tuple[str, str, str]:
    """(id, version, selected_version) as Manager resolves them: registry packs at their latest
    release, other packs by their custom-node-list key at version "unknown" (a git clone)."""
    cnr = target.cnr_id or registry_id
    return (cnr, "latest", "latest") if cnr else (target.manager_key, "unknown", "unknown")


def install_requests(target: InstallTarget, api: ManagerApi, *, client_id: str, ui_id: str,
                     registry_id: str | None = None) -> list[ManagerRequest]:
    """The requests that queue `target` with Manager's `api` (pure: nothing is sent).

    `registry_id` is the pack's registry id when known from elsewhere (the running Manager's mappings).
    """
    pack_id, version, selected = install_spec(target, registry_id)
    if api == "v2_task":
        params: dict[str, Any] = {"id": pack_id, "version": version, "selected_version": selected,
                                  "mode": "cache", "channel": "default", "skip_post_install": False}
        if target.repository:
            params["repository"] = target.repository
        if target.pip:
            params["pip"] = list(target.pip)
        task = {"ui_id": ui_id, "client_id": client_id, "kind": "install", "params": params}
        return [ManagerRequest("POST", "/v2/manager/queue/task", task),
                ManagerRequest("POST", "/v2/manager/queue/start")]
    item: dict[str, Any] = {"id": pack_id, "version": version, "selected_version": selected, "channel": "default",
                            "mode": "cache", "ui_id": ui_id, "skip_post_install": False,
                            "files": list(target.files), "pip": list(target.pip)}
    if target.repository:
        item["repository"] = target.repository
    if api == "v2_batch":
        return [ManagerRequest("POST", "/v2/manager/queue/batch", {"batch_id": ui_id, "install": [item]})]
    return [ManagerRequest("POST", "/manager/queue/install", item), ManagerRequest("GET", "/manager/queue/start")]


def registry_id_from_mappings(mappings: Any, repository: str, node_types: Iterable[str]) -> str | None:
    """The registry id a running Manager files this repository's pack under, if it does.

    Manager's getmappings renames a map entry's URL key to the registry id when the repo is in the
    registry (`map_to_unified_keys`) and keeps the entry itself, so the pack is recognised by its
    node list. A URL key (or no match) means: not in the registry.
    """
    if not isinstance(mappings, dict) or not node_types:
        return None
    want = set(node_types)
    repo = normalize_repo(repository)
    found: list[tuple[bool, bool, str]] = []
    for key, value in mappings.items():
        if not isinstance(key, str):
            continue
        if "://" in key:
            if normalize_repo(key) == repo:
                return None
            continue
        names = value[0] if isinstance(value, list) and value and isinstance(value[0], list) else None
        # A superset is fine: getmappings appends installed types its nodename_pattern matches.
        if names is not None and want <= (have := {n for n in names if isinstance(n, str)}):
            found.append((have != want, key.lower() != repo.rsplit("/", 1)[-1], key))
    found.sort()
    if len(found) > 1 and found[0][:2] == found[1][:2]:
        log.info("%s matches several registry packs (%s); not guessing", repository, [f[2] for f in found])
        return None  # forks with the same node list: installing the wrong one is worse than failing
    return found[0][2] if found else None


async def queue_install(base_url: str, pack: Any, api: ManagerApi, *, client_id: str = "comfyfixer",
                        index: PackIndex | None = None, session: aiohttp.ClientSession | None = None) -> InstallQueued:
    """Queue one pack with the running Manager. Call only on a person's explicit action.

    `pack` is a PackMatch, a PackCandidate or their JSON; `index` (optional) lets a git pack that is
    also in the registry be installed by its registry id, which Manager's 4.x resolver requires.
    """
    target = InstallTarget.of(pack)
    ui_id = f"comfyfixer-{uuid.uuid4().hex[:12]}"
    async with _SessionScope(session, SEND_TIMEOUT) as s:
        registry_id = None
        known = index.pack(target.repository) if index and target.repository and not target.cnr_id else None
        if known is not None:
            mappings = await _get_json(s, base_url, MAPPINGS_PATH[api], params={"mode": "cache"})
            registry_id = registry_id_from_mappings(mappings, target.repository or "", known.node_types)
        requests = install_requests(target, api, client_id=client_id, ui_id=ui_id, registry_id=registry_id)
        for req in requests:
            await _send(s, base_url, req, target)
    queued = InstallQueued(target.title, api, install_spec(target, registry_id)[0], requests)
    log.info("Queued %s with ComfyUI-Manager (%s) as %r", target.title, api, queued.id)
    return queued


# ---------------------------------------------------------------- HTTP edge


class _SessionScope:
    """Use the caller's session, or open (and close) one with a timeout."""

    def __init__(self, session: aiohttp.ClientSession | None, timeout: float):
        self.given, self.timeout = session, timeout
        self.own: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> aiohttp.ClientSession:
        if self.given is not None:
            return self.given
        self.own = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self.own

    async def __aexit__(self, *exc: object) -> None:
        if self.own is not None:
            await self.own.close()


def _url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


async def _get_text(s: aiohttp.ClientSession, base_url: str, path: str) -> str | None:
    """The body of a 200 answer; None for any other status. Unreachable server: ManagerError."""
    try:
        async with s.get(_url(base_url, path)) as r:
            return await r.text() if r.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        raise ManagerError(f"ComfyUI at {base_url} did not answer ({e.__class__.__name__}: {e}). "
                           "Check that ComfyUI is running and the URL is right.") from e


async def _get_json(s: aiohttp.ClientSession, base_url: str, path: str,
                    params: dict[str, str] | None = None) -> Any:
    try:
        async with s.get(_url(base_url, path), params=params) as r:
            if r.status != 200:
                return None
            return await r.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
        log.warning("ComfyUI-Manager %s failed: %s", path, e)
        return None


async def _send(s: aiohttp.ClientSession, base_url: str, req: ManagerRequest, target: InstallTarget) -> None:
    try:
        async with s.request(req.method, _url(base_url, req.path), json=req.body) as r:
            text = (await r.text()).strip()
            status = r.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        raise ManagerError(f"ComfyUI-Manager at {base_url} did not answer while queueing {target.title} "
                           f"({e.__class__.__name__}: {e}). Nothing was installed; retry or install by hand.") from e
    if status in (200, 201):  # 201: Manager's worker was already running
        if req.path.endswith("/queue/batch") and isinstance(failed := _json_or_none(text),
                                                            dict) and failed.get("failed"):
            raise ManagerError(f"ComfyUI-Manager refused to queue {target.title}; its terminal log says why "
                               "(often its security_level). Install by hand instead.")
        return
    if status == 403:
        raise ManagerError(f"ComfyUI-Manager refused to install {target.title}: its security_level forbids it. "
                           "Lower security_level in Manager's config.ini, or install by hand with the commands shown.")
    if status in (404, 405):
        raise ManagerError(f"ComfyUI-Manager at {base_url} has no {req.path} route ({status}); it may be another "
                           "version than detected. Reload the panel to detect it again, or install by hand.")
    raise ManagerError(f"ComfyUI-Manager answered {status} to {req.path} for {target.title}: "
                       f"{text[:300] or 'no details'}. Install by hand with the commands shown.")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None

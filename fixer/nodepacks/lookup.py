"""Which custom node pack provides a missing node type, and how to install it by hand.

Pack identity comes from curated data only: ComfyUI-Manager's `extension-node-map.json` (its
`preemptions`, exact names, then the `nodename_pattern` regexes). A node's `cnr_id` (a registry id)
or `aux_id` (a GitHub repository) is what a shared workflow claims, and anyone can publish to the
registry or GitHub: it only picks among the packs the map lists for its type. A claim the map does
not confirm for that type is shown as "the workflow says ..." and never becomes an install target,
a Manager install or a `git clone` line. The map is read where Manager is installed
(a `custom_nodes/ComfyUI-Manager*` folder, the `comfyui-manager` package, or the lists Manager
downloaded into `user/__manager/cache`), else from the snapshot shipped in fixer/data (built by
scripts/build_node_map.py).

Several packs listing the same type are ranked, most likely first, by:
1. another node of the same run names the pack outright (`cnr_id`/`aux_id`),
2. the pack claims the type in its `preemptions` (Manager's own tie-breaker),
3. how many of this run's missing types the pack provides (one pack covering a workflow beats
   several covering one type each),
4. GitHub stars from Manager's `github-stats.json`,
5. position in the map (the pack Manager itself would pick first).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import re
import shlex
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..models import NodeRef
from ..shapes import MatchKind, MissingNodeEntry, NodeUsage, PackCandidate, PackMatch, PackRef

log = logging.getLogger("fixer.nodepacks.lookup")

MAP_FILE = "extension-node-map.json"
LIST_FILE = "custom-node-list.json"
STATS_FILE = "github-stats.json"
MANAGER_PACKAGE = "comfyui_manager"  # import name of the `comfyui-manager` PyPI package
MANAGER_CACHE = Path("user") / "__manager" / "cache"  # Manager 4.x: "<channel hash>_<file>"
SNAPSHOT_FILE = Path(__file__).resolve().parents[1] / "data" / "node_map.json.gz"
CORE_REPOS = frozenset({"github.com/comfyanonymous/comfyui", "github.com/comfy-org/comfyui"})
CORE_ID = "comfy-core"
REGISTRY_URL = "https://registry.comfy.org/nodes/"

# Third-party regexes run on node type names: bound both sides so a bad one cannot stall a scan.
MAX_PATTERN_LEN = 200
MAX_TYPE_LEN_FOR_PATTERNS = 256
# A quantified group that itself holds a quantifier ("(a+)+", "(\w*)*"): the classic
# catastrophic-backtracking shape. Such patterns are skipped rather than risked.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[*+}]\)[*+{]")


def normalize_repo(url: str) -> str:
    """`https://github.com/A/B.git/` -> `github.com/a/b`: one key for every spelling of a repo."""
    u = url.strip().lower()
    for prefix in ("https://", "http://", "git+https://", "ssh://git@", "git@"):
        if u.startswith(prefix):
            u = u[len(prefix):]
            break
    u = u.replace("github.com:", "github.com/").rstrip("/")
    return u[:-4] if u.endswith(".git") else u


def aux_id_repository(aux_id: str) -> str | None:
    """ComfyUI's `aux_id` is "github-user/repo"; anything else is not a repository we can name."""
    parts = aux_id.strip().strip("/").split("/")
    if len(parts) == 2 and all(re.fullmatch(r"[A-Za-z0-9_.-]+", p) for p in parts):
        return f"https://github.com/{parts[0]}/{parts[1]}"
    return None


def compile_pattern(pattern: Any) -> re.Pattern[str] | None:
    """A Manager `nodename_pattern`, or None when it is not a string, too long, invalid or risky."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_LEN:
        return None
    if _NESTED_QUANTIFIER.search(pattern):
        return None
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


@dataclass(frozen=True)
class Pack:
    """One pack as ComfyUI-Manager's lists describe it."""

    repository: str  # the map's key, as written there
    title: str
    list_id: str | None = None  # custom-node-list `id` (a Manager nickname, sometimes the registry id)
    files: tuple[str, ...] = ()
    install_type: str = "git-clone"
    pip: tuple[str, ...] = ()
    stars: int | None = None
    order: int = 0  # position in extension-node-map.json
    preempts: frozenset[str] = frozenset()
    node_types: tuple[str, ...] = ()  # as the map lists them (ComfyUI-Manager's /getmappings echoes this)

    @property
    def key(self) -> str:
        return normalize_repo(self.repository)

    @property
    def id(self) -> str:
        """`author/repo` for a GitHub pack (ComfyUI's aux_id form), else the last URL part."""
        return _repo_id(self.repository) or self.key


@dataclass
class IndexData:
    """What the three Manager files say, shared by every PackIndex loaded from the same files."""

    packs: dict[str, Pack] = field(default_factory=dict)  # normalized repo -> pack
    by_type: dict[str, list[str]] = field(default_factory=dict)  # node type -> normalized repos, map order
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    core_types: frozenset[str] = frozenset()
    skipped_patterns: list[str] = field(default_factory=list)


@dataclass
class PackIndex:
    """Node type -> pack knowledge from ComfyUI-Manager's data files."""

    data: IndexData = field(default_factory=IndexData)
    source: str | None = None  # the map file read, None when none was found
    comfyui_root: Path | None = None
    load_seconds: float = 0.0
    from_snapshot: bool = False  # the shipped snapshot, not an installed Manager's files

    @classmethod
    def load(cls, comfyui_root: Path | str | None, *, search_package: bool = True,
             snapshot: Path | None = SNAPSHOT_FILE) -> "PackIndex":
        """Manager's files where it is installed (the newest copy), else the `snapshot`; empty if neither.

        Parsed once per process per file version (path + mtime): the map is megabytes.
        """
        root = Path(comfyui_root).expanduser() if comfyui_root else None
        started = time.perf_counter()
        found = find_manager_data(root, search_package=search_package)
        if found is None and snapshot is not None and snapshot.is_file():
            found = ManagerFiles(snapshot, snapshot=True)
        if found is None:
            log.info("ComfyUI-Manager's %s not found; node packs cannot be named", MAP_FILE)
            return cls(comfyui_root=root)
        stamp = (str(found.map), found.map.stat().st_mtime_ns)
        data = _CACHE.get(stamp)
        if data is None:
            data = read_index_data(found)
            _CACHE.clear()  # keep only the current version in memory
            _CACHE[stamp] = data
        seconds = time.perf_counter() - started
        log.info("Node pack index: %d packs, %d node types, %d patterns from %s in %.0f ms",
                 len(data.packs), len(data.by_type), len(data.patterns), found.map, seconds * 1000)
        return cls(data=data, source=str(found.map), comfyui_root=root, load_seconds=seconds,
                   from_snapshot=found.snapshot)

    @property
    def empty(self) -> bool:
        return not self.data.packs

    def pack(self, repository: str) -> Pack | None:
        return self.data.packs.get(normalize_repo(repository))

    def packs_for(self, node_type: str) -> tuple[list[Pack], MatchKind | None]:
        """Packs listing the type by name; else packs whose pattern matches it; in map order."""
        keys = self.data.by_type.get(node_type)
        if keys:
            return [self.data.packs[k] for k in keys], "exact"
        if len(node_type) > MAX_TYPE_LEN_FOR_PATTERNS:
            return [], None
        hits = [self.data.packs[k] for p, k in self.data.patterns if p.search(node_type)]
        return (hits, "pattern") if hits else ([], None)

    def pack_by_id(self, pack_id: str, node_type: str | None = None) -> Pack | None:
        """The pack a registry id names, offline: custom-node-list's `id`, else the repository name.

        Registry ids are usually the lower-cased repo name; when several repos share it, the one
        listing `node_type`, then the most starred, wins.
        """
        want = pack_id.strip().lower()
        by_list = [p for p in self.data.packs.values() if (p.list_id or "").lower() == want]
        found = by_list or [p for p in self.data.packs.values() if p.key.rsplit("/", 1)[-1] == want]
        if not found:
            return None
        listing = set(self.data.by_type.get(node_type or "", ()))
        return min(found, key=lambda p: (p.key not in listing, -(p.stars or 0), p.order))


_CACHE: dict[tuple[str, int], IndexData] = {}


@dataclass(frozen=True)
class ManagerFiles:
    """Where one copy of Manager's lists is: its map, and the node list and stars beside it."""

    map: Path
    listing: Path | None = None
    stats: Path | None = None
    snapshot: bool = False  # `map` is the shipped gzip snapshot holding all three

    @classmethod
    def in_folder(cls, folder: Path) -> "ManagerFiles":
        return cls(folder / MAP_FILE, folder / LIST_FILE, folder / STATS_FILE)


def find_manager_data(root: Path | None, *, search_package: bool = True) -> ManagerFiles | None:
    """The newest of Manager's lists: the root's Manager folders, its download cache, the package."""
    found: list[ManagerFiles] = []
    custom_nodes = root / "custom_nodes" if root else None
    if custom_nodes and custom_nodes.is_dir():
        for d in sorted(custom_nodes.iterdir()):
            name = d.name.lower()
            if d.is_dir() and name.startswith("comfyui-manager") and not name.endswith(".disabled"):
                found += [ManagerFiles.in_folder(c) for c in (d, d / MANAGER_PACKAGE) if (c / MAP_FILE).is_file()]
    cache = root / MANAGER_CACHE if root else None
    if cache and cache.is_dir():
        # One set per channel, named "<hash of the channel URL>_<file>"; the three share the hash.
        for m in cache.glob(f"*_{MAP_FILE}"):
            prefix = m.name[: -len(MAP_FILE)]
            found.append(ManagerFiles(m, cache / f"{prefix}{LIST_FILE}", cache / f"{prefix}{STATS_FILE}"))
    if search_package:
        try:
            spec = importlib.util.find_spec(MANAGER_PACKAGE)  # locates without importing (it needs ComfyUI)
        except (ImportError, ValueError):
            spec = None
        for loc in (spec.submodule_search_locations or []) if spec else []:
            if (Path(loc) / MAP_FILE).is_file():
                found.append(ManagerFiles.in_folder(Path(loc)))
    if not found:
        return None
    return max(found, key=lambda f: f.map.stat().st_mtime_ns)


def _read_json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("Cannot read %s: %s; continuing without it", path, e)
        return None


def _read_snapshot(path: Path) -> tuple[Any, Any, Any]:
    """The shipped snapshot: the three lists, trimmed, in one gzip JSON (scripts/build_node_map.py)."""
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as e:  # gzip.BadGzipFile is an OSError; JSON errors ValueError
        log.warning("Cannot read the node map snapshot %s: %s; node packs cannot be named", path, e)
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    log.info("Node packs named from the snapshot of %s", data.get("source"))
    return data.get(MAP_FILE.removesuffix(".json")), data.get(LIST_FILE.removesuffix(".json")), \
        data.get(STATS_FILE.removesuffix(".json"))


def read_index_data(files: ManagerFiles) -> IndexData:
    """Parse Manager's map, list and stats. Malformed entries are skipped one by one."""
    if files.snapshot:
        ext_map, listing, stats = _read_snapshot(files.map)
    else:
        ext_map, listing, stats = _read_json(files.map), _read_json(files.listing), _read_json(files.stats)
    if not isinstance(ext_map, dict):
        log.warning("%s is not a JSON object; node packs cannot be named", files.map)
        return IndexData()
    stats = stats if isinstance(stats, dict) else {}
    stars = {normalize_repo(u): s.get("stars") for u, s in stats.items() if isinstance(s, dict)}
    entries: dict[str, dict[str, Any]] = {}
    for item in (listing or {}).get("custom_nodes", []) if isinstance(listing, dict) else []:
        if not isinstance(item, dict):
            continue
        for url in [item.get("reference"), *(item.get("files") or [])]:
            if isinstance(url, str):
                entries.setdefault(normalize_repo(url), item)

    data = IndexData()
    by_type: dict[str, list[str]] = defaultdict(list)
    core: set[str] = set()
    for order, (url, value) in enumerate(ext_map.items()):
        if not (isinstance(value, list) and len(value) >= 1 and isinstance(value[0], list)):
            continue
        names = [n for n in value[0] if isinstance(n, str)]
        meta = value[1] if len(value) > 1 and isinstance(value[1], dict) else {}
        key = normalize_repo(url)
        if key in CORE_REPOS:
            core.update(names)
            continue
        item = entries.get(key, {})
        s = stars.get(key)
        pack = Pack(
            repository=url,
            title=str(item.get("title") or meta.get("title_aux") or meta.get("title") or url.rsplit("/", 1)[-1]),
            list_id=item.get("id") if isinstance(item.get("id"), str) else None,
            files=tuple(f for f in item.get("files") or [url] if isinstance(f, str)),
            install_type=str(item.get("install_type") or "git-clone"),
            pip=tuple(p for p in item.get("pip") or [] if isinstance(p, str)),
            stars=s if isinstance(s, int) else None,
            order=order,
            preempts=frozenset(p for p in meta.get("preemptions") or [] if isinstance(p, str)),
            node_types=tuple(names),
        )
        if key in data.packs:
            continue
        data.packs[key] = pack
        for n in names:
            by_type[n].append(key)
        if "nodename_pattern" in meta:
            compiled = compile_pattern(meta["nodename_pattern"])
            if compiled is None:
                data.skipped_patterns.append(f"{url}: {meta['nodename_pattern']!r}")
            else:
                data.patterns.append((compiled, key))
    data.by_type = dict(by_type)
    data.core_types = frozenset(core)
    if data.skipped_patterns:
        log.warning("Skipped %d unusable nodename_pattern(s): %s", len(data.skipped_patterns),
                    "; ".join(data.skipped_patterns))
    return data


# ---------------------------------------------------------------- versions

_SEMVER = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.][0-9A-Za-z.+-]*)?")


def parse_version(ver: str | None) -> tuple[int, int, int] | None:
    """"0.3.64", "v0.3.64", "0.3.64-rc1" -> (0, 3, 64); a git hash, "unknown" or None -> None."""
    if not ver:
        return None
    m = _SEMVER.fullmatch(ver.strip())
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def is_newer(ver: str | None, running: str | None) -> bool | None:
    """Is `ver` newer than the running ComfyUI? None when either is not a version."""
    a, b = parse_version(ver), parse_version(running)
    return None if a is None or b is None else a > b


def comfyui_version_from_root(root: Path | str | None) -> str | None:
    """The version a ComfyUI checkout declares in comfyui_version.py (CLI side; in ComfyUI import it)."""
    if not root:
        return None
    try:
        text = (Path(root) / "comfyui_version.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return m[1] if m else None


# ---------------------------------------------------------------- matching


def search_url(node_type: str) -> str:
    """Where a person can look for a type no list knows: GitHub code search for its exact name."""
    return "https://github.com/search?type=code&q=" + quote(f'"{node_type}"', safe="")


@dataclass
class _Decision:
    kind: MatchKind
    pack: Pack | None = None
    ranked: list[Pack] = field(default_factory=list)
    cnr_id: str | None = None
    repository: str | None = None
    reason: str = ""
    workflow_says: str | None = None  # a claim the map does not confirm for the type


def match_missing_nodes(nodes: list[NodeRef], index: PackIndex, comfyui_version: str | None,
                        *, python: str = "python") -> list[PackMatch]:
    """Group missing node types by the pack that provides them; `python` goes into pip commands."""
    if not nodes:
        return []
    if comfyui_version is None:  # the CLI may not know it; the checkout under the root says it
        comfyui_version = comfyui_version_from_root(index.comfyui_root)
    provided: dict[str, list[Pack]] = {}
    kinds: dict[str, MatchKind | None] = {}
    for ref in nodes:
        provided[ref.node_type], kinds[ref.node_type] = index.packs_for(ref.node_type)
    coverage: dict[str, int] = defaultdict(int)
    for packs in provided.values():
        for p in packs:
            coverage[p.key] += 1
    # Packs other nodes of the run name outright (cnr_id/aux_id) are the likeliest for hint-less types.
    named: set[str] = set()
    for ref in nodes:
        pack = _aux_pack(ref, index) or (index.pack_by_id(ref.cnr_id, ref.node_type)
                                         if ref.cnr_id and ref.cnr_id != CORE_ID else None)
        if pack:
            named.add(pack.key)
    rank = _Ranking(coverage, named)

    decisions = {ref.node_type: _decide(ref, index, comfyui_version, provided[ref.node_type],
                                        kinds[ref.node_type], rank) for ref in nodes}
    groups: dict[tuple[str, str], list[NodeRef]] = defaultdict(list)
    for ref in nodes:
        d = decisions[ref.node_type]
        groups[_group_key(ref, d)].append(ref)

    out = [_build_match(refs, [decisions[r.node_type] for r in refs], index, python)
           for refs in groups.values()]
    order = {"cnr_id": 0, "aux_id": 0, "exact": 0, "pattern": 0, "update_comfyui": 1, "unknown": 2}
    out.sort(key=lambda m: (order[m.matched_by], -len(m.node_types), m.title.lower()))
    return out


@dataclass
class _Ranking:
    """Most likely first: named by the run's other nodes, Manager's preemptions, coverage, stars, map order."""

    coverage: dict[str, int]
    named: set[str]

    def sort(self, packs: list[Pack], node_type: str) -> list[Pack]:
        return sorted(packs, key=lambda p: (p.key not in self.named, node_type not in p.preempts,
                                            -self.coverage[p.key], -(p.stars or 0), p.order))

    def reason(self, ranked: list[Pack], node_type: str) -> str:
        if len(ranked) == 1:
            return ""
        top, second = ranked[0], ranked[1]
        if top.key in self.named and second.key not in self.named:
            why = "other nodes of the workflows name this pack"
        elif node_type in top.preempts and node_type not in second.preempts:
            why = "it claims this type in Manager's preemptions"
        elif self.coverage[top.key] > self.coverage[second.key]:
            why = f"it provides {self.coverage[top.key]} of the missing types"
        elif (top.stars or 0) > (second.stars or 0):
            why = f"most GitHub stars ({top.stars})"
        else:
            why = "listed first in Manager's map"
        return f"; {len(ranked)} packs provide it, ranked first because {why}"


def _decide(ref: NodeRef, index: PackIndex, running: str | None, packs: list[Pack],
            kind: MatchKind | None, rank: _Ranking) -> _Decision:
    t = ref.node_type
    ranked = rank.sort(packs, t)
    cnr = (ref.cnr_id or "").strip()
    core = cnr == CORE_ID
    if core:
        newer = is_newer(ref.ver, running)
        if newer or newer is None:
            need = f"ComfyUI {ref.ver}" if parse_version(ref.ver) else "a newer ComfyUI"
            have = f"this is {running}" if running else "this ComfyUI lacks it"
            return _Decision("update_comfyui", ranked=ranked, reason=f"core node from {need}; {have}")
        # Running ComfyUI is as new as the workflow's, yet lacks the type: renamed, removed or
        # disabled (e.g. --disable-api-nodes). Fall through to the lists below.
        cnr = ""
    claim = _claim(cnr, ref.aux_id)
    confirmed = next((p for p in ranked if _claimed(p, cnr, ref.aux_id)), None)
    if confirmed is not None:  # the workflow names one of the packs the map lists for this type
        by_id = bool(cnr) and _has_id(confirmed, cnr)
        others = [p for p in ranked if p is not confirmed]
        return _Decision("cnr_id" if by_id else "aux_id", pack=confirmed, ranked=others,
                         cnr_id=cnr if by_id else None, repository=confirmed.repository,
                         reason=f"the workflow names {claim}, which Manager's map lists for this type")
    says = (f"; the workflow says it comes from {claim}, which Manager's map does not list for this type "
            "(not installed from here)") if claim else ""
    if t in index.data.core_types and not core:  # (not when the workflow's core version is no newer)
        return _Decision("update_comfyui", ranked=ranked, workflow_says=claim,
                         reason=f"Manager lists it as a ComfyUI core node; this ComfyUI lacks it{says}")
    if ranked and kind:
        how = "listed by name" if kind == "exact" else "matched by its nodename_pattern"
        return _Decision(kind, pack=ranked[0], ranked=ranked[1:], repository=ranked[0].repository, workflow_says=claim,
                         reason=f"{how} in Manager's map{rank.reason(ranked, t)}{says}")
    note = ""
    if core:
        note = f"; the workflow calls it a core node of ComfyUI {ref.ver} but this ComfyUI ({running}) lacks it"
    where = "ComfyUI-Manager's map" if not index.empty else "any list (ComfyUI-Manager's map was not found)"
    return _Decision("unknown", workflow_says=claim, reason=f"no pack in {where} provides it{note}{says}")


def _claim(cnr: str, aux_id: str | None) -> str | None:
    """A workflow's word on a node's pack, for a person: the registry id, else the repository."""
    if cnr:
        return f"registry pack {cnr!r}"
    repo = aux_id_repository(aux_id or "")
    return f"repository {repo}" if repo else None


def _has_id(pack: Pack, pack_id: str) -> bool:
    """Whether a registry id names `pack` (as PackIndex.pack_by_id reads one)."""
    want = pack_id.strip().lower()
    return (pack.list_id or "").lower() == want or pack.key.rsplit("/", 1)[-1] == want


def _claimed(pack: Pack, cnr: str, aux_id: str | None) -> bool:
    repo = aux_id_repository(aux_id or "")
    return (bool(cnr) and _has_id(pack, cnr)) or (repo is not None and pack.key == normalize_repo(repo))


def _aux_pack(ref: NodeRef, index: PackIndex) -> Pack | None:
    repo = aux_id_repository(ref.aux_id or "")
    return index.pack(repo) if repo else None


def _group_key(ref: NodeRef, d: _Decision) -> tuple[str, str]:
    if d.kind == "update_comfyui":
        return ("core", "")
    if d.kind == "unknown":
        return ("unknown", ref.node_type)
    # One pack named several ways (a cnr_id on one node, found by name for another) is one group.
    assert d.pack is not None  # every other decision names a pack of the map
    return ("pack", d.pack.key)


_TRUST: dict[str, int] = {"cnr_id": 0, "aux_id": 1, "exact": 2, "pattern": 3, "update_comfyui": 4, "unknown": 5}


def _build_match(refs: list[NodeRef], decisions: list[_Decision], index: PackIndex, python: str) -> PackMatch:
    d = min(decisions, key=lambda x: _TRUST[x.kind])  # the group is described by its most trusted evidence
    cnr_id = next((x.cnr_id for x in decisions if x.cnr_id), None)
    types = sorted({r.node_type for r in refs})
    workflows = sorted({u.workflow for r in refs for u in r.usages})
    versions = [r.ver for r in refs if r.ver and r.ver != "unknown"]
    version = max(versions, key=lambda v: parse_version(v) or (-1, -1, -1)) if versions else None
    reasons = sorted({x.reason for x in decisions})
    reason = " | ".join(reasons)
    own = d.pack.key if d.pack else normalize_repo(d.repository or "")
    # Candidates keep the rank of the first type that listed them (most likely first).
    seen: dict[str, PackCandidate] = {}
    for ref, x in zip(refs, decisions):
        for p in x.ranked:
            if p.key == own:
                continue
            c = seen.get(p.key)
            if c is None:
                seen[p.key] = c = PackCandidate(
                    id=p.id, title=p.title, repository=p.repository, stars=p.stars, node_types=[],
                    install=install_commands(p.repository, files=p.files, install_type=p.install_type,
                                             pip=p.pip, root=index.comfyui_root, python=python),
                    files=list(p.files), pip=list(p.pip))
            if ref.node_type not in c.node_types:
                c.node_types.append(ref.node_type)
    candidates = list(seen.values())

    says = "; ".join(sorted({x.workflow_says for x in decisions if x.workflow_says})) or None
    if d.kind == "update_comfyui":
        return PackMatch(id=CORE_ID, title="ComfyUI (core)", repository="https://github.com/comfyanonymous/ComfyUI",
                         version=version, matched_by=d.kind, node_types=types, workflows=workflows, reason=reason,
                         candidates=candidates, install=update_comfyui_commands(index.comfyui_root, python),
                         cnr_id=CORE_ID, workflow_says=says)
    if d.kind == "unknown":
        return PackMatch(id=None, title=f"Unknown pack for {types[0]}", repository=None, version=None,
                         matched_by="unknown", node_types=types, workflows=workflows, reason=reason,
                         search_url=search_url(types[0]), workflow_says=says)
    pack = d.pack  # every other decision names a pack of Manager's map: the only install targets
    assert pack is not None
    install_git = install_commands(pack.repository, files=pack.files, install_type=pack.install_type, pip=pack.pip,
                                   root=index.comfyui_root, python=python)
    # comfy-cli takes a registry id; for a listed pack, Manager's key for it: the repository name, lower-cased.
    install_cli = registry_install_commands(cnr_id or pack.key.rsplit("/", 1)[-1], index.comfyui_root)
    return PackMatch(id=cnr_id or pack.id, title=pack.title, repository=pack.repository, version=version,
                     matched_by=d.kind, node_types=types, workflows=workflows, reason=reason, candidates=candidates,
                     install=install_cli if cnr_id else install_git, cnr_id=cnr_id, files=list(pack.files),
                     pip=list(pack.pip), workflow_says=says, manager_installable=True,
                     install_git=install_git, install_cli=install_cli)


def _repo_id(repo: str | None) -> str | None:
    """`https://github.com/Author/Repo` -> `Author/Repo` (case kept: Manager and git care)."""
    if not repo:
        return None
    parts = repo.strip().rstrip("/").removesuffix(".git").split("://", 1)[-1].split("/")
    if len(parts) == 3 and parts[0].lower() == "github.com":
        return f"{parts[1]}/{parts[2]}"
    return parts[-1]


# ---------------------------------------------------------------- install commands (by hand)


def _custom_nodes(root: Path | None) -> str:
    return str(Path(root) / "custom_nodes") if root else "custom_nodes"


def install_commands(repository: str, *, files: tuple[str, ...] = (), install_type: str = "git-clone",
                     pip: tuple[str, ...] = (), root: Path | None = None, python: str = "python") -> list[str]:
    """The exact shell commands that install a pack by hand (relative paths: run them in the ComfyUI folder)."""
    cn = _custom_nodes(root)
    q = shlex.quote
    sources = list(files) or [repository]
    cmds: list[str] = []
    if install_type == "copy":
        for url in sources:
            name = url.rstrip("/").rsplit("/", 1)[-1]
            cmds.append(f"curl -L -o {q(f'{cn}/{name}')} {q(url)}")
    elif install_type == "unzip":
        for url in sources:
            name = url.rstrip("/").rsplit("/", 1)[-1]
            cmds.append(f"curl -L -o {q(name)} {q(url)} && unzip -o {q(name)} -d {q(cn)}")
    else:
        url = sources[0]
        folder = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        target = f"{cn}/{folder}"
        cmds.append(f"git clone {q(url)} {q(target)}")
        # Most packs ship one; pip fails harmlessly with "No such file" when this one does not.
        cmds.append(f"{q(python)} -m pip install -r {q(f'{target}/requirements.txt')}")
    if pip:
        cmds.append(f"{q(python)} -m pip install " + " ".join(q(p) for p in pip))
    return cmds


def registry_install_commands(cnr_id: str, root: Path | None) -> list[str]:
    """comfy-cli installs a registry pack (and its requirements) into the workspace."""
    ws = f"--workspace {shlex.quote(str(root))} " if root else ""
    return [f"comfy {ws}node install {shlex.quote(cnr_id)}"]


def update_comfyui_commands(root: Path | None, python: str = "python") -> list[str]:
    """A git checkout of ComfyUI (the portable and desktop builds have their own updaters)."""
    q = shlex.quote
    where = str(root) if root else "."
    return [f"git -C {q(where)} pull", f"{q(python)} -m pip install -r {q(str(Path(where) / 'requirements.txt'))}"]


# ---------------------------------------------------------------- outputs


def missing_nodes_json(nodes: list[NodeRef], matches: list[PackMatch]) -> list[MissingNodeEntry]:
    """output/missing_nodes.json: one entry per missing type, with the pack that provides it."""
    by_type = {t: m for m in matches for t in m.node_types}
    out = []
    for ref in sorted(nodes, key=lambda r: r.node_type.lower()):
        m = by_type.get(ref.node_type)
        out.append(MissingNodeEntry(
            node_type=ref.node_type, class_type=ref.node_type, count=len(ref.usages), workflows=ref.workflows,
            node_ids=sorted({u.node_id for u in ref.usages}, key=_natural),
            usages=[NodeUsage(u.workflow, u.node_id, list(u.subgraph_path), u.optional) for u in ref.usages],
            optional=ref.optional, cnr_id=ref.cnr_id, aux_id=ref.aux_id, ver=ref.ver,
            pack_id=m.id if m else None, pack_title=m.title if m else None,
            repository=m.repository if m else None, version=m.version if m else None,
            matched_by=m.matched_by if m else "unknown", reason=m.reason if m else "",
            candidates=[PackRef(c.id, c.title, c.repository, c.stars) for c in (m.candidates if m else [])],
            install=m.install if m else [], install_git=m.install_git if m else [],
            install_cli=m.install_cli if m else [], workflow_says=m.workflow_says if m else None,
            manager_installable=m.manager_installable if m else False,
            search_url=m.search_url if m else search_url(ref.node_type)))
    return out


def _natural(node_id: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", node_id))


def packs_markdown(matches: list[PackMatch]) -> str:
    """The body of summary_report.md's "Missing custom nodes" section (the caller writes the heading)."""
    lines: list[str] = []
    if not matches:
        return "No node types are missing.\n"
    n_types = sum(len(m.node_types) for m in matches)
    packs = [m for m in matches if m.matched_by not in ("update_comfyui", "unknown")]
    unknown = [m for m in matches if m.matched_by == "unknown"]
    lines += [f"{n_types} missing node type(s): {len(packs)} pack(s) to install"
              + (", ComfyUI to update" if any(m.matched_by == "update_comfyui" for m in matches) else "")
              + (f", {len(unknown)} type(s) no list knows" if unknown else "") + ".", ""]
    for m in matches:
        if m.matched_by == "unknown":
            lines.append(f"### Unknown: `{m.node_types[0]}`")
            lines.append(f"- {m.reason}. Search: {m.search_url}")
        else:
            head = f"### {m.title}" + (f" (`{m.id}`)" if m.id and m.id != m.title else "")
            lines.append(head)
            if m.matched_by == "update_comfyui":
                lines.append("- Update ComfyUI" + (f" to {m.version} or newer" if m.version else "")
                             + "; these are core nodes, not a custom pack.")
            if m.repository:
                lines.append(f"- Repository: {m.repository}")
            if m.version:
                lines.append(f"- Version in workflow: {m.version}")
            lines.append(f"- Matched by: {m.matched_by} ({m.reason})")
        if m.workflow_says:
            lines.append(f"- The workflow says: {m.workflow_says} (Manager's map does not list it for these types; "
                         "not installed from here)")
        lines.append("- Node types: " + ", ".join(f"`{t}`" for t in m.node_types))
        lines.append("- Workflows: " + ", ".join(m.workflows))
        if m.candidates:
            lines.append("- Also provided by: " + ", ".join(
                f"{c.title} ({c.repository}" + (f", {c.stars} stars" if c.stars is not None else "") + ")"
                for c in m.candidates[:5]) + (f" and {len(m.candidates) - 5} more" if len(m.candidates) > 5 else ""))
        if m.matched_by == "update_comfyui":
            lines += ["- Update by hand, then restart ComfyUI:", "", "```sh", *m.install, "```"]
        for how, cmds in (("with git", m.install_git), ("with comfy-cli", m.install_cli)):
            if cmds:
                lines += [f"- Install {how}, then restart ComfyUI:", "", "```sh", *cmds, "```"]
        lines.append("")
    return "\n".join(lines)

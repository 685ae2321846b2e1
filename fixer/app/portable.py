""""Make this workflow portable": a copy of a workflow whose top-level `models[]` names, for every model
it uses that we resolved, where to get it (ComfyUI frontend schema: name, url, hash, hash_type,
directory), so the next user's ComfyUI offers the download in one click.

URLs are written in their public form (huggingface.co / civitai.com) even when this run used a mirror
or a test endpoint, and never with a token in them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeGuard, get_args
from urllib.parse import urlsplit, urlunsplit

from ..constants import CIVITAI_DEFAULT_BASE_URL, HF_DEFAULT_ENDPOINT, civitai_base_url, hf_endpoint
from ..models import Candidate, Resolution, Source
from ..read.readers import parse_json_text
from ..state import write_text_atomic
from ..transfer.policy import strip_secret_query


def public_url(url: str, hf: str | None = None, civitai: str | None = None) -> str:
    """The URL as another user would fetch it: default hosts instead of configured ones, no token."""
    pairs = [(hf or hf_endpoint(), HF_DEFAULT_ENDPOINT), (civitai or civitai_base_url(), CIVITAI_DEFAULT_BASE_URL)]
    if urlsplit(url).path.startswith(("/api/download/", "/api/v1/")):
        pairs.reverse()  # Civitai's own paths: decides when both services sit behind one address (a mirror)
    for mine, public in pairs:
        mine = mine.rstrip("/")
        if mine != public and url.startswith(mine + "/"):
            url = public + url[len(mine):]
            break
    return urlunsplit(urlsplit(strip_secret_query(url))._replace(fragment=""))


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def used_names(workflow: dict[str, Any]) -> set[str]:
    """Widget values of every node, subgraphs included, with separators normalised to "/"."""
    nodes = list(workflow.get("nodes") or [])
    for sg in ((workflow.get("definitions") or {}).get("subgraphs") or []):
        nodes += list(sg.get("nodes") or [])
    return {s.strip().replace("\\", "/") for n in nodes if isinstance(n, dict)
            for s in _strings(n.get("widgets_values"))}


def _downloadable(res: Resolution, threshold: float) -> Candidate | None:
    """The chosen candidate if it has a URL; a local pick falls back to the best sure remote one."""
    if res.chosen is None:
        return None
    pool = [res.chosen] + [c for c in res.candidates if c.confidence >= threshold]
    return next((c for c in pool if c.url and c.folder), None)


def model_entry(res: Resolution, c: Candidate) -> dict[str, str]:
    entry = {"name": res.name, "url": public_url(c.url or ""), "directory": c.folder or res.folder or ""}
    if c.sha256:
        entry.update(hash=c.sha256.lower(), hash_type="sha256")
    return entry


def make_portable(workflow: dict[str, Any], resolutions: Iterable[Resolution],
                  threshold: float = 0.7) -> dict[str, Any]:
    """A copy of `workflow` with a models[] entry for each resolved model it uses; existing entries
    for other names are kept, entries for the same name are replaced."""
    names = used_names(workflow)
    entries: dict[str, dict[str, str]] = {}
    for res in resolutions:
        c = _downloadable(res, threshold)
        if c is not None and res.name in names:
            entries[res.name] = model_entry(res, c)
    out: dict[str, Any] = json.loads(json.dumps(workflow))  # a deep copy of the workflow's JSON
    kept = [m for m in out.get("models") or [] if isinstance(m, dict) and m.get("name") not in entries]
    out["models"] = kept + sorted(entries.values(), key=lambda m: m["name"])
    _scrub_model_urls(out)
    return out


def _is_source(value: object) -> TypeGuard[Source]:
    """A download record (read from disk) names one of the candidate sources."""
    return value in get_args(Source)


def recorded_resolutions(output_dir: Path, used: dict[str, str | None],
                         comfyui_root: Path | None = None) -> list[Resolution]:
    """Links for models the workflow uses that are already present: this pack's download records
    first (what was really fetched, with its sha256), then the offline catalogs (ComfyUI's
    templates, ComfyUI-Manager's model list) when they give one link for that name and folder."""
    from ..sources.catalogs import CatalogFiles, CatalogSource
    from ..transfer.records import DOWNLOADED_FILE, read_records

    found: dict[str, Resolution] = {}
    for e in read_records(output_dir / DOWNLOADED_FILE):
        name = str(e.get("name") or "")
        if e.get("state") == "done" and name in used and isinstance(e.get("url"), str) and e.get("folder"):
            # A record naming no known source (written before sources were kept, or damaged) still holds the
            # link downloaded: "user", a link from outside the searches, is closest. Only the link is used here.
            source = e.get("source")
            c = Candidate(source=source if _is_source(source) else "user", filename=name, folder=e["folder"],
                          confidence=1.0, reason="downloaded by ComfyFixerSmart", url=e["url"], sha256=e.get("sha256"))
            found[name] = Resolution(name, e["folder"], c)
    index = CatalogSource(CatalogFiles(comfyui_root)).index() if any(n not in found for n in used) else {}
    for name, folder in used.items():
        if name in found:
            continue
        entries = [x for x in index.get(name.lower(), []) if x.name == name and (folder is None or x.folder == folder)]
        if len({x.url for x in entries}) == 1 and entries[0].folder:
            x = entries[0]
            c = Candidate(source="catalog", filename=name, folder=x.folder, confidence=1.0,
                          reason=f"{x.origin} lists it",
                          url=x.url, sha256=x.sha256)
            found[name] = Resolution(name, x.folder, c)
    return list(found.values())


def without_link(portable: dict[str, Any], used: dict[str, str | None]) -> list[str]:
    """The models a portable copy still gives no download link for, by name."""
    linked = {m.get("name") for m in portable.get("models") or [] if isinstance(m, dict) and m.get("url")}
    nodes = list(portable.get("nodes") or [])
    for sg in ((portable.get("definitions") or {}).get("subgraphs") or []):
        nodes += list(sg.get("nodes") or []) if isinstance(sg, dict) else []
    for n in nodes:
        props = n.get("properties") if isinstance(n, dict) else None
        models = props.get("models") if isinstance(props, dict) else None
        linked |= {m.get("name") for m in models or [] if isinstance(m, dict) and m.get("url")}
    return sorted(n for n in used if n not in linked)


def _scrub_model_urls(workflow: dict[str, Any]) -> None:
    """A copy made for sharing must not carry a token someone pasted into a model link."""
    nodes = list(workflow.get("nodes") or [])
    for sg in ((workflow.get("definitions") or {}).get("subgraphs") or []):
        nodes += list(sg.get("nodes") or []) if isinstance(sg, dict) else []
    lists = [workflow.get("models")] + [(n.get("properties") or {}).get("models") for n in nodes
                                        if isinstance(n, dict) and isinstance(n.get("properties"), dict)]
    for entries in lists:
        for m in entries if isinstance(entries, list) else []:
            if isinstance(m, dict) and isinstance(m.get("url"), str):
                m["url"] = public_url(m["url"])


def write_portable(src: str | os.PathLike[str], resolutions: Iterable[Resolution],
                   dest: str | os.PathLike[str] | None = None, threshold: float = 0.7) -> Path:
    """Write `<name>.portable.json` beside the original (or to `dest`); the original is never touched."""
    src = Path(src)
    data = parse_json_text(src.read_text(encoding="utf-8", errors="surrogateescape"), src)
    target = Path(dest) if dest else src.with_name(f"{src.stem}.portable.json")
    write_text_atomic(target, json.dumps(make_portable(data, resolutions, threshold), indent=2, ensure_ascii=False))
    return target

"""Resolver-side routes of the fake: Hugging Face list/info/tree/paths-info, Civitai search, versions, by-hash,
and an OpenAI-compatible chat endpoint for the optional LLM source.

Searches run over an in-memory catalogue built from the fixtures, with the real services' semantics
(docs/upstream.md, "What a search can find"): HF `search` is a substring of the repo id only;
Civitai `query` matches words of name, creator username, file hashes and trained words, dropping
query words from the end until something matches ("last" strategy); file names are never searched.
Canned searches listed in the fixtures' index files answer exactly as recorded.

Tests and benchmarks grow the catalogue through `add_hf_repo(up, ...)` and `add_civitai_model(up, ...)`;
`up.state["llm_replies"]` holds (substring of the prompt, reply text) pairs for the chat endpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .server import UPSTREAM

REAL_CIVITAI_ORIGINS = ("https://api.civitai.com", "https://civitai.com")
IGNORED_CIVITAI_MATCH_PARAMS = {"limit", "nsfw", "token"}
HF_PAGE_SIZE = 50  # the Hub pages search answers; the rest is behind the Link header (docs/upstream.md)


# ---------------------------------------------------------------- catalogue ----------------------------


def _state(up: Any) -> dict[str, Any]:
    """Load the fixtures into up.state once; later additions go into the same dicts."""
    st = up.state
    if st.get("_api_loaded"):
        return st
    fx: Path = up.fixtures
    hf_index = json.loads((fx / "huggingface/index.json").read_text())["repos"]
    repos = st.setdefault("hf_repos", {})
    for repo_id, meta in hf_index.items():
        if repo_id in repos or not (fx / "huggingface" / meta["info"]).exists():
            continue
        repos[repo_id] = {
            "info": json.loads((fx / "huggingface" / meta["info"]).read_text()),
            "tree": json.loads((fx / "huggingface" / meta["tree"]).read_text()),
            "commit": meta["commit"],
        }
    st.setdefault("hf_canned", json.loads((fx / "huggingface/api/models/search/index.json").read_text()))
    versions = st.setdefault("civitai_versions", {})
    for p in sorted((fx / "civitai/model-versions").glob("*.json")):
        body = json.loads(p.read_text())
        versions.setdefault(int(body["id"]), body)
    models = st.setdefault("civitai_models", {})
    for p in sorted((fx / "civitai/models").glob("*.json")):
        body = json.loads(p.read_text())
        models.setdefault(int(body["id"]), body)
    civ_index = json.loads((fx / "civitai/index.json").read_text())
    for entry in civ_index["searches"]:
        for item in json.loads((fx / "civitai" / entry["file"]).read_text()).get("items", []):
            models.setdefault(int(item["id"]), item)
    for vid, v in versions.items():  # a model for every version, so name search can reach it
        mid = int(v["modelId"])
        if mid not in models:
            models[mid] = _model_from_version(v)
        elif not any(int(mv["id"]) == vid for mv in models[mid].get("modelVersions", [])):
            models[mid].setdefault("modelVersions", []).append({k: x for k, x in v.items() if k != "model"})
    st.setdefault("civitai_canned", civ_index["searches"])
    st.setdefault("civitai_hash_index", json.loads((fx / "civitai/by-hash/index.json").read_text())["hashes"])
    st.setdefault("llm_replies", [])
    st["_api_loaded"] = True
    return st


def _model_from_version(v: dict[str, Any], username: str = "fixture") -> dict[str, Any]:
    m = v.get("model", {})
    return {
        "id": int(v["modelId"]), "name": m.get("name", ""), "type": m.get("type", "Other"),
        "nsfw": m.get("nsfw", False), "poi": m.get("poi", False), "description": None,
        "stats": {"downloadCount": v.get("stats", {}).get("downloadCount", 0)},
        "creator": {"username": username, "image": None}, "tags": [],
        "modelVersions": [{k: x for k, x in v.items() if k != "model"}],
    }


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_hf_repo(
    up: Any, repo_id: str, files: dict[str, tuple[int, str | None]], *, downloads: int = 0, likes: int = 0,
    gated: bool | str = False, commit: str | None = None,
) -> None:
    """Add a repo: `files` maps path -> (size, sha256 or None for a small git file)."""
    st = _state(up)
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    tree: list[dict[str, Any]] = []
    siblings: list[dict[str, Any]] = []
    dirs: set[str] = set()
    for path, (size, sha) in sorted(files.items()):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
        if sha:
            pointer = _lfs_pointer(sha, size)
            oid = _git_blob_sha1(pointer)
            lfs = {"oid": sha, "size": size, "pointerSize": len(pointer)}
            tree.append({"type": "file", "oid": oid, "size": size, "lfs": lfs, "path": path})
            siblings.append({"rfilename": path, "size": size, "blobId": oid,
                             "lfs": {"sha256": sha, "size": size, "pointerSize": len(pointer)}})
        else:
            oid = _git_blob_sha1(b"x" * size)
            tree.append({"type": "file", "oid": oid, "size": size, "path": path})
            siblings.append({"rfilename": path, "size": size, "blobId": oid})
    for d in sorted(dirs):
        tree.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
    author = repo_id.split("/")[0]
    st["hf_repos"][repo_id] = {
        "commit": commit,
        "tree": tree,
        "info": {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": author, "sha": commit, "lastModified": "2025-01-01T00:00:00.000Z", "private": False,
            "disabled": False, "gated": gated, "downloads": downloads, "likes": likes, "tags": ["region:us"],
            "createdAt": "2024-01-01T00:00:00.000Z", "siblings": siblings, "spaces": [],
        },
    }


def add_civitai_model(up: Any, model: dict[str, Any]) -> None:
    """Add a Model item (as /api/v1/models returns it, versions with files); versions become fetchable."""
    st = _state(up)
    st["civitai_models"][int(model["id"])] = model
    for mv in model.get("modelVersions", []):
        body = {**mv, "modelId": int(model["id"]),
                "model": {"name": model["name"], "type": model["type"], "nsfw": bool(model.get("nsfw")), "poi": False}}
        body.setdefault("status", "Published")
        st["civitai_versions"][int(mv["id"])] = body


def crowd_searches(up: Any, hf_words: list[str] = (), civitai_words: list[str] = (), per_word: int = 120) -> None:
    """Popular words fill whole result pages on the real services: add `per_word` busy repos / models whose
    ids or names hold each word and that are downloaded more than anything a test adds, none of them holding
    a file a workflow names. A resolver that reads only the first page of a popular word misses the rest."""
    for word in hf_words:
        for i in range(per_word):
            sha = hashlib.sha256(f"crowd:{word}:{i}".encode()).hexdigest()
            add_hf_repo(up, f"crowd{i % 13}/{word}-finetune-{i}", {f"{word}_finetune_{i}.safetensors": (4096 + i, sha)},
                        downloads=10_000_000 - i)
    for j, word in enumerate(civitai_words):
        for i in range(per_word):
            mid = 5_000_000 + j * 10_000 + i
            sha = hashlib.sha256(f"crowd:civitai:{word}:{i}".encode()).hexdigest().upper()
            add_civitai_model(up, {
                "id": mid, "name": f"{word.title()} Crowd {i}", "type": "LORA", "nsfw": i % 3 == 0,
                "creator": {"username": f"crowd{i % 7}"}, "stats": {"downloadCount": 10_000_000 - i},
                "modelVersions": [{"id": mid * 10, "name": "v1", "baseModel": "SDXL 1.0", "trainedWords": [word],
                                   "files": [{"id": mid * 10, "name": f"{word}_crowd_{i}.safetensors", "sizeKB": 4.0,
                                              "type": "Model", "metadata": {"format": "SafeTensor"}, "primary": True,
                                              "hashes": {"SHA256": sha},
                                              "downloadUrl": f"https://civitai.com/api/download/models/{mid * 10}"}]}]})


# ---------------------------------------------------------------- helpers ------------------------------


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _civitai_json(request: web.Request, body: Any, status: int = 200, headers: dict[str, str] | None = None):
    """Civitai builds downloadUrl from the request host; the fake does the same by rewriting the origin."""
    text = json.dumps(body)
    for origin in REAL_CIVITAI_ORIGINS:
        text = text.replace(origin, _origin(request))
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


def _civitai_error(up: Any, name: str, status: int) -> web.Response:
    body = json.loads((up.fixtures / "civitai/errors" / f"{name}.json").read_text())
    return web.json_response(body, status=status)


def _hf_error(code: str, message: str, status: int, **extra: str) -> web.Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message, **extra}
    return web.json_response({"error": message}, status=status, headers=headers)


def hf_bare_401() -> web.Response:
    return web.json_response({"error": "Invalid username or password."}, status=401, headers={
        "X-Error-Message": "Invalid username or password.",
        "WWW-Authenticate": 'Bearer realm="Authentication required", charset="UTF-8"'})


def _multi(request: web.Request, key: str) -> list[str]:
    """Repeated (`types=A&types=B`) and comma-separated (`types=A,B`) values, both as the docs allow."""
    out: list[str] = []
    for v in request.query.getall(key, []):
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


# ---------------------------------------------------------------- Hugging Face -------------------------


def _hf_repo_or_error(up: Any, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
    repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
    repo = _state(up)["hf_repos"].get(repo_id)
    if repo is None:
        # Live HF answers a signed-in caller 404 RepoNotFound, and an anonymous one a bare 401 with no error
        # code (docs/upstream.md, "Refusals"): the same answer a private repo gets, so the client cannot tell
        # them apart.
        if request.headers.get("Authorization"):
            return None, _hf_error("RepoNotFound", "Repository not found", 404)
        return None, hf_bare_401()
    rev = request.match_info.get("rev")
    if rev is not None and rev not in ("main", repo["commit"]):
        return None, _hf_error("RevisionNotFound", f"Invalid rev id: {rev}", 404)
    return repo, None


def _hf_list_item(repo: dict[str, Any], full: bool) -> dict[str, Any]:
    info = repo["info"]
    keys = ("_id", "id", "likes", "downloads", "private", "tags", "createdAt", "modelId", "trendingScore",
            "pipeline_tag", "library_name")
    item = {k: info.get(k, 0 if k == "trendingScore" else None) for k in keys if k in info or k == "trendingScore"}
    if full:
        item.update({"author": info.get("author"), "sha": repo["commit"], "gated": info.get("gated", False),
                     "lastModified": info.get("lastModified"),
                     "siblings": [{"rfilename": s["rfilename"]} for s in info.get("siblings", [])]})
    return item


def _truthy(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes")


def _paginate(request: web.Request, items: list[Any], page_size: int) -> web.Response:
    start = int(request.query.get("cursor", "0") or 0)
    page = items[start:start + page_size]
    headers = {}
    if start + page_size < len(items):
        q = [(k, v) for k, v in request.query.items() if k != "cursor"] + [("cursor", str(start + page_size))]
        headers["Link"] = f'<{_origin(request)}{request.path}?{urlencode(q)}>; rel="next"'
    return web.json_response(page, headers=headers)


async def hf_list_models(request: web.Request) -> web.Response:
    up = request.app[UPSTREAM]
    st = _state(up)
    params = {k: v for k, v in request.query.items()}
    for entry in st["hf_canned"].values():
        if entry["query"] == params:
            return web.json_response(json.loads((up.fixtures / "huggingface" / entry["file"]).read_text()))
    search = (request.query.get("search") or "").lower()
    author = (request.query.get("author") or "").lower()
    full = _truthy(request.query.get("full"))
    repos = [r for rid, r in st["hf_repos"].items()
             if search in rid.lower() and (not author or rid.split("/")[0].lower() == author)]
    sort = request.query.get("sort")
    if sort in ("downloads", "likes", "trendingScore", "lastModified", "createdAt"):
        descending = request.query.get("direction", "-1") == "-1"
        repos.sort(key=lambda r: r["info"].get(sort) or 0, reverse=descending)
    limit = int(request.query.get("limit") or HF_PAGE_SIZE)
    return _paginate(request, [_hf_list_item(r, full) for r in repos], max(1, min(limit, HF_PAGE_SIZE)))


async def hf_model_info(request: web.Request) -> web.Response:
    repo, err = _hf_repo_or_error(request.app[UPSTREAM], request)
    if err:
        return err
    info = copy.deepcopy(repo["info"])
    info["sha"] = repo["commit"]
    if not _truthy(request.query.get("blobs")):
        info["siblings"] = [{"rfilename": s["rfilename"]} for s in info.get("siblings", [])]
    return web.json_response(info)


async def hf_tree(request: web.Request) -> web.Response:
    up = request.app[UPSTREAM]
    repo, err = _hf_repo_or_error(up, request)
    if err:
        return err
    base = request.match_info.get("path", "").strip("/")
    entries = repo["tree"]
    if base:
        if not any(e["path"] == base and e["type"] == "directory" for e in entries):
            return _hf_error("EntryNotFound", f"{base} does not exist on \"main\"", 404,
                             **{"X-Repo-Commit": repo["commit"]})
        entries = [e for e in entries if e["path"].startswith(base + "/")]
    if not _truthy(request.query.get("recursive")):
        depth = base.count("/") + 1 if base else 0
        entries = [e for e in entries if e["path"].count("/") == depth]
    expand = _truthy(request.query.get("expand"))
    size = up.state.get("hf_tree_page_size", 50 if expand else 1000)
    return _paginate(request, entries, size)


async def hf_paths_info(request: web.Request) -> web.Response:
    repo, err = _hf_repo_or_error(request.app[UPSTREAM], request)
    if err:
        return err
    form = await request.post()
    wanted = set(form.getall("paths", []))
    return web.json_response([e for e in repo["tree"] if e["path"] in wanted])


# ---------------------------------------------------------------- Civitai ------------------------------


def _searchable(model: dict[str, Any]) -> set[str]:
    words = set(_words(model.get("name", "")) + _words((model.get("creator") or {}).get("username") or ""))
    for mv in model.get("modelVersions", []):
        for w in mv.get("trainedWords", []) or []:
            words.update(_words(w))
        for f in mv.get("files", []):
            words.update(h.lower() for h in (f.get("hashes") or {}).values())
    return words


def _file_named(models: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Civitai answers a query that is exactly a file name (civitai/civitai#933); how is undocumented, so the
    fake assumes the least: the whole query equals a file's name, never words of file names."""
    want = query.strip().lower()
    return [m for m in models if any(str(f.get("name", "")).lower() == want
                                     for mv in m.get("modelVersions", []) for f in mv.get("files", []))]


def _meili_rank(models: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Meilisearch matchingStrategy "last": all words first, then drop words from the end; the last
    query word matches as a prefix (Meilisearch's prefix search)."""
    q = _words(query)
    if not q:
        return models
    seen: set[int] = set()
    out: list[dict[str, Any]] = []
    for k in range(len(q), 0, -1):
        words = q[:k]
        hits = []
        for m in models:
            if int(m["id"]) in seen:
                continue
            doc = _searchable(m)
            if all(w in doc for w in words[:-1]) and any(t.startswith(words[-1]) for t in doc):
                hits.append(m)
        hits.sort(key=lambda m: -(m.get("stats") or {}).get("downloadCount", 0))
        for m in hits:
            seen.add(int(m["id"]))
        out.extend(hits)
    return out


async def civitai_models(request: web.Request) -> web.Response:
    up = request.app[UPSTREAM]
    st = _state(up)
    q = request.query
    if "page" in q and "query" in q:
        return _civitai_error(up, "400_page_with_query", 400)
    limit = int(q.get("limit") or 100)
    if "page" in q and int(q["page"]) * limit > 1000:
        return _civitai_error(up, "429_too_many_pages", 429)
    wanted = {k: v for k, v in q.items() if k not in IGNORED_CIVITAI_MATCH_PARAMS}
    # Without nsfw=true the search keeps to public browsing levels: NSFW-rated models are silently absent;
    # the "green" domain leaves them out even with it (2026), the red one never does.
    green = up.state.get("civitai_green") and not request.path.startswith("/red/")
    shown = (lambda m: True) if _truthy(q.get("nsfw")) and not green else (lambda m: not m.get("nsfw"))
    for entry in st["civitai_canned"]:
        if {k: v for k, v in entry["query"].items() if k not in IGNORED_CIVITAI_MATCH_PARAMS} == wanted:
            body = json.loads((up.fixtures / "civitai" / entry["file"]).read_text())
            body["items"] = [m for m in body.get("items", []) if shown(m)]
            return _civitai_json(request, body)
    models = [m for m in st["civitai_models"].values() if shown(m)]
    types = {t.lower() for t in _multi(request, "types")}
    if types:
        models = [m for m in models if str(m.get("type", "")).lower() in types]
    if q.get("username"):
        models = [m for m in models if (m.get("creator") or {}).get("username", "").lower() == q["username"].lower()]
    bases = set(_multi(request, "baseModels"))
    if bases:
        models = [m for m in models if any(v.get("baseModel") in bases for v in m.get("modelVersions", []))]
    if q.get("query"):
        named = _file_named(models, q["query"])
        models = named + [m for m in _meili_rank(models, q["query"]) if m not in named]
    elif q.get("sort") == "Most Downloaded":
        models.sort(key=lambda m: -(m.get("stats") or {}).get("downloadCount", 0))
    start = int(q.get("cursor") or 0) if q.get("cursor", "0").isdigit() else 0
    page = models[start:start + limit]
    meta: dict[str, Any] = {}
    if start + limit < len(models):
        meta["nextCursor"] = str(start + limit)
        rest = [(k, v) for k, v in q.items() if k != "cursor"] + [("cursor", meta["nextCursor"])]
        meta["nextPage"] = f"{_origin(request)}{request.path}?{urlencode(rest)}"
    return _civitai_json(request, {"items": page, "metadata": meta})


async def civitai_model(request: web.Request) -> web.Response:
    st = _state(request.app[UPSTREAM])
    mid = request.match_info["id"]
    model = st["civitai_models"].get(int(mid)) if mid.isdigit() else None
    if model is None:
        return web.json_response({"error": f"No model with id {mid}"}, status=404)
    return _civitai_json(request, model)


def _version_body(st: dict[str, Any], vid: int) -> dict[str, Any] | None:
    v = st["civitai_versions"].get(vid)
    if v is None or v.get("status", "Published") != "Published":
        return None
    return v


async def civitai_version(request: web.Request) -> web.Response:
    st = _state(request.app[UPSTREAM])
    vid = request.match_info["id"]
    if not vid.isdigit():
        return web.json_response({"error": "Invalid id"}, status=400)
    body = _version_body(st, int(vid))
    if body is None:
        return web.json_response({"error": "Model not found"}, status=404)
    return _civitai_json(request, body)


def _find_by_hash(st: dict[str, Any], h: str) -> dict[str, Any] | None:
    """Any hash type, case-insensitive; oldest publishedAt then lowest id wins (the real handler's order)."""
    h = h.upper()
    hit = st["civitai_hash_index"].get(h)
    if hit:
        return _version_body(st, int(hit["versionId"]))
    matches = [v for v in st["civitai_versions"].values()
               if v.get("status", "Published") == "Published"
               and any(h == str(x).upper() for f in v.get("files", []) for x in (f.get("hashes") or {}).values())]
    matches.sort(key=lambda v: (v.get("publishedAt") or "", int(v["id"])))
    return matches[0] if matches else None


async def civitai_by_hash(request: web.Request) -> web.Response:
    body = _find_by_hash(_state(request.app[UPSTREAM]), request.match_info["hash"])
    if body is None:
        return web.json_response({"error": "Model not found"}, status=404)
    return _civitai_json(request, body)


async def civitai_by_hash_batch(request: web.Request) -> web.Response:
    st = _state(request.app[UPSTREAM])
    try:
        hashes = await request.json()
    except ValueError:
        return web.json_response({"error": "Invalid body"}, status=400)
    well_formed = isinstance(hashes, list) and all(isinstance(h, str) and len(h) == 64 for h in hashes)
    if not well_formed or len(hashes) > 100:
        return web.json_response({"error": "Expected an array of at most 100 SHA256 hashes"}, status=400)
    found = []
    for h in hashes:
        body = _find_by_hash(st, h)
        if body is not None and body not in found:
            found.append(body)
    return _civitai_json(request, found)


# ---------------------------------------------------------------- OpenAI-compatible chat --------------


async def chat_completions(request: web.Request) -> web.Response:
    st = _state(request.app[UPSTREAM])
    body = await request.json()
    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    content = next((reply for needle, reply in st["llm_replies"] if needle in prompt), "{}")
    st.setdefault("llm_prompts", []).append(prompt)
    return web.json_response({
        "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model", "fake"),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
    })


def add_routes(app: web.Application, up: Any) -> None:
    _state(up)
    r = app.router
    r.add_get("/api/models", hf_list_models)
    r.add_get("/api/models/{org}/{name}", hf_model_info)
    r.add_get("/api/models/{org}/{name}/revision/{rev}", hf_model_info)
    r.add_get("/api/models/{org}/{name}/tree/{rev}", hf_tree)
    r.add_get("/api/models/{org}/{name}/tree/{rev}/{path:.+}", hf_tree)
    r.add_post("/api/models/{org}/{name}/paths-info/{rev}", hf_paths_info)
    for prefix in ("", "/red"):  # civitai.red answers the same API
        r.add_get(f"{prefix}/api/v1/models", civitai_models)
        r.add_get(f"{prefix}/api/v1/models/{{id}}", civitai_model)
        r.add_post(f"{prefix}/api/v1/model-versions/by-hash", civitai_by_hash_batch)
        r.add_get(f"{prefix}/api/v1/model-versions/by-hash/{{hash}}", civitai_by_hash)
        r.add_get(f"{prefix}/api/v1/model-versions/{{id}}", civitai_version)
    r.add_post("/v1/chat/completions", chat_completions)


__all__ = ["add_routes", "add_hf_repo", "add_civitai_model", "crowd_searches"]

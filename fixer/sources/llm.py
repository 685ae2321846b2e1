"""Optional (search.llm.enabled, off by default): an LLM search as a plug-in. An OpenAI-compatible
chat endpoint (e.g. a local Qwen served by Ollama) proposes Hugging Face repo/path or Civitai version
ids for a name nothing else found. A proposal counts only once the real API confirms a file of exactly
that name is there; the model's word alone is never a source.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from ..config import llm_endpoint_reason
from ..models import Candidate, ModelRef
from ..upstream.http import said
from ..upstream.hub import lfs_facts, paths_info, resolve_url
from ..upstream.services import LLM_TOKEN
from .base import CONFIDENCE, Found, SearchRun
from .civitai import file_matches, version_candidate
from .huggingface import folder_from_path

SYSTEM_PROMPT = (
    "You locate downloadable model files for ComfyUI. Given a file name, answer with JSON only: "
    '{"huggingface": [{"repo_id": "org/name", "path": "path/in/repo/file.safetensors"}], '
    '"civitai": [{"version_id": 123}]}. Give at most three guesses per service; empty lists if unsure.'
)


def parse_proposals(text: str) -> dict[str, list[dict[str, Any]]]:
    """The JSON object in a chat answer (models like to wrap it in prose or ``` fences)."""
    m = re.search(r"\{.*\}", text or "", re.S)
    if not m:
        return {}
    try:
        data = json.loads(m.group(0))
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: [x for x in data.get(k, []) if isinstance(x, dict)][:3]
            for k in ("huggingface", "civitai") if isinstance(data.get(k), list)}


class LLMSource:
    name = "llm"

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        cfg = run.config.llm
        refused = llm_endpoint_reason(cfg)  # also checked when config.json is read; a Config built in code too
        if refused:
            found.tried.append(f"LLM helper not asked: {refused}")
            return found
        headers = {}
        key = run.secrets.get(LLM_TOKEN)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = {"model": cfg.model, "temperature": 0, "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"File name: {ref.basename}\nComfyUI folder: {ref.folder or 'unknown'}"},
        ]}
        try:
            reply = await run.http.post("llm", f"{cfg.endpoint.rstrip('/')}/chat/completions", json_body=body,
                                        headers=headers)
        except (aiohttp.ClientError, TimeoutError) as e:
            found.tried.append(f"LLM at {cfg.endpoint}: unreachable ({e.__class__.__name__})")
            return found
        if not reply.ok:
            found.tried.append(f"LLM at {cfg.endpoint}: HTTP {reply.status} {said(reply)}")
            return found
        try:
            text = reply.json()["choices"][0]["message"]["content"]
        except (TypeError, KeyError, IndexError):
            text = ""
        proposals = parse_proposals(text)
        run.searched(ref, "the LLM helper")
        run.history.record("llm", ref.basename, json.dumps(proposals), ref.name)
        for p in proposals.get("huggingface", []):
            await self._confirm_hf(ref, run, p, found)
        for p in proposals.get("civitai", []):
            await self._confirm_civitai(ref, run, p, found)
        n = sum(len(v) for v in proposals.values())
        found.tried.append(f"LLM proposed {n} place(s); {len(found.candidates)} confirmed by the real API")
        return found

    async def _confirm_hf(self, ref: ModelRef, run: SearchRun, p: dict[str, Any], found: Found) -> None:
        repo_id, path = str(p.get("repo_id", "")), str(p.get("path", ""))
        if repo_id.count("/") != 1 or path.rsplit("/", 1)[-1] != ref.basename:
            found.tried.append(f"LLM proposal {repo_id}:{path} does not name {ref.basename}; ignored")
            return
        info = await paths_info(run, repo_id, path)
        if info.entry is None:
            found.tried.append(f"LLM proposal {repo_id}/{path} not confirmed: {info.error}")
            return
        size, sha = lfs_facts(info.entry)
        folder = ref.folder or folder_from_path(path)
        conf = CONFIDENCE["llm_confirmed"] if folder else CONFIDENCE["contested"]
        found.candidates.append(Candidate(
            source="llm", filename=ref.name, folder=folder, confidence=conf,
            reason=f"proposed by the LLM and confirmed on Hugging Face: {path} in {repo_id}",
            url=resolve_url(run.hf_endpoint, repo_id, path), size=size, sha256=sha,
            ids={"repo_id": repo_id, "path": path, "revision": "main"}))

    async def _confirm_civitai(self, ref: ModelRef, run: SearchRun, p: dict[str, Any], found: Found) -> None:
        vid = str(p.get("version_id", ""))
        if not vid.isdigit():
            return
        reply = await run.http.get("civitai", f"{run.civitai_base}/api/v1/model-versions/{vid}",
                                   headers=run.civitai_headers())
        if not reply.ok:
            found.tried.append(f"LLM proposal Civitai version {vid} not confirmed: HTTP {reply.status}")
            return
        version = reply.json() or {}
        model = {"name": (version.get("model") or {}).get("name", "")}
        for f in version.get("files", []):
            why = file_matches(ref.basename, model, version, f)
            if why:
                cand = version_candidate(ref, version, f, (version.get("model") or {}).get("type"),
                                         CONFIDENCE["llm_confirmed"],
                                         f"proposed by the LLM and confirmed on Civitai ({why})",
                                         run.family(ref))
                cand.source = "llm"
                found.candidates.append(cand)
                return
        found.tried.append(f"LLM proposal Civitai version {vid} has no file named {ref.basename}")

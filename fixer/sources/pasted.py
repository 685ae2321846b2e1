"""A source the user gives for one model (pasted in the panel on a not-found or pick-a-source row).

`check_link(text, ref, ...)` accepts what `fixer.upstream.source_spec.parse_source` accepts (a Hugging Face file URL,
`hf:org/repo/path`, `civitai:<versionId>`, a Civitai model or version page or download URL), checks it
against the service (the host is Hugging Face or Civitai, the file exists, its size, its sha256 against the
workflow's hash when it carries one) and returns a Candidate to download like any other. The candidate keeps
the file's real name and extension (in the reference's subfolder), so a `.safetensors` file is never saved
under a `.pth` name: the caller repoints the widget to `candidate.filename`.
Errors say what is wrong with the link, for a person: ConfigError (not a link we take), NotFoundUpstream,
UpstreamError (the service refused or could not be reached), IntegrityError (not the file the workflow means).
"""

from __future__ import annotations

import asyncio
import posixpath

import aiohttp

from ..config import SearchConfig
from ..constants import hf_offline
from ..errors import IntegrityError, NotFoundUpstream, UpstreamError
from ..models import Candidate, ModelRef
from ..upstream.civitai import civitai_version
from ..upstream.http import HttpClient
from ..upstream.hub import gated_note, lfs_facts, paths_info, repo_gated
from ..upstream.source_spec import SourceSpec, parse_source, pick_civitai_file
from .base import SearchRun
from .civitai import version_candidate
from .history import SearchHistory
from .huggingface import folder_from_path

PASTED_CONFIDENCE = 1.0  # the user chose it; the checks below decide whether it can be had


def _real_name(ref: ModelRef, file_name: str) -> str:
    sub = posixpath.dirname(ref.name)
    return posixpath.join(sub, posixpath.basename(file_name)) if sub else posixpath.basename(file_name)


def _check_hash(ref: ModelRef, sha256: str | None, what: str) -> None:
    want = (ref.hint("hash") or "").lower()
    if len(want) == 64 and sha256 and sha256.lower() != want:
        raise IntegrityError("sha256", want, sha256.lower(), f"{what} is not the file the workflow names")


async def _hf(spec: SourceSpec, ref: ModelRef, run: SearchRun) -> Candidate:
    assert spec.repo_id and spec.path and spec.url
    info, gated = await asyncio.gather(paths_info(run, spec.repo_id, spec.path, spec.revision),
                                       repo_gated(run, spec.repo_id))
    if info.entry is None:
        raise NotFoundUpstream("Hugging Face", f"{spec.path} in {spec.repo_id} ({info.error})", service="huggingface")
    size, sha = lfs_facts(info.entry)
    _check_hash(ref, sha, f"{spec.path} in {spec.repo_id}")
    reason = f"your link: {spec.path} in {spec.repo_id}" + (f"; {gated_note(run, spec.repo_id)}" if gated else "")
    return Candidate(source="user", filename=_real_name(ref, spec.path),
                     folder=ref.folder or folder_from_path(spec.path),
                     confidence=PASTED_CONFIDENCE, reason=reason, url=spec.url, size=size, sha256=sha,
                     gated=bool(gated),
                     needs_token="HF_TOKEN" if gated else None,
                     ids={"repo_id": spec.repo_id, "path": spec.path, "revision": spec.revision})


async def _civitai(spec: SourceSpec, ref: ModelRef, run: SearchRun) -> Candidate:
    version = await civitai_version(run.http, spec, run.civitai_base, run.secrets)
    version_id = version.get("id")
    f = pick_civitai_file(version, None, spec.file_query)
    sha = str((f.get("hashes") or {}).get("SHA256") or "").lower() or None
    _check_hash(ref, sha, f"{f.get('name')} of Civitai version {version_id}")
    cand = version_candidate(ref, version, f, (version.get("model") or {}).get("type"), PASTED_CONFIDENCE,
                             "your link", run.family(ref))
    cand.source, cand.filename = "user", _real_name(ref, str(f["name"]))
    return cand


async def check_link(text: str, ref: ModelRef, *, config: SearchConfig | None = None,
                     secrets: dict[str, str] | None = None, hf_endpoint: str | None = None,
                     civitai_base: str | None = None, families: dict[str, str] | None = None) -> Candidate:
    """The checked Candidate for a link the user gave for `ref` (see the module docstring); raises FixerError
    subclasses with a message to show as is."""
    cfg = config or SearchConfig()
    async with HttpClient(per_service=cfg.per_host_concurrency, timeout=cfg.timeout_seconds,
                          retries=cfg.retries) as http:
        run = SearchRun(config=cfg, secrets=secrets or {}, http=http, history=SearchHistory(None),
                        families=families or {})
        if hf_endpoint:
            run.hf_endpoint = hf_endpoint.rstrip("/")
        if civitai_base:
            run.civitai_base = civitai_base.rstrip("/")
        spec = parse_source(text, run.hf_endpoint, run.civitai_base)
        if spec.source == "huggingface" and hf_offline():
            raise UpstreamError("Hugging Face", "HF_HUB_OFFLINE is set, so the link was not checked; unset it to "
                                "use a Hugging Face link", code="hf_offline", service="huggingface")
        service = "Hugging Face" if spec.source == "huggingface" else "Civitai"
        try:
            cand = await (_hf(spec, ref, run) if spec.source == "huggingface" else _civitai(spec, ref, run))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise UpstreamError(service, f"could not be reached ({e.__class__.__name__}); check the network and "
                                "retry", code="unreachable", service=spec.source) from None
        finally:
            await run.close()
    if not cand.folder:
        cand.reason += "; the model folder is unknown: choose where it goes"
    return cand

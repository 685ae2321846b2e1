"""Naming local files nobody recorded a source for, by their sha256 on Civitai: one request per up to 100
hashes (fixer.upstream.civitai.by_hash_batch). What is found is written beside the file as
`<name>.civitai.info` (the version as Civitai's API gives it, the sidecar other ComfyUI tools read),
never over an existing one."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..constants import civitai_base_url
from ..errors import UpstreamError
from ..state import write_text_atomic
from ..upstream.civitai import by_hash_batch, new_session, on_base, red_url
from .hash_index import IndexedFile
from .shapes import IdentifiedFile

log = logging.getLogger("fixer.identity.identify")
SIDECAR = ".civitai.info"
MAX_SIDECAR = 4 * 2**20  # a version body is a few KiB; more is not written beside a model


def sidecar_path(path: str) -> Path:
    return Path(os.path.splitext(path)[0] + SIDECAR)


def has_sidecar(path: str) -> bool:
    return sidecar_path(path).exists()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value[:300] if isinstance(value, str) else None


def download_url(version: Mapping[str, Any], sha256: str, base: str) -> str | None:
    """The download link of the version's file with these bytes, moved to the configured base."""
    for f in version.get("files") or []:
        if not isinstance(f, dict):
            continue
        if str((f.get("hashes") or {}).get("SHA256") or "").lower() == sha256 and isinstance(f.get("downloadUrl"), str):
            return on_base(f["downloadUrl"], base, red_url(base))
    return None


def identified(f: IndexedFile, version: Mapping[str, Any], base: str, write_sidecar: bool) -> IdentifiedFile:
    model = version.get("model") if isinstance(version.get("model"), dict) else {}
    model_id, version_id = _int(version.get("modelId")), _int(version.get("id"))
    page = f"{base}/models/{model_id}?modelVersionId={version_id}" if model_id and version_id else None
    out = IdentifiedFile(path=f.path, sha256=f.sha256, model_id=model_id, version_id=version_id,
                         model_name=_text((model or {}).get("name")), version_name=_text(version.get("name")),
                         url=page, sidecar=None)
    if write_sidecar and not has_sidecar(f.path):
        text = json.dumps(version, ensure_ascii=False, indent=2)
        if len(text) <= MAX_SIDECAR:
            try:
                write_text_atomic(sidecar_path(f.path), text)
                out.sidecar = str(sidecar_path(f.path))
            except OSError as e:
                log.warning("cannot write %s: %s", sidecar_path(f.path), e)
    return out


async def identify_files(files: Iterable[IndexedFile], secrets: Mapping[str, str], write_sidecars: bool = True,
                         timeout: float = 20.0) -> tuple[list[IdentifiedFile], dict[str, str]]:
    """(files Civitai knows, sha256 -> download link) for `files`, looked up in batches of up to 100 hashes."""
    todo = {f.sha256: f for f in files}
    if not todo:
        return [], {}
    base = civitai_base_url()
    async with new_session(timeout=timeout) as http:
        found, refused = await by_hash_batch(http, base, secrets, list(todo))
    if refused is not None and not found:
        raise UpstreamError("Civitai", f"the hash lookup was refused (HTTP {refused.status}); try again later",
                            refused.status, service="civitai")
    out = [identified(todo[sha], version, base, write_sidecars) for sha, version in sorted(found.items())]
    links = {sha: url for sha, version in found.items() if (url := download_url(version, sha, base))}
    return out, links

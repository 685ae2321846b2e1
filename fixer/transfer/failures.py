"""A failed download as status.json's errors[] words it: the agent guide's phrases, which its scripts match
("Civitai API error: 401", "timeout", "not found"), then the whole message as details; the code and typed
facts travel as they are."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from ..errors import ErrorInfo
from ..events import ErrorRaised
from ..models import Transfer
from .policy import token_name_for

SERVICE_WORDS = {"HF_TOKEN": "HuggingFace", "CIVITAI_API_KEY": "Civitai"}  # the guide's spelling
# Codes the guide's recovery rules name: a login/token problem ("API error: 401" -> check the key), a
# transfer that kept stalling or breaking off ("timeout" -> run again to resume), a file the source lacks.
LOGIN = frozenset({"login_required", "license_required", "token_rejected", "no_access", "early_access",
                   "private_or_missing"})
TIMEOUT = frozenset({"interrupted", "unreachable", "bytes_missing"})
GONE = frozenset({"not_found_upstream", "archived"})


def guide_words(info: ErrorInfo, name: str, url: str, source_hint: str = "") -> str:
    """The `error` of an errors[] entry for a download of `name` from `url` that failed with `info`."""
    service = SERVICE_WORDS.get(token_name_for(url, source_hint) or "") if url else None
    where = service or urlsplit(url).hostname or "the server"
    if info.code in LOGIN:
        return f"{where} API error: 401 (a login or token is needed) for {name}"
    if info.code in TIMEOUT:
        return f"Download failed: timeout (the transfer kept stalling or breaking off): {name}"
    if info.code in GONE:
        return f"Download failed: {name} not found at {where}"
    return f"Download failed: {name}"


def failure_event(t: Transfer) -> ErrorRaised:
    """The errors[] entry of one failed download."""
    req = t.request
    name = req.model_name or req.filename
    info = t.error or ErrorInfo("download_failed", f"{name}: the download failed")
    return ErrorRaised(replace(info, message=guide_words(info, name, req.url, req.source)), info.message)

"""What a person types to name a model's source, turned into a TransferRequest (the download node).

Accepted forms:
- `hf:<org>/<repo>/<path in repo>`, optionally `hf:<org>/<repo>@<revision>/<path>`;
- a Hugging Face file URL, `https://huggingface.co/<org>/<repo>/(resolve|blob)/<rev>/<path>`
  (or the same under HF_ENDPOINT);
- `civitai:<versionId>`, also `civitai:<modelId>@<versionId>` as model lists write it;
- a Civitai URL: `/api/download/models/<versionId>[?type=..&format=..]`,
  `/models/<modelId>?modelVersionId=<versionId>`, or `/models/<modelId>` (its newest version).
Parsing is pure; fetching a Civitai version is the Civitai client's (fixer.upstream.civitai).
`parse_hf_url` is the project's one reader of Hugging Face file URLs (the downloader and the
resolver's sources use it too).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..constants import civitai_base_url, hf_endpoint
from ..errors import ConfigError, NotFoundUpstream
from ..models import TransferRequest
from ..read.names import safe_relpath
from .services import HUGGINGFACE

# `/models/` is how some tools and catalogs prefix model repos; the Hub serves both forms.
_HF_FILE_PATH = re.compile(r"^/(?:models/)?([^/]+/[^/]+)/(?:resolve|blob)/([^/]+)/(.+)$")
_HF_SHORT = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([^/]+))?/(.+)$")
_CIVITAI_SHORT = re.compile(r"^(?:(\d+)@)?(\d+)$")
_CIVITAI_DOWNLOAD = re.compile(r"^/api/download/models/(\d+)/?$")
_CIVITAI_MODEL_PAGE = re.compile(r"^/models/(\d+)(?:/[^/]*)?/?$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
USAGE = ("Use hf:<org>/<repo>/<file>, civitai:<versionId>, or a huggingface.co / civitai.com link to "
         "the file or model version.")


@dataclass(frozen=True)
class SourceSpec:
    source: Literal["huggingface", "civitai"]
    url: str | None = None  # the download URL when the spec alone gives it (Hugging Face)
    repo_id: str | None = None
    revision: str = "main"
    path: str | None = None  # file path inside the Hugging Face repo
    version_id: int | None = None  # Civitai model version; None: the model's newest version
    model_id: int | None = None
    file_query: str = ""  # Civitai file selection (`type=..&format=..`) from a download link

    @property
    def file_name(self) -> str | None:
        """The file name the source itself gives, when known without asking it."""
        return posixpath.basename(self.path) if self.path else None


def is_hf_host(netloc: str, endpoint: str | None = None) -> bool:
    """huggingface.co (and its short names) or the host:port of HF_ENDPOINT."""
    netloc = netloc.lower()
    return HUGGINGFACE.owns_host(netloc) or netloc == urlsplit(endpoint or hf_endpoint()).netloc.lower()


def parse_hf_url(url: str, endpoint: str | None = None) -> tuple[str, str, str] | None:
    """(repo_id, revision, path) of a Hugging Face file URL (`resolve` or `blob`, on huggingface.co or
    HF_ENDPOINT), else None."""
    parts = urlsplit(url)
    m = _HF_FILE_PATH.match(parts.path) if is_hf_host(parts.netloc, endpoint) else None
    return (m.group(1), unquote(m.group(2)), unquote(m.group(3))) if m else None


def _hf_spec(repo_id: str, revision: str, path: str, endpoint: str) -> SourceSpec:
    safe_relpath(path)  # a repo path is a relative path too; refuse "..", absolute, control characters
    url = f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"
    return SourceSpec("huggingface", url=url, repo_id=repo_id, revision=revision, path=path)


def parse_source(text: str, hf_base: str | None = None, civitai_base: str | None = None) -> SourceSpec:
    """The SourceSpec of what was typed; ConfigError saying what is accepted otherwise."""
    hf_base = (hf_base or hf_endpoint()).rstrip("/")
    civitai_base = (civitai_base or civitai_base_url()).rstrip("/")
    s = (text or "").strip()
    if not s:
        raise ConfigError(f"No model source given. {USAGE}")
    low = s.lower()
    if low.startswith("hf:"):
        m = _HF_SHORT.match(s[3:].strip().lstrip("/"))
        if not m:
            raise ConfigError(f"Source {s!r}: expected hf:<org>/<repo>/<file path>. {USAGE}")
        return _hf_spec(m.group(1), m.group(2) or "main", m.group(3), hf_base)
    if low.startswith("civitai:"):
        m = _CIVITAI_SHORT.match(s[8:].strip())
        if not m:
            raise ConfigError(f"Source {s!r}: expected civitai:<versionId> (a number). {USAGE}")
        return SourceSpec("civitai", version_id=int(m.group(2)),
                          model_id=int(m.group(1)) if m.group(1) else None)
    parts = urlsplit(s)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"Source {s!r} is not a link or a hf:/civitai: name. {USAGE}")
    host = parts.netloc.lower()
    # Both hosts are checked before either complains: in tests HF_ENDPOINT and CIVITAI_BASE_URL are one server.
    is_hf = is_hf_host(host, hf_base)
    is_civitai = host == "civitai.com" or host.endswith(".civitai.com") or host == urlsplit(civitai_base).netloc.lower()
    if hf := parse_hf_url(s, hf_base):
        return _hf_spec(*hf, hf_base)
    if is_civitai:
        if m := _CIVITAI_DOWNLOAD.match(parts.path):
            return SourceSpec("civitai", version_id=int(m.group(1)), file_query=parts.query)
        if m := _CIVITAI_MODEL_PAGE.match(parts.path):
            version = parse_qs(parts.query).get("modelVersionId", [""])[0]
            return SourceSpec("civitai", model_id=int(m.group(1)),
                              version_id=int(version) if version.isdigit() else None)
    if is_hf:
        raise ConfigError(f"Source {s!r}: link to one file (…/<org>/<repo>/resolve/<revision>/<file>), "
                          "not to a repository page.")
    if is_civitai:
        raise ConfigError(f"Source {s!r}: link to a Civitai model or model version. {USAGE}")
    raise ConfigError(f"Source {s!r} is neither Hugging Face nor Civitai. {USAGE}")


def pick_civitai_file(version: dict[str, Any], file_name: str | None = None, file_query: str = "") -> dict[str, Any]:
    """The file of a model version to fetch: the one named, else the download link's choice, else primary."""
    files = [f for f in version.get("files") or [] if isinstance(f, dict) and f.get("name")]
    label = f"Civitai model version {version.get('id')}"
    if not files:
        raise NotFoundUpstream("Civitai", f"A downloadable file of {label} (it may be archived)", service="civitai")
    if file_name:
        base = posixpath.basename(file_name.replace("\\", "/")).lower()
        for f in files:
            if f["name"].lower() == base:
                return f
    if file_query:
        want = {k.lower(): v[0] for k, v in parse_qs(file_query).items()}
        for f in files:
            meta = f.get("metadata") or {}
            if (want.get("type") in (None, f.get("type"))) and (want.get("format") in (None, meta.get("format"))):
                return f
    return next((f for f in files if f.get("primary")), files[0])


def transfer_request(spec: SourceSpec, folder: str, file_name: str = "", sha256: str = "",
                     version: dict[str, Any] | None = None) -> TransferRequest:
    """What the downloader needs. Civitai specs need the version body (`fetch_civitai_version`)."""
    sha = (sha256 or "").strip().lower() or None
    if sha and not _SHA256.match(sha):
        raise ConfigError(f"sha256 {sha256!r} is not 64 hexadecimal characters")
    wanted = file_name.strip().replace("\\", "/")
    if spec.source == "huggingface":
        assert spec.url and spec.file_name
        name = safe_relpath(wanted or spec.file_name)
        return TransferRequest(url=spec.url, folder=folder, filename=name, sha256=sha, source="huggingface",
                               model_name=name)
    if version is None:
        raise ValueError("a Civitai source needs its model version body")
    f = pick_civitai_file(version, wanted, spec.file_query)
    url = f.get("downloadUrl") or version.get("downloadUrl")
    if not url:
        raise NotFoundUpstream("Civitai", f"A download link of {f['name']}", service="civitai")
    name = safe_relpath(wanted or f["name"])
    published = str((f.get("hashes") or {}).get("SHA256") or "").lower() or None
    return TransferRequest(url=url, folder=folder, filename=name, sha256=sha or published, source="civitai",
                           model_name=name)

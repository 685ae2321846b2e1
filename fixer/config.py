"""config.json (seed fields plus ours, all optional) and secrets from the environment or ~/.secrets."""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger("fixer.config")


@dataclass
class DownloadConfig:
    max_concurrent: int = 3
    connections_per_file: int = 8
    timeout_seconds: float = 60.0  # per read; a stalled connection is retried after this
    retries: int = 5
    allow_pickle: bool = True
    extra_allowed_hosts: list[str] = field(default_factory=list)
    min_free_margin_bytes: int = 256 * 2**20
    # The most a download of undeclared size may write (a stream that never ends fills no disk); the free
    # space less min_free_margin_bytes bounds it too. A declared size is its own ceiling.
    max_undeclared_bytes: int = 64 * 2**30
    verify_batch_every: int = 6


@dataclass
class LLMConfig:
    enabled: bool = False
    endpoint: str = "http://127.0.0.1:11434/v1"
    model: str = "qwen2.5:7b"
    api_key_env: str = "OPENAI_API_KEY"


@dataclass
class SearchConfig:
    fuzzy_threshold: float = 0.7
    per_host_concurrency: int = 4
    timeout_seconds: float = 20.0
    retries: int = 4
    use_catalogs: bool = True
    civitai: bool = True
    huggingface: bool = True
    nsfw: bool = True  # NSFW-rated Civitai models are searched too (and civitai.red asked when civitai.com finds nothing)
    llm: LLMConfig = field(default_factory=LLMConfig)


@dataclass
class Config:
    comfyui_root: str | None = None
    workflow_directories: list[str] = field(default_factory=list)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    check_on_load: bool = True


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key)
        if f is None:  # tolerated so older/newer configs still load, but a typo must not pass unseen
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            log.warning("%s: unknown key %r is ignored%s", where, key, hint)
            continue
        default = getattr(cls(), key)
        if is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, default, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where} must be a non-negative number, got {value!r}")
        return type(default)(value)
    if isinstance(default, list):
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def load_config(path: str | os.PathLike | None) -> Config:
    """Read config.json; a missing default file is fine, a broken one names the problem."""
    if path is None:
        return Config()
    p = Path(path)
    if not p.exists():
        return Config()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"Cannot read config {p}: {e}. Fix or remove the file.") from e
    return _build(Config, data, str(p))


SECRET_NAMES = ("HF_TOKEN", "CIVITAI_API_KEY")


def saved_hf_token() -> str | None:
    """The token `hf auth login` saved, read by huggingface_hub.get_token() (which also honours HF_TOKEN).

    huggingface_hub costs about half a second to import, so it is asked only when its token file
    exists; HF_HUB_DISABLE_IMPLICIT_TOKEN=1 keeps the saved token unused, as it does for the hub's clients.
    """
    try:
        from huggingface_hub import constants  # a few ms: the package imports its members lazily
    except ImportError:
        return None
    if constants.HF_HUB_DISABLE_IMPLICIT_TOKEN or not os.path.exists(constants.HF_TOKEN_PATH):
        return None
    from huggingface_hub import get_token

    return get_token() or None


def load_secrets(extra: dict[str, str] | None = None, secrets_file: str | None = None) -> dict[str, str]:
    """Tokens from (lowest first) the token `hf auth login` saved, ~/.secrets, the environment, then
    `extra` (the ComfyUI settings)."""
    out: dict[str, str] = {}
    sf = Path(secrets_file) if secrets_file else Path.home() / ".secrets"
    try:
        for line in sf.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and key.strip() in SECRET_NAMES and value.strip():
                out[key.strip()] = value.strip().strip("'\"")
    except OSError:
        pass
    for name in SECRET_NAMES:
        if os.environ.get(name):
            out[name] = os.environ[name]
    for name, value in (extra or {}).items():
        if name in SECRET_NAMES and value:
            out[name] = value
    if not out.get("HF_TOKEN"):  # asked last: only a user without any other HF token pays its import
        saved = saved_hf_token()
        if saved:
            out["HF_TOKEN"] = saved
    return out

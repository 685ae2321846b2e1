"""config.json (every field optional), read from the user's own configuration folder.

Configuration can make the product send a secret (the LLM helper's key) to a server, so it is never read
from the working directory or a folder of workflows: by default it is `config.json` in the per-user
folder (`user_config_path`), else the file the user names (`--config`); ComfyUI reads the one in its
user directory. Tokens are not configuration: see fixer.upstream.tokens.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError
from .record import Record

log = logging.getLogger("fixer.config")


@dataclass(eq=False, repr=False)
class DownloadConfig(Record):
    """config.json's `download`: how many files at once, connections per file, timeouts, what may be fetched."""

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


@dataclass(eq=False, repr=False)
class LLMConfig(Record):
    """config.json's `search.llm`: a language model the search may ask for a model's name (off by default)."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:11434/v1"
    model: str = "qwen2.5:7b"
    # Host names the endpoint may have besides this machine's (loopback); those need https. The key
    # always comes from COMFYFIXER_LLM_API_KEY (fixer.upstream.services.LLM_TOKEN), never a named variable.
    allowed_hosts: list[str] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class SearchConfig(Record):
    """config.json's `search`: which sources are asked, how hard and how fast."""

    fuzzy_threshold: float = 0.7
    per_host_concurrency: int = 4
    timeout_seconds: float = 20.0
    retries: int = 4
    use_catalogs: bool = True
    civitai: bool = True
    huggingface: bool = True
    # NSFW-rated Civitai models are searched too (and civitai.red asked when civitai.com finds nothing)
    nsfw: bool = True
    llm: LLMConfig = field(default_factory=LLMConfig)


@dataclass(eq=False, repr=False)
class HashingConfig(Record):
    """The background hash index (fixer.identity): it reads every model byte once, so it is paced."""

    # Off: no background reading at all; a hash is computed when one is needed, over the few files it can be
    # (the files of the one size a download will have, the files sharing a size for the duplicates report).
    background_hashing: bool = True
    # The most the background index reads a second, in MB (10**6 bytes); 0: no limit. 100 MB/s leaves most
    # of an SSD to ComfyUI and hashes 1 TB in under 3 hours; while ComfyUI runs a prompt it reads nothing.
    hash_read_mb_per_s: int = 100


@dataclass(eq=False, repr=False)
class Config(Record):
    """config.json: the ComfyUI, the workflows, and each stage's settings."""

    comfyui_root: str | None = None
    workflow_directories: list[str] = field(default_factory=list)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    hashing: HashingConfig = field(default_factory=HashingConfig)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key)
        if f is None:  # tolerated so older/newer configs still load, but a typo must not pass unseen
            import difflib  # only for a key nobody knows: every command reads a config, few have a typo

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


def user_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's own folder for our configuration: %APPDATA%\\comfyfixer on Windows, else
    $XDG_CONFIG_HOME/comfyfixer (~/.config/comfyfixer)."""
    env = os.environ if environ is None else environ
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "comfyfixer"
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "comfyfixer"


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    return user_config_dir(environ) / "config.json"


def is_loopback_host(host: str) -> bool:
    host = host.lower().strip("[]").rstrip(".")
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def llm_endpoint_reason(llm: LLMConfig) -> str | None:
    """Why the LLM helper may not be sent to its endpoint, or None.

    The request carries a key and the names of the user's models: this machine (loopback) over http or
    https, another host only over https and only when listed in search.llm.allowed_hosts.
    """
    parts = urlsplit(llm.endpoint)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return f"search.llm.endpoint {llm.endpoint!r} is not an http(s) URL with a host (and no credentials)"
    if is_loopback_host(host):
        return None
    allowed = {h.strip().lower().rstrip(".") for h in llm.allowed_hosts}
    if host not in allowed:
        return (f"search.llm.endpoint {llm.endpoint!r} is not on this machine; to use it, add {host!r} to "
                "search.llm.allowed_hosts in your own config.json")
    if parts.scheme != "https":
        return f"search.llm.endpoint {llm.endpoint!r} must use https (plain http is allowed to this machine only)"
    return None


def load_config(path: str | os.PathLike[str] | None) -> Config:
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
    config: Config = _build(Config, data, str(p))
    reason = llm_endpoint_reason(config.search.llm) if config.search.llm.enabled else None
    if reason:
        raise ConfigError(f"{p}: {reason}.")
    return config

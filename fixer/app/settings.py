"""The settings the ComfyUI page may change, described once: key, type, limits, where the value lives.

Each setting has one owner. Download and hashing settings live in the engine's `Config` (a section each;
their defaults are its defaults; the page's changes persist in `settings.json` of the state directory);
tokens live in the secret store (fixer.upstream.tokens) and are write-only: the page learns only whether
one is set.
`GET /comfyfixer/settings` serves `schema()` and `values()`, so the page draws its controls, limits and
defaults from here instead of repeating them.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, replace
from typing import Any, Literal, Union

from ..config import Config
from ..errors import ConfigError
from ..upstream.services import CIVITAI, HUGGINGFACE

log = logging.getLogger("fixer.settings")

SettingKind = Literal["integer", "boolean", "token"]
Section = Literal["download", "hashing"]  # the Config section holding the value, under the setting's key
SettingValue = Union[int, bool, str]
# Hugging Face and Civitai tokens are under 100 characters; the bound keeps one request from making the
# server store an arbitrary amount of text.
MAX_TOKEN_CHARS = 1024
SETTINGS_FILE = "settings.json"
SECRETS_FILE = "secrets.json"


@dataclass(frozen=True)
class Setting:
    key: str  # as the page sends it and settings.json stores it
    kind: SettingKind
    ui_id: str  # ComfyUI's id for the control: "ComfyFixerSmart.<group>.<name>"
    label: str
    help: str = ""
    minimum: int | None = None
    maximum: int | None = None
    token: str | None = None  # kind "token": the secret it sets (the service table's name)
    section: Section = "download"

    @property
    def group(self) -> str:
        """The section of ComfyUI's settings dialog."""
        return self.ui_id.split(".")[1]


SETTINGS: tuple[Setting, ...] = (
    Setting("civitai_api_key", "token", "ComfyFixerSmart.Tokens.Civitai", "Civitai API key",
            "Needed for models that require a Civitai login. Stored by the ComfyUI server (never in the "
            "browser or comfy.settings.json).", token=CIVITAI.token),
    Setting("hf_token", "token", "ComfyFixerSmart.Tokens.HuggingFace", "Hugging Face token",
            "Needed for gated repositories (accept the license on the model page first). Stored by the "
            "ComfyUI server only.", token=HUGGINGFACE.token),
    Setting("max_concurrent", "integer", "ComfyFixerSmart.Downloads.MaxConcurrent",
            "Files downloaded at the same time", minimum=1, maximum=16),
    Setting("connections_per_file", "integer", "ComfyFixerSmart.Downloads.ConnectionsPerFile", "Connections per file",
            "Parallel ranged requests for one large file.", minimum=1, maximum=32),
    Setting("allow_pickle", "boolean", "ComfyFixerSmart.Downloads.AllowPickle",
            "Allow pickle formats (.ckpt, .pt, .pth, .bin)",
            "Pickle files can run code when loaded. Off: only .safetensors and other safe formats are downloaded."),
    Setting("background_hashing", "boolean", "ComfyFixerSmart.Hashing.Background",
            "Hash model files in the background",
            "After a scan, the sha256 of every model file is computed once (for duplicates, lockfiles and "
            "finding renamed copies), paused while ComfyUI runs a prompt. Off: nothing is read in the background; "
            "a hash is computed only when one is needed, over files of the one matching size.",
            section="hashing"),
    Setting("hash_read_mb_per_s", "integer", "ComfyFixerSmart.Hashing.ReadRate",
            "Background hashing read limit (MB/s)",
            "The most the background hashing reads from disk per second; 0 means no limit.",
            minimum=0, maximum=100_000, section="hashing"),
)
BY_KEY = {s.key: s for s in SETTINGS}


def _config_value(config: Config, setting: Setting) -> SettingValue:
    value: SettingValue = getattr(getattr(config, setting.section), setting.key)
    return value


def schema(defaults: Config | None = None) -> list[dict[str, Any]]:
    """Every setting as the page needs it to draw its control: the defaults are the engine's own."""
    base = defaults or Config()
    out = []
    for s in SETTINGS:
        entry: dict[str, Any] = {"key": s.key, "id": s.ui_id, "kind": s.kind, "group": s.group, "label": s.label,
                                 "help": s.help}
        if s.kind == "token":
            entry["max_chars"] = MAX_TOKEN_CHARS
        else:
            entry["default"] = _config_value(base, s)
        if s.minimum is not None:
            entry["minimum"], entry["maximum"] = s.minimum, s.maximum
        out.append(entry)
    return out


def values(config: Config, secrets: dict[str, str]) -> dict[str, Any]:
    """The current values; for a token only whether it is set (`<key>_set`), never the token."""
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if s.token is not None:
            out[f"{s.key}_set"] = bool(secrets.get(s.token))
        else:
            out[s.key] = _config_value(config, s)
    return out


def _checked(setting: Setting, value: object) -> SettingValue:
    if setting.kind == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(f"'{setting.key}' must be true or false, got {value!r}.")
        return value
    if setting.kind == "integer":
        lo, hi = setting.minimum, setting.maximum
        if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo) or (
                hi is not None and value > hi):
            raise ConfigError(f"'{setting.key}' must be a whole number from {lo} to {hi}, got {value!r}.")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"'{setting.key}' must be a string, got {type(value).__name__}.")
    value = value.strip()
    if len(value) > MAX_TOKEN_CHARS or any(c.isspace() or unicodedata.category(c) == "Cc" for c in value):
        raise ConfigError(f"'{setting.key}' is not a token: a single word without spaces or control characters, "
                          f"at most {MAX_TOKEN_CHARS} characters.")
    return value


@dataclass(frozen=True)
class SettingsPatch:
    """A checked change: config values by setting key, tokens by secret name ("" forgets one)."""

    config: dict[str, SettingValue]
    tokens: dict[str, str]


def parse_patch(body: dict[str, Any]) -> SettingsPatch:
    """The change a page asks for, every field checked against the schema; unknown fields refused by name."""
    config: dict[str, SettingValue] = {}
    tokens: dict[str, str] = {}
    for key, raw in body.items():
        setting = BY_KEY.get(key)
        if setting is None:
            raise ConfigError(f"'{key}' is not a setting; known: {', '.join(BY_KEY)}.")
        value = _checked(setting, raw)
        if setting.token is not None:
            tokens[setting.token] = str(value)
        else:
            config[key] = value
    return SettingsPatch(config, tokens)


def apply(config: Config, changes: dict[str, SettingValue]) -> Config:
    """`config` with the changes made (a new section object for each section changed: whoever holds the
    old config keeps its values); each value was checked against its setting's kind."""
    sections: dict[str, Any] = {}
    for key, value in changes.items():
        section = BY_KEY[key].section
        if section not in sections:
            sections[section] = replace(getattr(config, section))
        setattr(sections[section], key, value)
    return replace(config, **sections) if sections else config


def saved_changes(saved: object) -> dict[str, SettingValue]:
    """The values of settings.json that still fit the schema; any other is named in the log and skipped."""
    out: dict[str, SettingValue] = {}
    for key, value in (saved.items() if isinstance(saved, dict) else ()):
        setting = BY_KEY.get(key)
        if setting is None or setting.token is not None:
            continue  # a setting of an older version
        try:
            out[key] = _checked(setting, value)
        except ConfigError as e:
            log.warning("%s: %s It is ignored.", SETTINGS_FILE, e)
    return out

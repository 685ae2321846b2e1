"""Where tokens come from, and the one store of the tokens a user saves from the ComfyUI page.

Lowest first: the token `hf auth login` saved, ~/.secrets, the environment, then the page's store
(`secrets.json` in the state directory, owner-only). Only the names in the service table are read.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..state import read_json, write_json_atomic
from .services import HF_TOKEN, TOKEN_NAMES


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
    `extra` (the page's store)."""
    out: dict[str, str] = {}
    sf = Path(secrets_file) if secrets_file else Path.home() / ".secrets"
    try:
        for line in sf.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and key.strip() in TOKEN_NAMES and value.strip():
                out[key.strip()] = value.strip().strip("'\"")
    except OSError:
        pass
    for name in TOKEN_NAMES:
        if os.environ.get(name):
            out[name] = os.environ[name]
    for name, value in (extra or {}).items():
        if name in TOKEN_NAMES and value:
            out[name] = value
    if not out.get(HF_TOKEN):  # asked last: only a user without any other HF token pays its import
        saved = saved_hf_token()
        if saved:
            out[HF_TOKEN] = saved
    return out


class SecretStore:
    """The tokens saved from the page: a JSON object of token name -> value, readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        data = read_json(self.path, {})
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if k in TOKEN_NAMES and isinstance(v, str) and v}

    def update(self, tokens: dict[str, str]) -> None:
        """Set the given tokens; an empty value forgets that token."""
        stored = {**self.read(), **tokens}
        write_json_atomic(self.path, {k: v for k, v in stored.items() if v}, mode=0o600)

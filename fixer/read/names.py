"""Model names as workflows write them: normalising, telling files from non-files, and safety."""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from pathlib import Path

from ..constants import MODEL_EXTENSIONS
from ..errors import UnsafePath

# Values loaders offer that are not files (VAELoader's TAESD/pixel space, sentinels).
NON_FILE_VALUES = frozenset({"", "none", "[none]", "null", "pixel_space", "taesd", "taesdxl", "taesd3", "taef1",
                             "default", "disabled", "auto"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_SLASH_LOOKALIKE = re.compile("[\u2044\u2215\u29f8\u29f9\uff0f\uff3c\u2216]")
MAX_NAME_BYTES = 1024
MAX_COMPONENT_BYTES = 255


def normalise(name: str) -> str:
    """Windows separators to "/", surrounding space trimmed."""
    return name.strip().replace("\\", "/")


def is_model_value(value: object) -> bool:
    """A widget value that names a model file (known model extension), not a virtual choice."""
    if not isinstance(value, str) or len(value) > 4096:
        return False
    dot = value.rfind(".")
    if dot < 0 or value[dot:].strip().lower() not in MODEL_EXTENSIONS:
        return False  # the common case (prompts, numbers as text) leaves here cheaply
    v = value.strip()
    return "\n" not in v and v.lower() not in NON_FILE_VALUES and "/" not in v[v.rfind("."):]


@functools.lru_cache(maxsize=8192)  # pure; a workflow names the same model from many nodes
def unsafe_reason(name: str) -> str | None:
    """Why a name must never be turned into a path, or None when it is a plain relative name."""
    n = normalise(name)
    if "\x00" in n:
        return "it contains a NUL byte"
    if _CONTROL.search(n):
        return "it contains control characters"
    if _INVISIBLE.search(n):
        return "it contains invisible formatting characters (bidi overrides, zero-width) that hide its real name"
    if _SLASH_LOOKALIKE.search(n):
        return "it uses a character that looks like a path separator"
    if len(n.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return "it is longer than any file system allows"
    if n.startswith("/") or _DRIVE.match(n) or n.startswith("//"):
        return "it is an absolute path"
    parts = n.split("/")
    if any(p in ("..", ".") for p in parts):
        return "it climbs out of its folder with '..'"
    if any(p == "" for p in parts):
        return "it has an empty path component"
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for p in parts):
        return "a path component is longer than 255 bytes"
    folded = unicodedata.normalize("NFKC", n)
    if folded != n and (folded.count("/") != n.count("/") or ".." in folded.split("/") or folded.startswith("/")):
        return "it uses look-alike characters for path separators or '..'"
    return None


def safe_relpath(name: str) -> str:
    """The "/"-separated relative path for a model name, or UnsafePath."""
    reason = unsafe_reason(name)
    if reason:
        raise UnsafePath(name, reason)
    return normalise(name)


def confine(root: str | os.PathLike[str], name: str) -> Path:
    """Absolute path of `name` inside `root`; UnsafePath if it (or a symlink on the way) leaves root."""
    rel = safe_relpath(name)
    base = Path(root).resolve()
    target = (base / rel).resolve()  # resolves symlinks of existing components
    try:
        target.relative_to(base)
    except ValueError:
        raise UnsafePath(name, f"it resolves outside {base} (through a symlink?)") from None
    return base / rel

"""Turn a file a user has (JSON, PNG, WebP, audio/video ComfyUI saved) into workflow documents.

Every reader returns `[(kind, data)]` where kind is "workflow" (UI JSON) or "prompt" (API JSON),
or raises WorkflowError with a reason a person can act on. Nothing here knows about models.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from .errors import WorkflowError

JSON_EXTS = {".json"}
IMAGE_EXTS = {".png", ".webp", ".jpg", ".jpeg", ".avif"}
MEDIA_EXTS = {".flac", ".mp3", ".opus", ".ogg", ".mp4", ".webm", ".mov", ".mkv", ".m4a"}
WORKFLOW_EXTS = JSON_EXTS | IMAGE_EXTS | MEDIA_EXTS
MAX_FILE_BYTES = 512 * 2**20  # a workflow JSON larger than this is not a workflow

Doc = tuple[str, dict[str, Any]]


def iter_workflow_files(paths: list[str]) -> Iterator[Path]:
    """Files under each path (recursively for folders, hidden folders skipped), sorted, each once."""
    seen: set[str] = set()
    for raw in paths:
        top = os.path.abspath(os.path.expanduser(raw))
        if os.path.isdir(top):
            found = []
            for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                found.extend(os.path.join(dirpath, f) for f in filenames
                             if not f.startswith(".") and os.path.splitext(f)[1].lower() in WORKFLOW_EXTS)
            found.sort()
        else:
            found = [top]
        for f in found:
            if f not in seen:
                seen.add(f)
                yield Path(f)


def read_documents(path: Path) -> list[Doc]:
    """The workflow/prompt documents in one file."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise WorkflowError(str(path), f"cannot read the file ({e.strerror or e})") from None
    if size > MAX_FILE_BYTES:
        raise WorkflowError(str(path), f"the file is {size / 2**20:.0f} MiB, too large to be a workflow")
    ext = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise WorkflowError(str(path), f"cannot read the file ({e.strerror or e})") from None
    if ext == ".png" or raw[:8] == b"\x89PNG\r\n\x1a\n":
        docs = _png_documents(raw, path)
    elif ext in IMAGE_EXTS:
        docs = _pillow_documents(path)
    elif ext in MEDIA_EXTS:
        docs = _media_documents(path)
    else:
        return split_documents(parse_json_bytes(raw, path), path)
    if not docs:
        raise WorkflowError(str(path), "no ComfyUI workflow is embedded in this file (saved with --disable-metadata, "
                            "or by another program?)")
    return docs


def parse_json_bytes(raw: bytes, path: Path | str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WorkflowError(str(path), f"not UTF-8 text (byte {e.start}); save the workflow again from ComfyUI") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise WorkflowError(str(path), "the JSON nests too deeply to be a workflow") from None
    except json.JSONDecodeError as e:
        raise WorkflowError(str(path), f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def split_documents(data: Any, path: Path | str) -> list[Doc]:
    """Classify one parsed JSON value: UI workflow, API prompt, or a wrapper holding both."""
    if isinstance(data, dict):
        if is_ui_workflow(data):
            return [("workflow", data)]
        if is_api_prompt(data):
            return [("prompt", data)]
        docs: list[Doc] = []
        for key, kind in (("workflow", "workflow"), ("prompt", "prompt"), ("output", "prompt")):
            inner = data.get(key)
            if isinstance(inner, str):
                try:
                    inner = json.loads(inner)
                except (json.JSONDecodeError, RecursionError):
                    continue
            if isinstance(inner, dict) and (is_ui_workflow(inner) if kind == "workflow" else is_api_prompt(inner)):
                docs.append((kind, inner))
        if docs:
            return docs
    raise WorkflowError(str(path), "this JSON is not a ComfyUI workflow (no `nodes` list and no API-format nodes)")


def is_ui_workflow(d: dict) -> bool:
    return isinstance(d.get("nodes"), list)


def is_api_prompt(d: dict) -> bool:
    if not d:
        return False
    values = list(d.values())
    return all(isinstance(v, dict) for v in values) and any("class_type" in v for v in values)


def _decode_text_chunk(data: bytes) -> tuple[str, str] | None:
    key, sep, value = data.partition(b"\x00")
    if not sep:
        return None
    return key.decode("latin-1"), value.decode("utf-8", "replace")


def _png_documents(raw: bytes, path: Path) -> list[Doc]:
    """tEXt/iTXt/zTXt `workflow`/`prompt` chunks, and animated PNG `comf` chunks (key\\0json)."""
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        raise WorkflowError(str(path), "not a PNG file (bad signature)")
    texts: dict[str, str] = {}
    pos, n = 8, len(raw)
    truncated = True  # until IEND is seen
    while pos + 8 <= n:
        length, ctype = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + length]
        if len(body) < length:
            break  # truncated: keep what was read before
        pos += 12 + length
        kv = None
        if ctype in (b"tEXt", b"comf"):
            kv = _decode_text_chunk(body)
        elif ctype == b"zTXt":
            key, _, rest = body.partition(b"\x00")
            try:
                kv = (key.decode("latin-1"), zlib.decompress(rest[1:]).decode("utf-8", "replace"))
            except zlib.error:
                kv = None
        elif ctype == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            if len(rest) >= 2:
                compressed = rest[0] == 1
                _lang, _, rest2 = rest[2:].partition(b"\x00")
                _tkey, _, text = rest2.partition(b"\x00")
                try:
                    text = zlib.decompress(text) if compressed else text
                    kv = (key.decode("latin-1"), text.decode("utf-8", "replace"))
                except zlib.error:
                    kv = None
        elif ctype == b"IEND":
            truncated = False
            break
        if kv and kv[0] in ("workflow", "prompt", "Workflow", "Prompt"):
            texts.setdefault(kv[0].lower(), kv[1])
    if not texts and truncated:
        raise WorkflowError(str(path), "the PNG is truncated before any workflow metadata")
    return _docs_from_texts(texts, path)


def _docs_from_texts(texts: dict[str, str], path: Path) -> list[Doc]:
    docs: list[Doc] = []
    errors = []
    for key in ("workflow", "prompt"):
        if key not in texts:
            continue
        try:
            data = json.loads(texts[key])
        except (json.JSONDecodeError, RecursionError) as e:
            errors.append(f"embedded {key} is not valid JSON ({e})")
            continue
        if isinstance(data, dict) and (is_ui_workflow(data) if key == "workflow" else is_api_prompt(data)):
            docs.append((key, data))
    if not docs and errors:
        raise WorkflowError(str(path), "; ".join(errors))
    return docs


def _pillow_documents(path: Path) -> list[Doc]:
    """WebP (EXIF Make/Model "workflow:"/"prompt:" with decrementing tags) and other images Pillow opens."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            texts: dict[str, str] = {}
            for key, value in (im.info or {}).items():
                if isinstance(value, str) and key.lower() in ("workflow", "prompt"):
                    texts.setdefault(key.lower(), value)
            exif = im.getexif()
            for tag in sorted(exif, reverse=True):
                value = exif[tag]
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str):
                    key, sep, rest = value.partition(":")
                    if sep and key.lower() in ("workflow", "prompt"):
                        texts.setdefault(key.lower(), rest)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise WorkflowError(str(path), f"cannot read the image ({e})") from None
    return _docs_from_texts(texts, path)


def _media_documents(path: Path) -> list[Doc]:
    """Audio/video containers: metadata keys `workflow`/`prompt` (written by ComfyUI through PyAV)."""
    try:
        import av  # ComfyUI ships PyAV; the standalone CLI may not have it
    except ImportError:
        raise WorkflowError(str(path), "reading workflows from audio/video files needs PyAV: pip install av") from None
    try:
        with av.open(str(path)) as container:
            meta = {k.lower(): v for k, v in dict(container.metadata).items()}
            for stream in container.streams:
                for k, v in dict(stream.metadata).items():
                    meta.setdefault(k.lower(), v)
    except Exception as e:  # PyAV raises its own error family (av.error.*)
        raise WorkflowError(str(path), f"cannot read the media container ({e})") from None
    return _docs_from_texts({k: v for k, v in meta.items() if k in ("workflow", "prompt")}, path)


def file_label(path: Path, root: str | None = None) -> str:
    """A workflow's name in reports: relative to the folder given on the command line."""
    p = os.fspath(path)
    if root and p.startswith(root.rstrip(os.sep) + os.sep):
        return p[len(root.rstrip(os.sep)) + 1:]
    return p

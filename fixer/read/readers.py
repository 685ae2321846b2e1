"""Turn a file a user has (JSON, PNG, WebP, audio/video ComfyUI saved) into workflow documents.

Every reader returns `[(kind, data)]` where kind is "workflow" (UI JSON) or "prompt" (API JSON), plus,
beside them, "parameters" ({"text": ...}: an image's A1111 infotext, whose hashes name its models),
or raises WorkflowError with a reason a person can act on. Nothing here knows about models.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Iterator

from ..errors import WorkflowError
from .audio_tags import FLAC_MAGIC, ID3_MAGIC, OGG_MAGIC, flac_texts, id3_texts, ogg_texts
from .video_tags import EBML_MAGIC, matroska_texts, mp4_texts
from .walk import printable, walk_files

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # a ComfyUI whose pip skipped it: json alone, slower
    _orjson = None

JSON_EXTS = {".json"}
IMAGE_EXTS = {".png", ".webp", ".jpg", ".jpeg", ".avif"}
MEDIA_EXTS = {".flac", ".mp3", ".opus", ".ogg", ".mp4", ".webm", ".mov", ".mkv", ".m4a"}
WORKFLOW_EXTS = JSON_EXTS | IMAGE_EXTS | MEDIA_EXTS
MAX_FILE_BYTES = 512 * 2**20  # an image or video larger than this is not one ComfyUI saved a workflow in
# Workflow text, in a .json file or inside an image, is parsed whole. The largest real workflows are a
# few MiB; these bounds keep a hostile one from costing more than a few hundred MiB to parse (a parsed
# JSON value costs up to ~30x its text: `[{},{},...]`).
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_VALUES = 4_000_000
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")

Doc = tuple[str, dict[str, Any]]


def iter_workflow_files(paths: list[str]) -> Iterator[Path]:
    """Files under each path (recursively for folders, hidden folders skipped), sorted, each once."""
    seen: set[str] = set()
    for raw in paths:
        top = os.path.abspath(os.path.expanduser(raw))
        if os.path.isdir(top):
            found = sorted(e.path for _, e in walk_files(top, skip_dir=lambda name: name.startswith("."))
                           if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in WORKFLOW_EXTS)
        else:
            found = [top]
        for f in found:
            if f not in seen:
                seen.add(f)
                yield Path(f)


def read_documents(path: Path) -> list[Doc]:
    """The workflow/prompt documents in one file."""
    ext = path.suffix.lower()
    limit = MAX_JSON_BYTES if ext in JSON_EXTS else MAX_FILE_BYTES
    try:
        size = path.stat().st_size
        if size > limit:
            raise WorkflowError(str(path), f"the file is {size / 2**20:.0f} MiB, more than the "
                                f"{limit / 2**20:.0f} MiB a workflow {'file' if ext in JSON_EXTS else 'image'} "
                                "can be; if it is one, save it again from ComfyUI")
        with open(path, "rb") as f:
            head = f.read(12)
            if ext == ".png" or head[:8] == PNG_SIGNATURE:
                f.seek(8)
                docs = _png_documents(f, head[:8], path)
            elif (head[:4], head[8:12]) == RIFF_WEBP:
                docs = _webp_documents(f, path)
            elif head[:4] == FLAC_MAGIC:  # ComfyUI's SaveAudio: read without PyAV (audio_tags)
                f.seek(4)
                docs = _docs_from_texts(flac_texts(f, str(path)), path)
            elif head[:4] == OGG_MAGIC:  # SaveAudioOpus
                f.seek(0)
                docs = _docs_from_texts(ogg_texts(f, str(path)), path)
            elif head[:3] == ID3_MAGIC and ext == ".mp3":  # SaveAudioMP3
                f.seek(0)
                docs = _docs_from_texts(id3_texts(f, str(path)), path)
            elif head[:4] == EBML_MAGIC:  # SaveWEBM (Matroska)
                f.seek(0)
                docs = _docs_from_texts(matroska_texts(f, str(path)), path)
            elif head[4:8] == b"ftyp":  # SaveVideo (MP4)
                f.seek(0)
                docs = _docs_from_texts(mp4_texts(f, str(path)), path)
            elif ext in IMAGE_EXTS:
                docs = _pillow_documents(path)
            elif ext in MEDIA_EXTS:
                docs = _media_documents(path)
            else:
                f.seek(0)  # one read of the whole file: `head + f.read()` copied every byte once more
                return split_documents(parse_json_bytes(f.read(), path), path)
    except OSError as e:
        raise WorkflowError(str(path), f"cannot read the file ({e.strerror or e})") from None
    if not docs:
        raise WorkflowError(str(path), "no ComfyUI workflow is embedded in this file (saved with --disable-metadata, "
                            "or by another program?)")
    return docs


def parse_json_bytes(raw: bytes, path: Path | str) -> Any:
    reason = json_cost_reason(raw)
    if reason:
        raise WorkflowError(str(path), reason)
    fast = _fast_loads(raw[3:] if raw[:3] == _BOM else raw)
    if fast is not _REFUSED:
        return fast
    try:  # json words what orjson refused (and reads what it does not: NaN, lone surrogate escapes)
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WorkflowError(str(path), f"not UTF-8 text (byte {e.start}); save the workflow again from ComfyUI") \
            from None
    del raw
    try:
        return parse_json_text(text, path, fast=False)
    except json.JSONDecodeError as e:
        raise WorkflowError(str(path), f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


_BOM = b"\xef\xbb\xbf"
_REFUSED = object()


def _fast_loads(data: bytes | str) -> Any:
    """orjson's parse (the templates: 0.30 s against json's 0.48 s), or _REFUSED for anything it does not
    take as it is: the caller then parses with json, which words the error or reads what orjson does not
    (NaN, a lone surrogate escape). orjson >= 3.9.15 refuses nesting past 1024 levels itself."""
    if _orjson is None:
        return _REFUSED
    try:
        return _orjson.loads(data)
    except _orjson.JSONDecodeError:
        return _REFUSED


def json_cost_reason(text: str | bytes) -> str | None:
    """Why parsing this JSON would cost more memory than any workflow needs, or None. json.loads makes
    a Python object of every value: a file of `[{},{},...]` grows about 27-fold once parsed."""
    if len(text) > MAX_JSON_BYTES:
        return (f"the workflow text is {len(text) / 2**20:.0f} MiB, more than the "
                f"{MAX_JSON_BYTES / 2**20:.0f} MiB a workflow can be")
    if len(text) <= MAX_JSON_VALUES:  # fewer characters than the bound cannot hold more values: skip the count
        return None
    if isinstance(text, str):
        values = sum(text.count(m) for m in (",", ":", "[", "{"))
    else:
        values = sum(text.count(m) for m in (b",", b":", b"[", b"{"))
    if values > MAX_JSON_VALUES:
        return f"the workflow holds more than {MAX_JSON_VALUES} values, more than any workflow; it was not read"
    return None


def parse_json_text(text: str, path: Path | str, fast: bool = True) -> Any:
    """json.loads for workflow text from a stranger: bounded in size and cost; text that is not valid
    Unicode (a lone surrogate escape, as a string cut inside an emoji leaves) is read as U+FFFD."""
    reason = json_cost_reason(text)
    if reason:
        raise WorkflowError(str(path), reason)
    if fast and (data := _fast_loads(text)) is not _REFUSED:
        return data
    try:
        data = json.loads(text)
    except RecursionError:
        raise WorkflowError(str(path), "the JSON nests too deeply to be a workflow") from None
    except ValueError as e:  # JSONDecodeError (the caller words it), or an integer of thousands of digits
        if isinstance(e, json.JSONDecodeError):
            raise
        raise WorkflowError(str(path), "the JSON holds a number thousands of digits long; no workflow does") from None
    return _scrub_surrogates(data) if _LONE_SURROGATE_ESCAPE.search(text) else data


def _scrub_surrogates(data: Any) -> Any:
    """The same value with every lone surrogate replaced by U+FFFD (paired escapes decode to one character)."""
    def fix(v: Any) -> Any:
        if isinstance(v, str):
            return _SURROGATE.sub("\ufffd", v)
        if isinstance(v, dict):
            return {fix(k): fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(data)  # recursion is bounded: json.loads already refused what nests too deeply for it


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
                    inner = parse_json_text(inner, path)
                except (json.JSONDecodeError, WorkflowError):
                    continue
            if isinstance(inner, dict) and (is_ui_workflow(inner) if kind == "workflow" else is_api_prompt(inner)):
                docs.append((kind, inner))
        if docs:
            return docs
    raise WorkflowError(str(path), "this JSON is not a ComfyUI workflow (no `nodes` list and no API-format nodes)")


def is_ui_workflow(d: dict[str, Any]) -> bool:
    return isinstance(d.get("nodes"), list)


def is_api_prompt(d: dict[str, Any]) -> bool:
    if not d:
        return False
    values = list(d.values())
    return all(isinstance(v, dict) for v in values) and any("class_type" in v for v in values)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_KEYS = ("workflow", "prompt", "Workflow", "Prompt", "parameters")


def _inflate(data: bytes, path: Path) -> bytes:
    """zlib data inflated to at most MAX_JSON_BYTES: a chunk of a few KiB can inflate to GiBs."""
    d = zlib.decompressobj()
    out = d.decompress(data, MAX_JSON_BYTES + 1)
    if len(out) > MAX_JSON_BYTES or d.unconsumed_tail:
        raise WorkflowError(str(path), f"an embedded text inflates to more than {MAX_JSON_BYTES / 2**20:.0f} MiB, "
                            "more than a workflow can be; it was not read")
    return out


def _png_text(ctype: bytes, body: bytes, path: Path) -> tuple[str, str] | None:
    """(key, text) of a tEXt/zTXt/iTXt/comf chunk; None for a damaged one."""
    key, sep, rest = body.partition(b"\x00")
    if not sep:
        return None
    try:
        if ctype == b"zTXt":
            rest = _inflate(rest[1:], path)
        elif ctype == b"iTXt":
            if len(rest) < 2:
                return None
            compressed = rest[0] == 1
            _lang, _, rest2 = rest[2:].partition(b"\x00")
            _tkey, _, rest = rest2.partition(b"\x00")
            if compressed:
                rest = _inflate(rest, path)
    except zlib.error:
        return None
    return key.decode("latin-1"), rest.decode("utf-8", "replace")


def _png_documents(f: BinaryIO, head: bytes, path: Path) -> list[Doc]:
    """tEXt/iTXt/zTXt `workflow`/`prompt` chunks, and animated PNG `comf` chunks (key\\0json).

    Read chunk by chunk: only text chunks are loaded, the image data is skipped over.
    """
    if head != PNG_SIGNATURE:
        raise WorkflowError(str(path), "not a PNG file (bad signature)")
    texts: dict[str, str] = {}
    truncated = True  # until IEND is seen
    while True:
        chunk_head = f.read(8)
        if len(chunk_head) < 8:
            break
        length, ctype = struct.unpack(">I4s", chunk_head)
        if ctype == b"IEND":
            truncated = False
            break
        if ctype not in (b"tEXt", b"comf", b"zTXt", b"iTXt"):
            f.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
            continue
        if length > MAX_JSON_BYTES:
            raise WorkflowError(str(path), f"a text chunk of {length / 2**20:.0f} MiB, more than a workflow can be")
        body = f.read(length)
        if len(body) < length:
            break  # truncated: keep what was read before
        f.seek(4, os.SEEK_CUR)
        kv = _png_text(ctype, body, path)
        if kv and kv[0] in _TEXT_KEYS:
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
            data = parse_json_text(texts[key], path)
        except json.JSONDecodeError as e:
            errors.append(f"embedded {key} is not valid JSON ({e})")
            continue
        if isinstance(data, dict) and (is_ui_workflow(data) if key == "workflow" else is_api_prompt(data)):
            docs.append((key, data))
    if not docs and errors:
        raise WorkflowError(str(path), "; ".join(errors))
    if docs and texts.get("parameters"):
        docs.append(("parameters", {"text": texts["parameters"]}))
    return docs


_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286
_COMMENT_CODECS = {b"UNICODE\x00": "utf-16-be", b"ASCII\x00\x00\x00": "ascii"}
# ComfyUI writes a WebP's workflow and prompt as two EXIF tags, each at most a workflow's bound; metadata
# larger than both together holds no workflow we would read, and is refused before it is read.
MAX_EXIF_BYTES = 2 * MAX_JSON_BYTES + 2**20
MAX_RIFF_CHUNKS = 100_000  # an animated WebP has a chunk per frame; no saved one has this many
RIFF_WEBP = (b"RIFF", b"WEBP")


def _exif_texts(exif: Any, texts: dict[str, str]) -> None:
    """ComfyUI's EXIF tags ("workflow:..."/"prompt:...", from the last tag down) and A1111's UserComment."""
    comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if isinstance(comment, bytes) and comment[:8] in _COMMENT_CODECS:  # A1111 writes its infotext here
        texts.setdefault("parameters", comment[8:].decode(_COMMENT_CODECS[comment[:8]], "replace"))
    for tag in sorted(exif, reverse=True):
        value = exif[tag]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            key, sep, rest = value.partition(":")
            if sep and key.lower() in ("workflow", "prompt"):
                texts.setdefault(key.lower(), rest)


def _webp_exif(f: BinaryIO, path: Path) -> bytes | None:
    """The EXIF chunk of a WebP (RIFF) file, read alone: Pillow's WebP reader loads the whole file, then
    copies the EXIF several times over (2.5 GB for 480 MiB of EXIF text). Chunk headers are read and
    every other chunk is skipped; an EXIF chunk over MAX_EXIF_BYTES is refused unread."""
    for _ in range(MAX_RIFF_CHUNKS):
        head = f.read(8)
        if len(head) < 8:
            return None
        fourcc, size = head[:4], struct.unpack("<I", head[4:])[0]
        if fourcc == b"EXIF":
            if size > MAX_EXIF_BYTES:
                raise WorkflowError(str(path), f"its EXIF metadata is {size / 2**20:.0f} MiB, more than the "
                                    f"{MAX_EXIF_BYTES / 2**20:.0f} MiB a workflow and its prompt can be; "
                                    "it was not read")
            data = f.read(size)
            return data if len(data) == size else None
        f.seek(size + (size & 1), os.SEEK_CUR)
    raise WorkflowError(str(path), f"the WebP has more than {MAX_RIFF_CHUNKS} chunks, more than any saved image")


def _webp_documents(f: BinaryIO, path: Path) -> list[Doc]:
    """A WebP's workflow: ComfyUI writes it only in the EXIF chunk (as A1111 writes its infotext)."""
    return _docs_from_texts(_webp_texts(f, path), path)  # the EXIF bytes are freed before the JSON is parsed


def _webp_texts(f: BinaryIO, path: Path) -> dict[str, str]:
    from PIL import Image

    data = _webp_exif(f, path)
    texts: dict[str, str] = {}
    if data:
        try:
            exif = Image.Exif()
            exif.load(data)
            _exif_texts(exif, texts)
        except Exception as e:  # Pillow's TIFF reader raises many kinds on damaged metadata
            raise WorkflowError(str(path), f"cannot read the image's EXIF metadata ({type(e).__name__}: {e})") from None
    return texts


def _pillow_documents(path: Path) -> list[Doc]:
    """JPEG, AVIF and other images Pillow opens: text info keys and EXIF (as in a WebP)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            texts: dict[str, str] = {}
            for key, value in (im.info or {}).items():
                if isinstance(value, str) and key.lower() in ("workflow", "prompt", "parameters"):
                    texts.setdefault(key.lower(), value)
            _exif_texts(im.getexif(), texts)
    except Exception as e:  # Pillow's plugins raise many kinds (and DecompressionBombError) on damaged files
        raise WorkflowError(str(path), f"cannot read the image ({type(e).__name__}: {e})") from None
    return _docs_from_texts(texts, path)


def _media_documents(path: Path) -> list[Doc]:
    """Audio/video containers laid out otherwise than ComfyUI's savers write them (audio_tags, video_tags):
    metadata keys `workflow`/`prompt`, read through PyAV when it is there."""
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
    """A workflow's name in reports: relative to the folder given on the command line, always text."""
    p = os.fspath(path)
    if root and p.startswith(root.rstrip(os.sep) + os.sep):
        p = p[len(root.rstrip(os.sep)) + 1:]
    return printable(p)

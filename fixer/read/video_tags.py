"""The workflow text in the videos ComfyUI saves (SaveWEBM: Matroska/WebM, SaveVideo: MP4), read without PyAV.

ComfyUI sets `prompt` and `workflow` as container metadata through PyAV: Matroska global tags (SimpleTag
PROMPT / WORKFLOW, ffmpeg writes the names upper-case) and, with `movflags=use_metadata_tags`, MP4
`moov/udta/meta` items named in its `keys` box. Read as audio_tags reads: element by element, the frames
skipped over by their sizes, only the tags loaded, every size checked against the bound a workflow and its
prompt can be.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from ..errors import WorkflowError
from .audio_tags import MAX_BLOCKS, MAX_COMMENT_BYTES, WORKFLOW_KEYS, too_big

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT, _CLUSTER, _TAGS, _TAG, _SIMPLE_TAG, _TAG_NAME, _TAG_STRING = \
    0x18538067, 0x1F43B675, 0x1254C367, 0x7373, 0x67C8, 0x45A3, 0x4487
_UNKNOWN = -1  # an element of unknown size (a live stream's): it runs to its parent's end


def _vint(data: bytes, at: int, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at `at`: (value, its length), None if cut short or invalid."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    raw = data[at:at + length]
    if len(raw) < length:
        return None
    value = int.from_bytes(raw, "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (_UNKNOWN if value == (1 << (7 * length)) - 1 else value), length


def _element(head: bytes) -> tuple[int, int, int] | None:
    """(id, size, header length) of the element whose header starts `head` (at most 12 bytes)."""
    got = _vint(head, 0, keep_marker=True)
    if got is None:
        return None
    size = _vint(head, got[1], keep_marker=False)
    return None if size is None else (got[0], size[0], got[1] + size[1])


def matroska_texts(f: BinaryIO, path: str) -> dict[str, str]:
    """Global tags of a Matroska/WebM file, `f` at its start: the segment's children are walked by their
    sizes (clusters skipped unread) and every Tags element is read."""
    texts: dict[str, str] = {}
    inside_segment = False
    for _ in range(MAX_BLOCKS):
        start = f.tell()
        found = _element(f.read(12))
        if found is None:
            return texts
        element, size, header = found
        f.seek(start + header)
        if element == _SEGMENT:
            inside_segment = True  # its children follow
            continue
        if element == _TAGS and inside_segment:
            if size == _UNKNOWN or size > MAX_COMMENT_BYTES:
                raise too_big(path, "tags element", size if size != _UNKNOWN else MAX_COMMENT_BYTES + 1)
            _read_tags(f.read(size), texts)
            continue
        if size == _UNKNOWN:
            return texts  # a cluster of a live stream: nothing after it can be found without reading it
        f.seek(size, os.SEEK_CUR)
    raise WorkflowError(path, f"the video has more than {MAX_BLOCKS} elements before its end, more than any saved one")


def _children(data: bytes) -> list[tuple[int, bytes]]:
    """(id, body) of the elements laid end to end in `data`."""
    out, at = [], 0
    while at < len(data):
        found = _element(data[at:at + 12])
        if found is None or found[1] == _UNKNOWN:
            break
        element, size, header = found
        if at + header + size > len(data):
            break  # cut short: what it holds is not whole
        out.append((element, data[at + header:at + header + size]))
        at += header + size
    return out


def _read_tags(data: bytes, texts: dict[str, str]) -> None:
    for element, tag in _children(data):
        if element != _TAG:
            continue
        for inner, simple in _children(tag):
            if inner != _SIMPLE_TAG:
                continue
            fields = dict(_children(simple))
            name = fields.get(_TAG_NAME, b"").decode("utf-8", "replace").lower()
            if name in WORKFLOW_KEYS and _TAG_STRING in fields:
                texts.setdefault(name, fields[_TAG_STRING].decode("utf-8", "replace"))


def mp4_texts(f: BinaryIO, path: str) -> dict[str, str]:
    """`moov/udta/meta` (or `moov/meta`) metadata items of an MP4/QuickTime file, `f` at its start: top-level
    boxes walked by their sizes (the media data skipped unread), inside `moov` only the metadata is loaded."""
    end = f.seek(0, os.SEEK_END)
    f.seek(0)
    for _ in range(MAX_BLOCKS):
        box = _box(f, end)
        if box is None:
            return {}
        kind, body_start, body_end = box
        if kind == b"moov":
            return _moov_texts(f, body_start, body_end, path)
        f.seek(body_end)
    raise WorkflowError(path, f"the video has more than {MAX_BLOCKS} boxes before its metadata")


def _box(f: BinaryIO, end: int) -> tuple[bytes, int, int] | None:
    """(type, body start, body end) of the box at `f`'s position, within `end`; None past the end."""
    start = f.tell()
    head = f.read(8)
    if len(head) < 8:
        return None
    size, kind = struct.unpack(">I4s", head)
    header = 8
    if size == 1:
        large = f.read(8)
        if len(large) < 8:
            return None
        size, header = struct.unpack(">Q", large)[0], 16
    elif size == 0:
        size = end - start  # runs to the end
    if size < header or start + size > end:
        return None
    return kind, start + header, start + size


def _moov_texts(f: BinaryIO, start: int, end: int, path: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for kind, body_start, body_end in _boxes(f, start, end):
        if kind == b"meta":
            _meta_texts(f, body_start, body_end, path, texts)
        elif kind == b"udta":
            for inner, meta_start, meta_end in _boxes(f, body_start, body_end):
                if inner == b"meta":
                    _meta_texts(f, meta_start, meta_end, path, texts)
    return texts


def _boxes(f: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    out = []
    f.seek(start)
    for _ in range(MAX_BLOCKS):
        box = _box(f, end)
        if box is None:
            break
        out.append(box)
        f.seek(box[2])
    return out


def _meta_texts(f: BinaryIO, start: int, end: int, path: str, texts: dict[str, str]) -> None:
    """A `meta` box of `mdta` items: names in its `keys` box, values in `ilst` (item type = the key's number)."""
    if end - start > MAX_COMMENT_BYTES:
        raise too_big(path, "metadata box", end - start)
    f.seek(start)
    data = f.read(end - start)
    at = 0 if data[4:8] == b"hdlr" else 4  # ISO's meta is a full box (version, flags); QuickTime's is not
    boxes = _memory_boxes(data, at)
    names: dict[int, str] = {}
    for kind, body in boxes:
        if kind == b"keys" and len(body) >= 8:
            for number, (_, entry) in enumerate(_memory_boxes(body, 8), start=1):  # (size, namespace, name)
                names[number] = entry.decode("utf-8", "replace").lower()
    for kind, body in boxes:
        if kind != b"ilst":
            continue
        for item, value_boxes in _memory_boxes(body, 0):
            name = names.get(int.from_bytes(item, "big"))
            for inner, value in _memory_boxes(value_boxes, 0):
                if name in WORKFLOW_KEYS and inner == b"data" and len(value) >= 8:
                    texts.setdefault(name, value[8:].decode("utf-8", "replace"))  # after type and locale


def _memory_boxes(data: bytes, at: int) -> list[tuple[bytes, bytes]]:
    """(type, body) of the boxes laid end to end in `data` from `at` (a `keys` entry's namespace counts as
    its type, its name as its body)."""
    out = []
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        if size < 8 or at + size > len(data):
            break
        out.append((kind, data[at + 8:at + size]))
        at += size
    return out

"""The workflow text in the audio files ComfyUI saves (SaveAudio: FLAC, SaveAudioOpus: Ogg Opus, SaveAudioMP3),
read without PyAV.

ComfyUI writes `prompt` and `workflow` as container metadata through PyAV, which lands in a Vorbis comment
(a FLAC VORBIS_COMMENT metadata block, the Ogg stream's comment header packet) or in ID3v2 TXXX frames
(MP3). PyAV is ComfyUI's dependency, not the standalone CLI's; and these layouts are a few length-prefixed
fields. Read as the PNG and WebP readers read: only the comment or tag is loaded, everything else is skipped
over, every length is checked against what is left and against the bound a workflow and its prompt can be.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from ..errors import WorkflowError

FLAC_MAGIC = b"fLaC"
OGG_MAGIC = b"OggS"
ID3_MAGIC = b"ID3"
MAX_COMMENT_BYTES = 2 * 64 * 2**20 + 2**20  # a workflow and its prompt, each at most a workflow's bound
MAX_BLOCKS = 100_000  # FLAC metadata blocks or Ogg pages before the comment: no saved file has this many
WORKFLOW_KEYS = ("workflow", "prompt")  # the metadata ComfyUI writes (video_tags reads the same)
_FLAC_VORBIS_COMMENT = 4
_OGG_COMMENT_MARKS = (b"OpusTags", b"\x03vorbis")  # the second packet of an Opus / a Vorbis stream


def too_big(path: str, what: str, size: int) -> WorkflowError:
    """The refusal of a tag or comment larger than the bound, unread."""
    return WorkflowError(path, f"its {what} is {size / 2**20:.0f} MiB, more than a workflow and its prompt can be; "
                         "it was not read")


def vorbis_comment_texts(data: bytes) -> dict[str, str]:
    """`workflow`/`prompt` of a Vorbis comment (vendor string, then `KEY=value` fields; keys are
    case-insensitive). A field whose length runs past the data ends the reading: what came before stands."""
    texts: dict[str, str] = {}
    if len(data) < 8:
        return texts
    at = 4 + struct.unpack_from("<I", data)[0]  # past the vendor string
    if at + 4 > len(data):
        return texts
    count = struct.unpack_from("<I", data, at)[0]
    at += 4
    for _ in range(min(count, (len(data) - at) // 4)):  # each field holds at least its length
        if at + 4 > len(data):
            break
        size = struct.unpack_from("<I", data, at)[0]
        field = data[at + 4:at + 4 + size]
        if len(field) < size:
            break
        at += 4 + size
        key, sep, value = field.partition(b"=")
        name = key.decode("ascii", "replace").lower()
        if sep and name in WORKFLOW_KEYS:
            texts.setdefault(name, value.decode("utf-8", "replace"))
    return texts


def flac_texts(f: BinaryIO, path: str) -> dict[str, str]:
    """The Vorbis comment of a FLAC file, `f` just past its `fLaC` mark; every other block is skipped unread."""
    for _ in range(MAX_BLOCKS):
        head = f.read(4)
        if len(head) < 4:
            return {}
        last, kind, size = head[0] & 0x80, head[0] & 0x7F, int.from_bytes(head[1:], "big")
        if kind == _FLAC_VORBIS_COMMENT:
            data = f.read(size)  # at most 16 MiB: a block's length has 24 bits
            return vorbis_comment_texts(data) if len(data) == size else {}
        if last:
            return {}
        f.seek(size, os.SEEK_CUR)
    raise WorkflowError(path, f"the FLAC file has more than {MAX_BLOCKS} metadata blocks, more than any saved audio")


def ogg_texts(f: BinaryIO, path: str) -> dict[str, str]:
    """The comment header of the first stream of an Ogg file, `f` at its start: its second packet, joined
    from the segments of as many pages as it spans (pages of other streams skipped)."""
    serial: int | None = None
    packets = 0  # whole packets of the first stream seen so far
    comment = bytearray()
    for _ in range(MAX_BLOCKS):
        head = f.read(27)
        if len(head) < 27 or head[:4] != OGG_MAGIC:
            return {}
        page_serial, segments = struct.unpack_from("<I", head, 14)[0], head[26]
        lacing = f.read(segments)
        if len(lacing) < segments:
            return {}
        if serial is None:
            serial = page_serial
        if page_serial != serial:
            f.seek(sum(lacing), os.SEEK_CUR)
            continue
        body = f.read(sum(lacing))
        at = 0
        for size in lacing:
            if packets == 1:
                comment += body[at:at + size]
                if len(comment) > MAX_COMMENT_BYTES:
                    raise WorkflowError(path, f"its comment header is more than {MAX_COMMENT_BYTES / 2**20:.0f} MiB, "
                                        "more than a workflow and its prompt can be; it was not read")
            at += size
            if size < 255:  # a lacing value under 255 ends a packet
                packets += 1
                if packets == 2:
                    return _ogg_comment(bytes(comment))
    raise WorkflowError(path, f"the Ogg file has more than {MAX_BLOCKS} pages before its comment header")


def _ogg_comment(packet: bytes) -> dict[str, str]:
    for mark in _OGG_COMMENT_MARKS:
        if packet.startswith(mark):
            return vorbis_comment_texts(packet[len(mark):])
    return {}


_ID3_TEXT_CODECS = {0: ("latin-1", b"\x00"), 1: ("utf-16", b"\x00\x00"), 2: ("utf-16-be", b"\x00\x00"),
                    3: ("utf-8", b"\x00")}


def id3_texts(f: BinaryIO, path: str) -> dict[str, str]:
    """`workflow`/`prompt` TXXX frames (description = key) of the ID3v2.3/2.4 tag at the start of `f`."""
    head = f.read(10)
    if len(head) < 10 or head[:3] != ID3_MAGIC or head[3] not in (3, 4):
        return {}
    version, flags, size = head[3], head[5], _syncsafe(head[6:10])
    if size > MAX_COMMENT_BYTES:
        raise too_big(path, "ID3 tag", size)
    tag = f.read(size)
    if version == 3 and flags & 0x80:  # v2.3: the whole tag unsynchronised
        tag = tag.replace(b"\xff\x00", b"\xff")
    at = 0
    if flags & 0x40 and len(tag) >= 4:  # an extended header; v2.3's size leaves out its own 4 bytes
        at = _syncsafe(tag[:4]) if version == 4 else 4 + struct.unpack_from(">I", tag)[0]
    texts: dict[str, str] = {}
    while at + 10 <= len(tag) and tag[at:at + 1] != b"\x00":  # then padding
        frame_id, frame_flags = tag[at:at + 4], tag[at + 9]
        length = _syncsafe(tag[at + 4:at + 8]) if version == 4 else struct.unpack_from(">I", tag, at + 4)[0]
        body = tag[at + 10:at + 10 + length]
        at += 10 + length
        if frame_id != b"TXXX" or len(body) < length or frame_flags & 0x0C:  # compressed or encrypted: not ours
            continue
        if version == 4 and frame_flags & 0x02:
            body = body.replace(b"\xff\x00", b"\xff")
        key, value = _txxx(body)
        if key in WORKFLOW_KEYS:
            texts.setdefault(key, value)
    return texts


def _syncsafe(four: bytes) -> int:
    return (four[0] & 0x7F) << 21 | (four[1] & 0x7F) << 14 | (four[2] & 0x7F) << 7 | (four[3] & 0x7F)


def _txxx(body: bytes) -> tuple[str, str]:
    """(lower-case description, value) of a TXXX frame body: an encoding byte, then both texts in it."""
    codec, end = _ID3_TEXT_CODECS.get(body[0], ("latin-1", b"\x00")) if body else ("latin-1", b"\x00")
    text = body[1:]
    cut = text.find(end)
    while cut > 0 and len(end) == 2 and cut % 2:  # UTF-16: a terminator on a character boundary
        cut = text.find(end, cut + 1)
    if cut < 0:
        return "", ""
    value = text[cut + len(end):]
    if value.endswith(end):
        value = value[:-len(end)]
    return text[:cut].decode(codec, "replace").lower(), value.decode(codec, "replace")

"""The workflow text in the audio files ComfyUI saves (SaveAudio: FLAC, SaveAudioOpus: Ogg Opus), read without PyAV.

ComfyUI writes `prompt` and `workflow` as container metadata through PyAV, which lands in a Vorbis comment:
a FLAC VORBIS_COMMENT metadata block, the Ogg stream's comment header packet. PyAV is ComfyUI's dependency,
not the standalone CLI's; and both layouts are a few length-prefixed fields. Read as the PNG and WebP
readers read: only the comment is loaded, everything else is skipped over, every length is checked against
what is left and against the bound a workflow and its prompt can be.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from ..errors import WorkflowError

FLAC_MAGIC = b"fLaC"
OGG_MAGIC = b"OggS"
MAX_COMMENT_BYTES = 2 * 64 * 2**20 + 2**20  # a workflow and its prompt, each at most a workflow's bound
MAX_BLOCKS = 100_000  # FLAC metadata blocks or Ogg pages before the comment: no saved file has this many
_KEYS = ("workflow", "prompt")
_FLAC_VORBIS_COMMENT = 4
_OGG_COMMENT_MARKS = (b"OpusTags", b"\x03vorbis")  # the second packet of an Opus / a Vorbis stream


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
        size = struct.unpack_from("<I", data, at)[0]
        field = data[at + 4:at + 4 + size]
        if len(field) < size:
            break
        at += 4 + size
        key, sep, value = field.partition(b"=")
        name = key.decode("ascii", "replace").lower()
        if sep and name in _KEYS:
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

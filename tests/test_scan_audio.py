"""Audio ComfyUI saved (SaveAudio's FLAC, SaveAudioOpus's Ogg, SaveAudioMP3) is read without PyAV, as
ComfyUI_examples' audio/*.flac.

The files are laid out here as PyAV (ffmpeg) writes them for ComfyUI: `prompt` and `workflow` as fields of a
Vorbis comment, in a FLAC metadata block or in an Ogg stream's second packet, or as ID3v2.4 TXXX frames.
"""

from __future__ import annotations

import json
import struct
import sys

import pytest

from fixer.read import audio_tags
from fixer.read.audio_tags import MAX_BLOCKS
from fixer.read.scan import scan_paths
from tests.conftest import make_workflow, node

PROMPT = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ace_step_v1_3.5b.safetensors"}}}


@pytest.fixture(autouse=True)
def no_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standalone CLI's environment: PyAV is ComfyUI's dependency, not ours."""
    monkeypatch.setitem(sys.modules, "av", None)


def vorbis_comment(fields: dict[str, str]) -> bytes:
    out = struct.pack("<I", 13) + b"Lavf62.12.102" + struct.pack("<I", len(fields))
    for key, value in fields.items():
        field = f"{key}={value}".encode()
        out += struct.pack("<I", len(field)) + field
    return out


def flac(comment: bytes | None, padding: int = 8192) -> bytes:
    def block(kind: int, data: bytes, last: bool = False) -> bytes:
        return bytes([kind | (0x80 if last else 0)]) + len(data).to_bytes(3, "big") + data

    blocks = block(0, bytes(34)) + block(1, bytes(padding), last=comment is None)  # STREAMINFO, PADDING
    if comment is not None:
        blocks += block(4, comment, last=True)
    return b"fLaC" + blocks + b"\xff\xf8" + bytes(64)  # then the audio frames


def ogg(packets: list[bytes], serial: int = 0x5A17) -> bytes:
    """Pages of one stream, a packet's segments spread over as many pages as it needs (255 per page)."""
    out, seq = b"", 0
    for packet in packets:
        lacing = [255] * (len(packet) // 255) + [len(packet) % 255]
        at = 0
        while lacing:
            page, lacing = lacing[:255], lacing[255:]
            size = sum(page)
            out += (b"OggS" + bytes([0, 0]) + bytes(8) + struct.pack("<II", serial, seq) + bytes(4)
                    + bytes([len(page)]) + bytes(page) + packet[at:at + size])
            at += size
            seq += 1
    return out


def workflow_text(pad: int = 0) -> str:
    wf = make_workflow([node(1, "CheckpointLoaderSimple", ["ace_step_v1_3.5b.safetensors"])])
    return json.dumps({**wf, "extra": {"note": "x" * pad}})


def missing(report) -> list[tuple[str | None, str]]:
    return sorted((s.ref.folder, s.ref.name) for s in report.by_state("missing"))


def test_a_flac_comfyui_saved_is_read_without_pyav(tmp_path, comfy_root, host_for) -> None:
    comment = vorbis_comment({"encoder": "Lavf", "prompt": json.dumps(PROMPT), "workflow": workflow_text()})
    (tmp_path / "ace_step_example.flac").write_bytes(flac(comment))
    report = scan_paths([str(tmp_path / "ace_step_example.flac")], host_for(comfy_root))
    assert report.problems == []
    assert missing(report) == [("checkpoints", "ace_step_v1_3.5b.safetensors")]
    assert report.models[0].ref.usages[0].input_name == "ckpt_name"


def test_an_opus_file_whose_comment_spans_pages_is_read_without_pyav(tmp_path, comfy_root, host_for) -> None:
    head = b"OpusHead" + bytes([1, 1]) + bytes(9)
    comment = b"OpusTags" + vorbis_comment({"PROMPT": json.dumps(PROMPT), "Workflow": workflow_text(200_000)})
    audio = ogg([head, comment]) + ogg([bytes(100)], serial=7)  # a second stream's page after it
    (tmp_path / "song.opus").write_bytes(audio)
    report = scan_paths([str(tmp_path / "song.opus")], host_for(comfy_root))
    assert report.problems == []
    assert missing(report) == [("checkpoints", "ace_step_v1_3.5b.safetensors")]


def syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def mp3(fields: dict[str, str], version: int = 4, encoding: int = 3) -> bytes:
    codec, end = {3: ("utf-8", b"\x00"), 1: ("utf-16", b"\x00\x00")}[encoding]
    frames = b""
    for key, value in fields.items():
        body = bytes([encoding]) + key.encode(codec) + end + value.encode(codec)
        size = syncsafe(len(body)) if version == 4 else struct.pack(">I", len(body))
        frames += b"TXXX" + size + b"\x00\x00" + body
    frames += bytes(64)  # padding
    return b"ID3" + bytes([version, 0, 0]) + syncsafe(len(frames)) + frames + b"\xff\xfb\x90\x64" + bytes(400)


@pytest.mark.parametrize(("version", "encoding"), [(4, 3), (3, 1)], ids=["ffmpeg-v2.4-utf8", "v2.3-utf16"])
def test_an_mp3_comfyui_saved_is_read_without_pyav(tmp_path, comfy_root, host_for, version, encoding) -> None:
    fields = {"prompt": json.dumps(PROMPT), "workflow": workflow_text(1000)}
    (tmp_path / "song.mp3").write_bytes(mp3({"encoder": "Lavf", **fields}, version, encoding))
    report = scan_paths([str(tmp_path / "song.mp3")], host_for(comfy_root))
    assert report.problems == []
    assert missing(report) == [("checkpoints", "ace_step_v1_3.5b.safetensors")]


def test_audio_without_a_workflow_or_with_a_damaged_comment_says_so(tmp_path, comfy_root, host_for) -> None:
    whole = vorbis_comment({"workflow": workflow_text()})
    files = {
        "plain.flac": flac(None),
        "cut.flac": flac(whole[:-40]),  # the workflow field runs past the block: read to where it is whole
        "plain.ogg": ogg([b"\x01vorbis" + bytes(23), b"\x03vorbis" + vorbis_comment({"title": "x"})]),
        "lies.flac": flac(struct.pack("<II", 2**31, 2**31)),  # lengths past the end of everything
        "count.flac": flac(struct.pack("<III", 0, 3, 8) + b"title=ab" + b"\x00\x00"),  # more fields than bytes
        "plain.mp3": mp3({"comment": "no workflow"}),
        "cut.mp3": mp3({"workflow": workflow_text()})[:200],  # the frame runs past the end of the file
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    report = scan_paths([str(tmp_path)], host_for(comfy_root))
    assert sorted(p.path for p in report.problems) == sorted(files)
    assert all("no ComfyUI workflow is embedded" in p.error for p in report.problems)


def test_a_flac_of_endless_tiny_blocks_is_refused_not_walked(tmp_path, comfy_root, host_for) -> None:
    (tmp_path / "blocks.flac").write_bytes(b"fLaC" + b"\x01\x00\x00\x00" * (MAX_BLOCKS + 1))
    report = scan_paths([str(tmp_path / "blocks.flac")], host_for(comfy_root))
    assert "more than 100000 metadata blocks" in report.problems[0].error


def test_an_ogg_comment_past_the_bound_is_refused_unread(tmp_path, comfy_root, host_for, monkeypatch) -> None:
    monkeypatch.setattr(audio_tags, "MAX_COMMENT_BYTES", 100_000)  # the real bound is 129 MiB
    comment = b"OpusTags" + vorbis_comment({"workflow": workflow_text(150_000)})
    (tmp_path / "huge.opus").write_bytes(ogg([b"OpusHead" + bytes(11), comment]))
    report = scan_paths([str(tmp_path / "huge.opus")], host_for(comfy_root))
    assert "comment header is more than" in report.problems[0].error


def test_an_id3_tag_past_the_bound_is_refused_unread(tmp_path, comfy_root, host_for, monkeypatch) -> None:
    monkeypatch.setattr(audio_tags, "MAX_COMMENT_BYTES", 100_000)
    (tmp_path / "huge.mp3").write_bytes(mp3({"workflow": workflow_text(150_000)}))
    report = scan_paths([str(tmp_path / "huge.mp3")], host_for(comfy_root))
    assert "its ID3 tag is" in report.problems[0].error

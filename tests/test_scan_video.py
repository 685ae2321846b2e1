"""Videos ComfyUI saved (SaveWEBM's WebM, SaveVideo's MP4) are read without PyAV.

Laid out as PyAV (ffmpeg) writes them for ComfyUI: Matroska global tags PROMPT / WORKFLOW in the segment
(before or after the clusters), MP4 `moov/udta/meta` items named in a `keys` box (movflags=use_metadata_tags),
`moov` after the media data.
"""

from __future__ import annotations

import json
import struct
import sys

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from fixer.errors import WorkflowError
from fixer.read import video_tags
from fixer.read.readers import read_documents
from fixer.read.scan import scan_paths
from tests.conftest import make_workflow, node

PROMPT = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
                                                        "weight_dtype": "default"}}}
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


@pytest.fixture(autouse=True)
def no_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)


def workflow_text(pad: int = 0) -> str:
    wf = make_workflow([node(1, "UNETLoader", ["wan2.1_t2v_1.3B_fp16.safetensors", "default"])])
    return json.dumps({**wf, "extra": {"note": "x" * pad}})


def el(element: bytes, payload: bytes, size: bytes | None = None) -> bytes:
    return element + (size or b"\x01" + len(payload).to_bytes(7, "big")) + payload


def webm(tags: dict[str, str], tags_first: bool = False, segment_size: bytes | None = None) -> bytes:
    simple = b"".join(el(b"\x67\xc8", el(b"\x45\xa3", k.encode()) + el(b"\x44\x87", v.encode()))
                      for k, v in tags.items())
    tags_el = el(b"\x12\x54\xc3\x67", el(b"\x73\x73", el(b"\x63\xc0", b"") + simple))
    cluster = el(b"\x1f\x43\xb6\x75", bytes(500))
    body = tags_el + cluster if tags_first else cluster + tags_el
    return el(b"\x1a\x45\xdf\xa3", el(b"\x42\x82", b"webm")) + el(b"\x18\x53\x80\x67", body, segment_size)


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def mp4(items: dict[str, str], large_mdat: bool = False) -> bytes:
    keys = box(b"keys", bytes(4) + struct.pack(">I", len(items)) + b"".join(box(b"mdta", k.encode()) for k in items))
    ilst = box(b"ilst", b"".join(box(struct.pack(">I", i), box(b"data", struct.pack(">II", 1, 0) + v.encode()))
                                 for i, v in enumerate(items.values(), start=1)))
    meta = box(b"meta", box(b"hdlr", bytes(8) + b"mdta" + bytes(12)) + keys + ilst)
    moov = box(b"moov", box(b"mvhd", bytes(100)) + box(b"trak", bytes(300)) + box(b"udta", meta))
    media = bytes(1000)
    mdat = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + len(media)) + media if large_mdat \
        else box(b"mdat", media)
    return box(b"ftyp", b"isom" + bytes(4) + b"isomiso2avc1mp41") + box(b"free", b"") + mdat + moov


def missing(report) -> list[tuple[str | None, str]]:
    return sorted((s.ref.folder, s.ref.name) for s in report.by_state("missing"))


CASES = {
    "tags-after-clusters.webm": webm({"PROMPT": json.dumps(PROMPT), "WORKFLOW": workflow_text(), "ENCODER": "Lavf"}),
    "tags-first.webm": webm({"WORKFLOW": workflow_text(70_000)}, tags_first=True),
    "live.mkv": webm({"WORKFLOW": workflow_text()}, tags_first=True, segment_size=UNKNOWN_SIZE),
    "video.mp4": mp4({"prompt": json.dumps(PROMPT), "workflow": workflow_text(), "encoder": "Lavf"}),
    "large-mdat.mp4": mp4({"workflow": workflow_text(70_000)}, large_mdat=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_video_comfyui_saved_is_read_without_pyav(tmp_path, comfy_root, host_for, name) -> None:
    (tmp_path / name).write_bytes(CASES[name])
    report = scan_paths([str(tmp_path / name)], host_for(comfy_root))
    assert report.problems == []
    assert missing(report) == [("diffusion_models", "wan2.1_t2v_1.3B_fp16.safetensors")]


def test_videos_without_a_workflow_or_cut_short_say_so(tmp_path, comfy_root, host_for) -> None:
    whole_webm, whole_mp4 = CASES["tags-after-clusters.webm"], CASES["video.mp4"]
    files = {
        "plain.webm": webm({"ENCODER": "Lavf"}),
        "cut.webm": whole_webm[:len(whole_webm) - 200],  # cut inside the workflow tag
        "plain.mp4": mp4({"encoder": "Lavf"}),
        "cut.mp4": whole_mp4[:len(whole_mp4) - 60],  # moov runs past the end
        "lies.mp4": whole_mp4[:40] + struct.pack(">I", 2**31) + b"moov" + bytes(30),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    report = scan_paths([str(tmp_path)], host_for(comfy_root))
    assert sorted(p.path for p in report.problems) == sorted(files)
    assert all("no ComfyUI workflow is embedded" in p.error for p in report.problems)


def test_video_metadata_past_the_bound_is_refused_unread(tmp_path, comfy_root, host_for, monkeypatch) -> None:
    monkeypatch.setattr(video_tags, "MAX_COMMENT_BYTES", 100_000)
    (tmp_path / "huge.webm").write_bytes(webm({"WORKFLOW": workflow_text(150_000)}))
    (tmp_path / "huge.mp4").write_bytes(mp4({"workflow": workflow_text(150_000)}))
    report = scan_paths([str(tmp_path)], host_for(comfy_root))
    assert {p.path: p.error.split(" is ")[0] for p in report.problems} == {
        "huge.webm": "its tags element", "huge.mp4": "its metadata box"}


def _containers() -> dict[str, bytes]:
    from tests.test_scan_audio import PROMPT as AUDIO_PROMPT
    from tests.test_scan_audio import flac, mp3, ogg, vorbis_comment

    fields = {"prompt": json.dumps(AUDIO_PROMPT), "workflow": workflow_text(2000)}
    return {"a.flac": flac(vorbis_comment(fields), padding=64),
            "a.opus": ogg([b"OpusHead" + bytes(11), b"OpusTags" + vorbis_comment(fields)]),
            "a.mp3": mp3(fields), "a.webm": CASES["tags-after-clusters.webm"], "a.mp4": CASES["video.mp4"]}


CONTAINERS = _containers()


@seed(20261207)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(CONTAINERS)), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                                 min_size=1, max_size=12),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_byte_mutated_audio_and_video_are_read_or_refused_never_crash(tmp_path, name, flips, cut) -> None:
    """Every length field of these layouts is untrusted: a flipped or cut one reads or refuses the file."""
    raw = bytearray(CONTAINERS[name])
    for where, value in flips:
        raw[min(len(raw) - 1, int(where * len(raw)))] = value
    if cut is not None:
        raw = raw[:int(cut * len(raw))]
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    try:
        docs = read_documents(path)
    except WorkflowError as e:
        assert e.reason
    else:
        assert docs and all(kind in ("workflow", "prompt") for kind, _ in docs)

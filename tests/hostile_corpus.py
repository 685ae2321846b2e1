"""Hostile inputs that cost time or memory to read, shared by the tests and benchmarks/hostile_bench.py.

Each generator makes a small file (or one written by streaming) whose naive reading multiplies work:
- `nested_subgraphs`: subgraph definitions that each place `per_level` instances of the next level,
  `levels` deep (12 KB; 10**6 instance paths at 6 x 10).
- `air_flood`: megabytes of distinct Civitai AIR URNs in one `extra` string.
- `prompt_flood`: megabytes of distinct `embedding:` and `<lora:...>` names in one prompt.
- `clue_flood`: 50,000 LoRA loaders beside 200 AIRs of LoRAs (clue pairing was references x clues).
- `weight_flood`: an embedding with megabytes of "weight" digits (a backtracking pattern's worst case).
- `exif_webp`: a WebP whose EXIF chunk carries hundreds of MiB of text (written in slices).
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

MiB = 2**20


def _node(node_id: int, node_type: str, widgets: list[Any] | None = None, mode: int = 0) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "pos": [100 * node_id, 200], "size": [270, 98], "flags": {},
            "order": node_id, "mode": mode, "inputs": [], "outputs": [], "properties": {},
            "widgets_values": widgets or []}


def _workflow(nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "hostile", "revision": 0, "last_node_id": len(nodes), "last_link_id": 0, "nodes": nodes,
            "links": [], "groups": [], "config": {}, "extra": extra.pop("extra", {}), "version": 0.4, **extra}


def nested_subgraphs(levels: int = 6, per_level: int = 10) -> dict[str, Any]:
    """The root places `per_level` instances of level 1; each level places `per_level` of the next; the
    deepest holds a checkpoint, a LoRA and a node type nobody has: per_level**levels placements of each."""
    defs = []
    for level in range(1, levels + 1):
        if level < levels:
            nodes = [_node(i + 1, f"sg-{level + 1}") for i in range(per_level)]
        else:
            nodes = [_node(1, "CheckpointLoaderSimple", ["nested_ckpt.safetensors"]),
                     _node(2, "LoraLoader", ["nested_lora.safetensors", 1.0, 1.0]),
                     _node(3, "NestedNodeNobodyHas", [])]
        defs.append({"id": f"sg-{level}", "name": f"Level {level}", "nodes": nodes, "links": []})
    root = [_node(i + 1, "sg-1") for i in range(per_level)]
    return _workflow(root, definitions={"subgraphs": defs})


def air_urns(count: int) -> list[str]:
    kinds = ("lora", "checkpoint", "embedding", "vae")
    return [f"urn:air:sdxl:{kinds[i % 4]}:civitai:{100000 + i}@{200000 + i}" for i in range(count)]


def air_flood(total_bytes: int = 3 * MiB) -> dict[str, Any]:
    """`extra.airs` as one string of distinct AIR URNs (as Civitai's generator would write a list, joined)."""
    urns: list[str] = []
    size, step = 0, 4096
    while size < total_bytes:
        batch = air_urns(len(urns) + step)[len(urns):]
        urns += batch
        size += sum(len(u) + 1 for u in batch)
    wf = _workflow([_node(1, "LoraLoader", ["flood_lora.safetensors", 1.0, 1.0])])
    wf["extra"]["airs"] = " ".join(urns)
    return wf


def prompt_flood(total_bytes: int = 3 * MiB) -> dict[str, Any]:
    """One CLIPTextEncode prompt naming tens of thousands of distinct embeddings and LoRA tags."""
    parts: list[str] = []
    size, i = 0, 0
    while size < total_bytes:
        part = f"embedding:emb_{i} <lora:tag_{i}:0.5>"
        parts.append(part)
        size += len(part) + 1
        i += 1
    return _workflow([_node(1, "ImpactWildcardEncode", [" ".join(parts)])])


def clue_flood(refs: int = 50_000) -> dict[str, Any]:
    """Tens of thousands of LoRA loaders beside 200 LoRA AIRs: each clue weighed against each reference."""
    nodes = [_node(i + 1, "LoraLoader", [f"clue_lora_{i}.safetensors", 1.0, 1.0]) for i in range(refs)]
    wf = _workflow(nodes)
    wf["extra"]["airs"] = [u.replace(":checkpoint:", ":lora:") for u in air_urns(200)]
    return wf


def weight_flood(digits: int = 2 * MiB) -> dict[str, Any]:
    """An embedding whose "weight" is megabytes of digits that never end in one: `:\\d*\\.?\\d+$` backtracks."""
    return _workflow([_node(1, "CLIPTextEncode", ["embedding:x:" + "1" * digits + "x"])])


def _tiny_webp() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 12
    while pos + 8 <= len(data):
        fourcc, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        out.append((fourcc, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return out


def _exif_head(text_bytes: int) -> bytes:
    """A little-endian TIFF header and IFD0 with one tag: Make (ASCII), `text_bytes` long, data right after."""
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 + 4
    entry = struct.pack("<HHII", 0x010F, 2, text_bytes, data_offset)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


def write_exif_webp(out: BinaryIO, text: bytes, filler: int = 0) -> None:
    """A 1x1 WebP whose EXIF Make tag holds `text` plus `filler` spaces (written in slices, never held)."""
    image = [(c, b) for c, b in _riff_chunks(_tiny_webp()) if c not in (b"VP8X", b"EXIF")]
    text_bytes = len(text) + filler + 1  # ASCII values end with NUL
    exif_size = len(_exif_head(text_bytes)) + text_bytes
    vp8x = struct.pack("<B3x", 0x08) + (0).to_bytes(3, "little") + (0).to_bytes(3, "little")  # EXIF flag, 1x1
    body = [(b"VP8X", vp8x)] + image
    total = 4 + sum(8 + len(b) + (len(b) & 1) for _, b in body) + 8 + exif_size + (exif_size & 1)
    out.write(b"RIFF" + struct.pack("<I", total) + b"WEBP")
    out.writelines(fourcc + struct.pack("<I", len(b)) + b + b"\x00" * (len(b) & 1) for fourcc, b in body)
    out.write(b"EXIF" + struct.pack("<I", exif_size) + _exif_head(text_bytes) + text)
    block = b" " * MiB
    left = filler
    while left:
        out.write(block[:min(left, MiB)])
        left -= min(left, MiB)
    out.write(b"\x00" + b"\x00" * (exif_size & 1))


def exif_webp(path: Path, text_mib: int = 480) -> Path:
    """A WebP whose EXIF says "workflow:" followed by `text_mib` MiB of JSON-ish text (a workflow too big)."""
    wf = json.dumps(_workflow([_node(1, "LoraLoader", ["exif_lora.safetensors", 1.0, 1.0])]))
    with open(path, "wb") as f:
        write_exif_webp(f, ("workflow:" + wf).encode(), filler=text_mib * MiB)
    return path

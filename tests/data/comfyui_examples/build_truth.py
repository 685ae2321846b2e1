"""Derive truth.json from a checkout of comfyanonymous/ComfyUI_examples (README.md says how and why).

    python tests/data/comfyui_examples/build_truth.py CHECKOUT [GIT_DIR] > tests/data/comfyui_examples/truth.json

GIT_DIR (default CHECKOUT/.git) lists the files of the pinned commit, so one absent from CHECKOUT is named.

Independent of the fixer package on purpose: it reads the embedded workflows with Pillow and the json module
only, and takes each folder from the table below (ComfyUI's own answer), so the test compares the scan with
something the scan did not produce.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

CORPUS = "https://github.com/comfyanonymous/ComfyUI_examples"
PINNED = "f9431bb000ce792094ff345446e22cac1ea6cef3"
OBJECT_INFO = Path(__file__).resolve().parents[1] / "comfyui" / "object_info.json"

# The inputs of ComfyUI 0.3.64's core nodes that list a model folder, as ComfyUI itself answers: every node's
# INPUT_TYPES() read with folder_paths.get_filename_list(folder) answering ["@<folder>"] (README.md).
FOLDER_INPUTS: dict[str, dict[str, str]] = {
    "CLIPLoader": {"clip_name": "text_encoders"},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "CheckpointLoader": {"ckpt_name": "checkpoints", "config_name": "configs"},
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "ControlNetLoader": {"control_net_name": "controlnet"},
    "CreateHookLora": {"lora_name": "loras"},
    "CreateHookLoraModelOnly": {"lora_name": "loras"},
    "CreateHookModelAsLora": {"ckpt_name": "checkpoints"},
    "CreateHookModelAsLoraModelOnly": {"ckpt_name": "checkpoints"},
    "DiffControlNetLoader": {"control_net_name": "controlnet"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "GLIGENLoader": {"gligen_name": "gligen"},
    "HypernetworkLoader": {"hypernetwork_name": "hypernetworks"},
    "ImageOnlyCheckpointLoader": {"ckpt_name": "checkpoints"},
    "LoraLoader": {"lora_name": "loras"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "ModelPatchLoader": {"name": "model_patches"},
    "PhotoMakerLoader": {"photomaker_model_name": "photomaker"},
    "QuadrupleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in (1, 2, 3, 4)},
    "StyleModelLoader": {"style_model_name": "style_models"},
    "TrainLoraNode": {"existing_lora": "loras"},
    "TripleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in (1, 2, 3)},
    "UNETLoader": {"unet_name": "diffusion_models"},
    "UpscaleModelLoader": {"model_name": "upscale_models"},
    "VAELoader": {"vae_name": "vae"},
    "unCLIPCheckpointLoader": {"ckpt_name": "checkpoints"},
}
# Core in every ComfyUI, absent from object_info.json only because that server ran without torchaudio.
AUDIO_CORE = {"EmptyLatentAudio", "VAEEncodeAudio", "VAEDecodeAudio", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus",
              "LoadAudio", "PreviewAudio", "ConditioningStableAudio", "RecordAudio", "TrimAudioDuration",
              "SplitAudioChannels", "AudioConcat", "AudioMerge", "AudioAdjustVolume", "EmptyAudio",
              "AudioEncoderLoader", "AudioEncoderEncode"}
# The frontend's own nodes: never sent to the server, never missing.
FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
# ComfyUI's tokenizer reads `embedding:<name>` in any prompt text it encodes (comfy/sd1_clip.py), at the
# start of a word (after a space or a line break) or of a weighted segment (after a bracket); the name ends
# at white space, a comma or a bracket of the weighting syntax.
EMBEDDING = re.compile(r"(?:^|(?<=[ \n()]))embedding:([^\s,()]+)")
WORKFLOW_SUFFIXES = {".png", ".webp", ".json", ".flac", ".jpg", ".jpeg"}


def flac_comments(data: bytes) -> dict[str, str]:
    """Vorbis comments of a FLAC file (ComfyUI's SaveAudio writes `prompt` and `workflow` there)."""
    out: dict[str, str] = {}
    if data[:4] != b"fLaC":
        return out
    pos = 4
    while pos + 4 <= len(data):
        last, kind, size = data[pos] & 0x80, data[pos] & 0x7F, int.from_bytes(data[pos + 1:pos + 4], "big")
        block = data[pos + 4:pos + 4 + size]
        if kind == 4:
            vendor = int.from_bytes(block[:4], "little")
            at = 4 + vendor
            count = int.from_bytes(block[at:at + 4], "little")
            at += 4
            for _ in range(count):
                n = int.from_bytes(block[at:at + 4], "little")
                key, _, value = block[at + 4:at + 4 + n].decode("utf-8").partition("=")
                out[key.lower()] = value
                at += 4 + n
        if last:
            break
        pos += 4 + size
    return out


def documents(path: Path) -> dict[str, Any]:
    """The `workflow` (UI) and `prompt` (API) documents a file carries, by what ComfyUI's savers write."""
    suffix = path.suffix.lower()
    texts: dict[str, str] = {}
    if suffix == ".json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {"workflow" if "nodes" in doc else "prompt": doc}
    if suffix == ".flac":
        texts = flac_comments(path.read_bytes())
    else:
        with Image.open(path) as im:
            texts = {k: v for k, v in im.info.items() if isinstance(v, str)}  # PNG text chunks
            for value in im.getexif().values():  # WebP: EXIF Make/Model hold "workflow:{...}", "prompt:{...}"
                if isinstance(value, str) and ":" in value:
                    key, _, rest = value.partition(":")
                    texts[key] = rest
    return {k: json.loads(texts[k]) for k in ("workflow", "prompt") if k in texts}


def widget_names(node_def: dict[str, Any]) -> list[str]:
    """The order of a node's widgets_values (the frontend adds control_after_generate after a seed)."""
    names = []
    for section in ("required", "optional"):
        spec = node_def["input"].get(section) or {}
        for key in (node_def.get("input_order") or {}).get(section) or list(spec):
            kind, opts = spec[key][0], (spec[key][1] if len(spec[key]) > 1 else {})
            if (isinstance(kind, list) or kind in ("COMBO", "INT", "FLOAT", "STRING", "BOOLEAN")) \
                    and not opts.get("forceInput"):
                names.append(key)
                if kind == "INT" and (opts.get("control_after_generate") or key in ("seed", "noise_seed")):
                    names.append("control_after_generate")
    return names


def ui_nodes(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(node type, {input: value}) of the root graph and each subgraph definition. A legacy group node's
    definition is left out: it keeps the values the group was made with, not the ones its instance runs with
    (the API form, read beside, has those)."""
    info = json.loads(OBJECT_INFO.read_text(encoding="utf-8"))
    graphs = [doc.get("nodes") or []]
    graphs += [sg.get("nodes") or [] for sg in (doc.get("definitions") or {}).get("subgraphs") or []]
    for nodes in graphs:
        for node in nodes:
            values = node.get("widgets_values")
            if isinstance(values, dict):
                yield node["type"], values
            elif node["type"] in info:
                yield node["type"], dict(zip(widget_names(info[node["type"]]), values or []))
            else:
                yield node["type"], {str(i): v for i, v in enumerate(values or [])}


def api_nodes(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for node in doc.values():
        if isinstance(node, dict) and "class_type" in node:
            yield node["class_type"], {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}


def references(nodes: Iterator[tuple[str, dict[str, Any]]]) -> set[tuple[str, str, str, str]]:
    refs = set()
    for node_type, inputs in nodes:
        for name, value in inputs.items():
            if not isinstance(value, str):
                continue
            folder = FOLDER_INPUTS.get(node_type, {}).get(name)
            if folder and value:
                refs.add((node_type, name, value.replace("\\", "/"), folder))
            elif node_type not in ("Note", "MarkdownNote"):
                refs |= {(node_type, name, m, "embeddings") for m in EMBEDDING.findall(value)}
    return refs


def node_types(docs: dict[str, Any]) -> set[str]:
    types: set[str] = set()
    if "workflow" in docs:
        doc = docs["workflow"]
        sgs = (doc.get("definitions") or {}).get("subgraphs") or []
        types |= {n["type"] for nodes in [doc.get("nodes") or []] + [sg.get("nodes") or [] for sg in sgs]
                  for n in nodes}
        types -= {sg["id"] for sg in sgs}
        types |= {n["type"] for g in ((doc.get("extra") or {}).get("groupNodes") or {}).values()
                  for n in g.get("nodes") or []}
        types = {t for t in types if not t.startswith(("workflow>", "workflow/"))}  # group node instances
    if "prompt" in docs:
        types |= {t for t, _ in api_nodes(docs["prompt"])}
    return types


def file_truth(path: Path, known: set[str]) -> dict[str, Any]:
    docs = documents(path)
    if not docs:
        return {"workflow": False}
    ui = references(ui_nodes(docs["workflow"])) if "workflow" in docs else set()
    api = references(api_nodes(docs["prompt"])) if "prompt" in docs else set()
    # The API form lacks muted nodes; the UI form is what the user loads. Both are read: a reference only
    # one of them names is still one the workflow needs, and is listed under where it came from.
    return {
        "workflow": True,
        "refs": sorted(list(r) for r in ui | api),
        "only_in_prompt": sorted(list(r) for r in api - ui),
        "only_in_workflow": sorted(list(r) for r in ui - api) if api else [],
        "missing_nodes": sorted(t for t in node_types(docs) - known - AUDIO_CORE - FRONTEND_ONLY),
    }


def main(corpus: Path, git_dir: Path) -> None:
    files = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-z", "--name-only", PINNED],
                           check=True, capture_output=True, text=True).stdout.split("\0")
    known = set(json.loads(OBJECT_INFO.read_text(encoding="utf-8")))
    truth: dict[str, Any] = {"corpus": CORPUS, "commit": PINNED, "object_info": "tests/data/comfyui/object_info.json",
                             "files": {}}
    for rel in sorted(filter(None, files)):
        path = corpus / rel
        if Path(rel).suffix.lower() not in WORKFLOW_SUFFIXES:
            continue
        if not path.is_file():  # the mirror this was built from lacked some large files: named, not guessed
            truth["files"][rel] = {"not_derived": "absent from the copy the truth was built from"}
            continue
        truth["files"][rel] = file_truth(path, known)
    json.dump(truth, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else Path(sys.argv[1]) / ".git"))

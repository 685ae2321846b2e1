"""Build tests/data/real_packs/{packs,truth}.json from a real ComfyUI with the node packs installed.

    COMFYUI_DIR=/path/ComfyUI COMFY_PYTHON=/path/venv/bin/python python tests/data/real_packs/build_truth.py [CORPUS]

CORPUS is the folder holding packs.json, where truth.json is written (default: this one; the second
corpus is tests/data/real_packs_2).

The truth is probed, not guessed: a throwaway extension reports folder_paths' registered folders
(paths and accepted extensions) and the names the nodes ask folder_paths for that it does not register
(a pack that then lists models/<name> itself: BrushNet's "inpaint"; such a folder is made for the probe,
marked "unregistered", and removed afterwards), a marker file `__probe__<folder><ext>` goes into every folder,
and /object_info then shows which input's COMBO lists which marker => input -> folder (a marker
listed as `bbox/__probe__ultralytics_bbox.pt` is a prefixed listing); ComfyUI restarts between the
two so indexes built at startup see the markers too. Markers and the extension are removed afterwards,
so the model folders are empty again (a fresh install).

Then every example workflow the packs ship (packs.json) is read: each widget value of an input that
reads a folder is a reference to that folder; a value that is one of the fixed COMBO options of an
input reading no folder is "self-downloading"; `embedding:` in a text encoder's text and `<lora:>`
in the text of nodes that parse it are prompt references. Only derived data is written; the
packs' files stay in $COMFYUI_DIR/custom_nodes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.e2e.comfyui_proc import ComfyUI, free_port  # noqa: E402

MARKER = "__probe__"
PROBE_EXT = "_comfyfixer_truth_probe"
PROBE_CODE = '''
from aiohttp import web
import folder_paths, server
NODE_CLASS_MAPPINGS = {}
UNREGISTERED = set()

def recording(real):
    def asked(name, *args, **kwargs):
        if isinstance(name, str) and name not in folder_paths.folder_names_and_paths:
            UNREGISTERED.add(name)
        return real(name, *args, **kwargs)
    return asked

for _f in ("get_folder_paths", "get_filename_list"):
    setattr(folder_paths, _f, recording(getattr(folder_paths, _f)))

@server.PromptServer.instance.routes.get("/truthprobe/folders")
async def folders(request):
    return web.json_response({k: {"paths": list(p), "exts": sorted(e)}
                              for k, (p, e) in folder_paths.folder_names_and_paths.items()})

@server.PromptServer.instance.routes.get("/truthprobe/unregistered")
async def unregistered(request):
    return web.json_response({"names": sorted(UNREGISTERED), "models_dir": folder_paths.models_dir})
'''
# Marker extensions for a folder ComfyUI does not register (a pack lists models/<name> itself and filters
# by extensions of its own).
UNREGISTERED_EXTS = [".safetensors", ".bin", ".pth", ".pt", ".ckpt"]
SKIP_FOLDERS = {"custom_nodes"}  # not a model folder; a file there is a node pack candidate
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Nodes whose text inputs parse `<lora:name:weight>`: Lora-Manager's loaders and stackers (not its
# Prompt/Text nodes, which encode the text as it is), and Impact's nodes with wildcard text.
LORA_TAG_NODES = re.compile(r"^(Lora Loader|LoRA Text Loader|Lora Stacker|WanVideo Lora Select( From Text)?|"
                            r"Lora Cycler|Lora Randomizer|LoRA Syntax → Path) \(LoraManager\)$")
LORA_TAG_INPUTS = {"wildcard", "wildcard_text"}
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>")
EMBEDDING = re.compile(r"embedding:([^\s,()]+?)(?::[\d.]+)?(?=[\s,()]|$)")
FILE_EXT = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf|onnx|patch|pkl|pt2|sft|torchscript|json|yaml)$", re.I)


def start(comfyui_dir: Path, python: str, log_path: Path) -> ComfyUI:
    import time
    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)],
                            cwd=comfyui_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    comfy = ComfyUI(comfyui_dir, port, proc, log_path)
    deadline = time.monotonic() + 300
    while "To see the GUI go to" not in comfy.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            comfy.stop()
            raise RuntimeError("ComfyUI did not start:\n" + comfy.log()[-3000:])
        time.sleep(0.5)
    return comfy


def marker_name(folder: str, exts: list[str]) -> str:
    if not exts:
        return f"{MARKER}{folder}.safetensors"
    ext = ".safetensors" if ".safetensors" in exts else sorted(exts)[0]
    return f"{MARKER}{folder}{ext}"


def place_markers(folders: dict) -> list[Path]:
    placed = []
    for name, info in folders.items():
        if name in SKIP_FOLDERS or not info["paths"]:
            continue
        d = Path(info["paths"][0])
        d.mkdir(parents=True, exist_ok=True)
        if info["exts"] == ["folder"]:  # diffusers: a model is a directory holding model_index.json
            m = d / f"{MARKER}{name}"
            m.mkdir(exist_ok=True)
            (m / "model_index.json").write_text("{}")
        elif info.get("unregistered"):  # one marker per extension: the pack's own filter keeps one
            for ext in info["exts"]:
                (d / f"{MARKER}{name}{ext}").write_text("")
                placed.append(d / f"{MARKER}{name}{ext}")
            continue
        else:
            m = d / marker_name(name, info["exts"])
            m.write_text("{}" if m.suffix == ".json" else "")
        placed.append(m)
    return placed


def remove_markers(placed: list[Path]) -> None:
    # Also what packs wrote beside them (Lora-Manager: <name>.metadata.json).
    for d in {m.parent for m in placed}:
        for m in d.glob(MARKER + "*"):
            shutil.rmtree(m) if m.is_dir() else m.unlink(missing_ok=True)


def combo_options(spec) -> list | None:
    if isinstance(spec, list) and spec:
        if isinstance(spec[0], list):
            return spec[0]
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            return spec[1].get("options") or []
    return None


def input_folders(object_info: dict, folders: dict) -> dict[str, dict[str, str]]:
    """'Type.input' -> {listing prefix: folder}, from the markers each COMBO lists."""
    names = {marker_name(f, i["exts"]): f for f, i in folders.items()} | {f"{MARKER}{f}": f for f in folders} \
        | {f"{MARKER}{f}{e}": f for f, i in folders.items() if i.get("unregistered") for e in i["exts"]}
    result = {}
    for node_type, info in object_info.items():
        for section in ("required", "optional"):
            for inp, spec in (info.get("input", {}).get(section) or {}).items():
                opts = combo_options(spec)
                if not opts:
                    continue
                listed = {}
                for o in opts:
                    if not isinstance(o, str) or MARKER not in o:
                        continue
                    prefix, _, base = o.rpartition("/")
                    folder = names.get(base)
                    if folder:
                        listed[(prefix + "/") if prefix else ""] = listed.get((prefix + "/") if prefix else "",
                                                                              []) + [folder]
                if not listed:
                    continue
                mapping = {}
                direct = set(listed.get("", []))
                for prefix, fs in listed.items():
                    for f in fs:
                        # A subfolder of a listed folder shows up recursively: not a prefix of its own.
                        own = Path(folders[f]["paths"][0])
                        if prefix and any(Path(folders[g]["paths"][0]) / prefix.rstrip("/") == own for g in direct):
                            continue
                        mapping.setdefault(prefix, f)
                result[f"{node_type}.{inp}"] = mapping
    return result


def widget_names(info: dict) -> list[str]:
    """The widget slots the frontend serializes, in order (seed controls take a slot of their own)."""
    out = []
    order = info.get("input_order") or {s: list((info.get("input", {}).get(s) or {})) for s in ("required", "optional")}
    for section in ("required", "optional"):
        specs = info.get("input", {}).get(section) or {}
        for name in order.get(section) or []:
            spec = specs.get(name)
            if not spec:
                continue
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if opts.get("forceInput"):
                continue
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                out.append(name)
                if kind == "INT" and (opts.get("control_after_generate") or name in ("seed", "noise_seed")):
                    out.append(None)
    return out


def graph_nodes(wf: dict):
    """(subgraph path, node) for every node, subgraph definitions included; API format too."""
    if isinstance(wf.get("nodes"), list):
        for n in wf["nodes"]:
            yield [], n
        for sg in (wf.get("definitions") or {}).get("subgraphs") or []:
            for n in sg.get("nodes") or []:
                yield [sg.get("id")], n
    else:
        for nid, n in wf.items():
            if isinstance(n, dict) and "class_type" in n:
                yield [], {"id": nid, "type": n["class_type"], "widgets_values": n.get("inputs", {})}


def node_values(node: dict, info: dict, folder_inputs: set[str]) -> dict[str, object]:
    """input name -> widget value; by position when the count fits, else by the folders' file names."""
    values = node.get("widgets_values")
    if isinstance(values, dict):
        return values
    if not isinstance(values, list):
        return {}
    names = widget_names(info)
    if len(values) in (len(names), len([n for n in names if n])):
        slots = names if len(values) == len(names) else [n for n in names if n]
        mapped = {n: v for n, v in zip(slots, values) if n}
        if all(isinstance(mapped.get(i), str) for i in folder_inputs if i in mapped):
            return mapped
    # Widgets added by the pack's own JavaScript shift the positions: pair file names with COMBOs in order.
    specs = {**(info["input"].get("required") or {}), **(info["input"].get("optional") or {})}
    combos = [n for n in names if n and (n in folder_inputs or combo_options(specs[n]) is not None)]
    return dict(zip(combos, [v for v in values if isinstance(v, str) and FILE_EXT.search(v)]))


def workflow_truth(wf: dict, object_info: dict, in_folders: dict) -> dict:
    refs, self_dl, unknown = [], [], set()
    for sub, node in graph_nodes(wf):
        t = node.get("type")
        if not isinstance(t, str) or t in ("Note", "MarkdownNote", "Reroute", "PrimitiveNode"):
            continue
        info = object_info.get(t)
        if info is None:
            if not t.startswith("workflow/") and not re.fullmatch(r"[0-9a-f-]{36}", t):
                unknown.add(t)
            continue
        specs = {**(info["input"].get("required") or {}), **(info["input"].get("optional") or {})}
        folder_inputs = {i for i in specs if f"{t}.{i}" in in_folders}
        base = {"node": str(node.get("id")), "subgraph": sub, "type": t}
        for inp, value in node_values(node, info, folder_inputs).items():
            if not isinstance(value, str) or not value or inp not in specs:
                continue
            opts = combo_options(specs[inp]) or []
            if inp in folder_inputs:
                mapping = in_folders[f"{t}.{inp}"]
                prefix = next((p for p in sorted(mapping, key=len, reverse=True) if value.startswith(p)), None)
                if prefix is None or value in opts:  # a fixed choice such as "None" beside the listing
                    continue
                refs.append({**base, "input": inp, "value": value, "folder": mapping[prefix], "kind": "widget"})
            elif opts and FILE_EXT.search(value):  # also a choice an older version of the node offered
                self_dl.append({**base, "input": inp, "value": value})
        is_encoder = "CONDITIONING" in (info.get("output") or [])
        texts = [v for v in node.get("widgets_values") or [] if isinstance(v, str)] \
            if isinstance(node.get("widgets_values"), list) else []
        seen = set()
        for text in texts:
            if is_encoder:
                for name in EMBEDDING.findall(text):
                    if ("embeddings", name) not in seen:
                        seen.add(("embeddings", name))
                        refs.append({**base, "input": None, "value": name, "folder": "embeddings", "kind": "prompt"})
            if LORA_TAG_NODES.search(t) or LORA_TAG_INPUTS & set(specs):
                for name in LORA_TAG.findall(text):
                    if ("loras", name) not in seen:
                        seen.add(("loras", name))
                        refs.append({**base, "input": None, "value": name, "folder": "loras", "kind": "prompt"})
    return {"references": refs, "self_downloading": self_dl, "unknown_node_types": sorted(unknown)}


def read_workflow(path: Path) -> dict:
    if path.suffix.lower() == ".png":
        from PIL import Image
        info = Image.open(path).info
        return json.loads(info.get("workflow") or info["prompt"])
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    corpus = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE
    comfyui_dir = Path(os.environ["COMFYUI_DIR"]).resolve()
    python = os.environ.get("COMFY_PYTHON") or str(comfyui_dir.parent / "comfy-venv" / "bin" / "python")
    packs = json.loads((corpus / "packs.json").read_text())
    probe = comfyui_dir / "custom_nodes" / PROBE_EXT
    probe.mkdir(exist_ok=True)
    (probe / "__init__.py").write_text(PROBE_CODE)
    placed: list[Path] = []
    made: list[Path] = []  # models/<name> folders created for unregistered names, removed afterwards
    comfy = None
    try:
        comfy = start(comfyui_dir, python, comfyui_dir.parent / "build_truth.log")
        folders = comfy.get_json("/truthprobe/folders")
        folders = {k: v for k, v in folders.items() if k not in SKIP_FOLDERS}
        # Folders the packs' nodes ask for that ComfyUI does not register (BrushNet reads models/inpaint
        # itself when there is no "inpaint"): asked while /object_info runs every INPUT_TYPES.
        comfy.get_json("/object_info")
        asked = comfy.get_json("/truthprobe/unregistered")
        for name in asked["names"]:
            d = Path(asked["models_dir"]) / name
            if re.fullmatch(r"[A-Za-z0-9_.-]+", name) and name not in folders and not d.exists():
                made.append(d)
                folders[name] = {"paths": [str(d)], "exts": UNREGISTERED_EXTS, "unregistered": True}
        placed = place_markers(folders)
        # Restart, not only refresh: some packs (Lora-Manager) list their own index, built at startup.
        comfy.stop()
        comfy = start(comfyui_dir, python, comfyui_dir.parent / "build_truth.log")
        object_info = comfy.get_json("/object_info")
    finally:
        remove_markers(placed)
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(probe, ignore_errors=True)
        if comfy:
            comfy.stop()
    in_folders = input_folders(object_info, folders)
    for info in object_info.values():  # markers are gone: keep the fixed options only
        for section in ("required", "optional"):
            for spec in (info.get("input", {}).get(section) or {}).values():
                opts = combo_options(spec)
                if opts:
                    opts[:] = [o for o in opts if not (isinstance(o, str) and MARKER in o)]
    root = str(comfyui_dir)
    truth = {
        "comfyui": packs["comfyui"],
        "folders": {k: {"paths": [os.path.relpath(p, root) for p in v["paths"]], "exts": v["exts"],
                        **({"unregistered": True} if v.get("unregistered") else {})}
                    for k, v in sorted(folders.items())},
        "input_folders": dict(sorted(in_folders.items())),
        "workflows": {},
    }
    for pack in packs["packs"]:
        for rel in pack["workflows"]:
            wf = read_workflow(comfyui_dir / "custom_nodes" / pack["dir"] / rel)
            truth["workflows"][f"{pack['dir']}/{rel}"] = workflow_truth(wf, object_info, in_folders)
    (corpus / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    n = sum(len(w["references"]) for w in truth["workflows"].values())
    s = sum(len(w["self_downloading"]) for w in truth["workflows"].values())
    print(f"{len(in_folders)} inputs read a folder; {len(truth['workflows'])} workflows, {n} references, "
          f"{s} self-downloading values")


if __name__ == "__main__":
    main()

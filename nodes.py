"""The utility nodes: fetch a model by its source, and report what the running graph needs.

Thin: the work is in the engine, `fixer` (source_spec, transfer, scan), imported by that one name in
every process (the pack's __init__.py loads its own copy under it inside ComfyUI). ComfyUI modules
(folder_paths, comfy.utils, nodes) and the engine's heavier modules are imported inside the methods,
so importing this file costs little and works outside ComfyUI.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from fixer.comfy import runtime as comfy_runtime
from fixer.constants import NON_MODEL_FOLDERS, map_legacy

if TYPE_CHECKING:
    from fixer.config import DownloadConfig

log = logging.getLogger("fixer.comfyui")
CATEGORY = "ComfyFixerSmart"


class AnyType(str):
    """An output type every input accepts.

    A STRING output cannot feed a loader's model COMBO in ComfyUI 0.3.x: link validation compares
    the two types with `!=`, and this type is never unequal (the same trick other packs use).
    """

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


ANY = AnyType("*")


def model_folders(folder_paths: Any) -> list[str]:
    # The host's rule, so the node offers only folders it will agree to write into.
    return sorted(k for k in folder_paths.folder_names_and_paths if k not in NON_MODEL_FOLDERS)


# (source, folder) -> file name learnt from the source (a Civitai version's file), so later runs
# and IS_CHANGED find the file without asking Civitai again.
_learnt_names: dict[tuple[str, str], str] = {}


def find_existing(folder_paths: Any, folder: str, name: str) -> str | None:
    path = folder_paths.get_full_path(folder, name)
    return path if path and os.path.isfile(path) else None


def engine_settings() -> tuple[DownloadConfig, dict[str, str]]:
    """Download settings and tokens as the page saved them (the ComfyUI service), else defaults."""
    if comfy_runtime.attached() is not None:
        svc = comfy_runtime.service()
        return svc.config.download, svc.secrets()
    from fixer.config import DownloadConfig  # ComfyUI's start-up imports this file: the engine loads on use
    from fixer.upstream.tokens import load_secrets

    # No ComfyUI server (a bare script): engine defaults, tokens from env/~/.secrets
    return DownloadConfig(), load_secrets()


async def fetch_model(source: str, folder: str, file_name: str, sha256: str, folder_paths: Any,
                      on_progress: Any = None) -> str:
    """The file name (relative to `folder`) of the model, downloading it first when it is missing."""
    from fixer.errors import ConfigError, DownloadError
    from fixer.events import EventBus, TransferProgress
    from fixer.host.host import FolderPathsHost, target_root
    from fixer.transfer import download_one
    from fixer.upstream import source_spec as spec_mod

    folder = map_legacy(folder)
    if folder not in folder_paths.folder_names_and_paths:
        raise ConfigError(f"ComfyUI has no model folder '{folder}'; pick one of the list.")
    spec = spec_mod.parse_source(source)
    key = (source.strip(), folder)
    known = (file_name or "").strip().replace("\\", "/") or spec.file_name or _learnt_names.get(key)
    if known and find_existing(folder_paths, folder, known):
        return known
    config, secrets = engine_settings()
    version = None
    if spec.source == "civitai":
        from fixer.upstream.civitai import KEY_NAME, fetch_civitai_version

        version = await asyncio.to_thread(fetch_civitai_version, spec, secrets.get(KEY_NAME))
    req = spec_mod.transfer_request(spec, folder, file_name, sha256, version)
    _learnt_names[key] = req.filename
    if find_existing(folder_paths, folder, req.filename):
        return req.filename
    bus = EventBus()
    if on_progress is not None:
        bus.subscribe(lambda e: on_progress(e.transfer.bytes_done, e.transfer.total)
                      if isinstance(e, TransferProgress) else None)
    host = FolderPathsHost(folder_paths)
    # The file's type too: a shared workflow's node must not drop `evil.py` into a model folder.
    dest_root = target_root(host.folders(), folder, name=req.filename, extensions=host.extensions)
    t = await download_one(req, dest_root, config, secrets, bus=bus)
    if t.state != "done":
        if t.error is not None:
            raise DownloadError(t.error.message, code=t.error.code)
        raise DownloadError(f"{req.filename}: the download ended as {t.state}")
    # A file in an existing subfolder does not change the folder root's mtime, ComfyUI's cache key.
    folder_paths.filename_list_cache.pop(folder, None)
    log.info("comfyfixer: downloaded %s into %s", req.filename, dest_root)
    return req.filename


class DownloadModel:
    DESCRIPTION = ("Makes sure a model file is in a ComfyUI model folder, downloading it (resumable, verified) "
                   "when missing, and outputs its file name for a loader. Works in API/headless runs.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("file_name",)
    OUTPUT_TOOLTIPS = ("The file name inside the folder: link it to a loader's model input.",)
    FUNCTION = "fetch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        import folder_paths

        folders = model_folders(folder_paths)
        default = "checkpoints" if "checkpoints" in folders else (folders[0] if folders else "")
        return {
            "required": {
                "source": ("STRING", {"default": "", "tooltip": "hf:<org>/<repo>/<file>, civitai:<versionId>, "
                                                                  "or a Hugging Face / Civitai link"}),
                "folder": (folders, {"default": default, "tooltip": "The ComfyUI model folder it belongs in"}),
            },
            "optional": {
                "file_name": ("STRING", {"default": "", "tooltip": "Save as (may hold a subfolder); "
                                                                   "default: the source's own name"}),
                "sha256": ("STRING", {"default": "", "tooltip": "Expected SHA-256; the file is refused if "
                                                                "it differs"}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, source: Any) -> bool | str:
        if not isinstance(source, str):  # linked from another node: checked when it runs
            return True
        from fixer.errors import FixerError
        from fixer.upstream.source_spec import parse_source

        try:
            parse_source(source)
        except FixerError as e:
            return str(e)
        return True

    @classmethod
    def IS_CHANGED(cls, source: str, folder: str, file_name: str = "", sha256: str = "") -> Any:
        """The target file's identity, so a deleted or replaced file makes the node run again."""
        import folder_paths

        from fixer.upstream.source_spec import parse_source

        try:
            folder = map_legacy(folder)
            name = ((file_name or "").strip() or parse_source(source).file_name
                    or _learnt_names.get((source.strip(), folder)))
            path = find_existing(folder_paths, folder, name) if name else None
        except Exception:
            path = None
        if path is None:
            return float("nan")  # unknown or missing: never equal to the last run, so it runs
        st = os.stat(path)
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"

    async def fetch(self, source: str, folder: str, file_name: str = "", sha256: str = "") -> tuple[str]:
        import folder_paths
        from comfy.utils import ProgressBar

        bar = ProgressBar(100)

        def progress(done: int, total: int | None) -> None:
            if total:
                bar.update_absolute(min(done, total), total)

        return (await fetch_model(source, folder, file_name, sha256, folder_paths, progress),)


def graph_node_types(prompt: Any) -> list[str]:
    if not isinstance(prompt, dict):
        return []
    return sorted({n["class_type"] for n in prompt.values() if isinstance(n, dict) and "class_type" in n})


def format_report(report: Any, node_types: list[str]) -> str:
    """Plain text: every model and node type the graph needs, and its state."""
    lines = []
    models = [s for s in report.models if s.state != "unused"]
    states = {st: sum(1 for s in models if s.state == st) for st in ("present", "elsewhere", "missing", "unsafe")}
    lines.append(", ".join([f"Models: {len(models)} needed"] + [f"{n} {st}" for st, n in states.items() if n]))
    for s in models:
        ref = s.ref
        where = ", ".join(f"node {u.node_id} {u.node_type}" + (f".{u.input_name}" if u.input_name else "")
                          for u in ref.usages[:3])
        line = f"  [{s.state}] {ref.folder or '(folder unknown)'}/{ref.name}"
        if where:
            line += f"  ({where})"
        if ref.optional:
            line += "  optional (muted or bypassed)"
        if s.state == "elsewhere" and s.elsewhere:
            line += f"  found in {s.elsewhere[0].folder}/{s.elsewhere[0].relpath}"
        if s.state == "unsafe" and ref.unsafe_reason:
            line += f"  refused: {ref.unsafe_reason}"
        if s.state == "missing" and ref.hint("url"):
            line += f"  source: {ref.hint('url')}"
        lines.append(line)
    missing = {n.node_type: n for n in report.missing_nodes}
    types = sorted(set(node_types) | set(missing))
    lines.append(f"Node types: {len(types)} used, {len(missing)} missing"
                 + ("" if report.node_check != "skipped" else " (not checked)"))
    for t in types:
        n = missing.get(t)
        if n is None:
            lines.append(f"  [ok] {t}")
            continue
        pack = n.cnr_id or n.aux_id
        ids = ", ".join(sorted({u.node_id for u in n.usages}))
        lines.append(f"  [missing] {t}  (nodes {ids})" + (f"  pack: {pack}" if pack else ""))
    return "\n".join(lines)


def comfy_host() -> Any:
    return comfy_runtime.comfy_host(comfy_runtime.current_links())


class Report:
    DESCRIPTION = "Lists every model and node type this graph needs and whether ComfyUI has it."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    FUNCTION = "report"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    @classmethod
    def IS_CHANGED(cls, **kwargs: Any) -> float:
        return float("nan")  # files come and go between runs: report afresh every time

    def report(self, prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        text = graph_report(prompt, extra_pnginfo, comfy_host())
        return {"ui": {"text": [text]}, "result": (text,)}


def graph_report(prompt: Any, extra_pnginfo: Any, host: Any) -> str:
    # The UI workflow (when the page sent it) carries hints and muted nodes the API prompt lacks.
    data: dict[str, Any] = {}
    if isinstance(extra_pnginfo, dict) and isinstance(extra_pnginfo.get("workflow"), dict):
        data["workflow"] = extra_pnginfo["workflow"]
    if isinstance(prompt, dict) and prompt:
        data["prompt"] = prompt
    if not data:
        return "Nothing to report: this run carried no graph."
    from fixer.host.pack_nodes import without_download_nodes
    from fixer.read.scan import scan_workflow_data

    report = scan_workflow_data(without_download_nodes(data), "this graph", host)
    if report.problems:
        return f"Cannot read this graph: {report.problems[0].error}"
    return format_report(report, graph_node_types(prompt))


NODE_CLASS_MAPPINGS = {"ComfyFixerDownloadModel": DownloadModel, "ComfyFixerReport": Report}
NODE_DISPLAY_NAME_MAPPINGS = {"ComfyFixerDownloadModel": "ComfyFixer Download Model",
                              "ComfyFixerReport": "ComfyFixer Report"}

"""This pack's own node types, as a scan must see them.

The Download node's `source` (hf:…, civitai:…, a link) names where a file comes from, not a file the
graph is missing: the node fetches it itself when it runs. Scans (the panel's, the Report node's)
read the graph without those nodes.
"""

from __future__ import annotations

from typing import Any

DOWNLOAD_NODE = "ComfyFixerDownloadModel"


def _keep(nodes: Any) -> list[Any]:
    return [n for n in nodes or [] if not (isinstance(n, dict) and n.get("type") == DOWNLOAD_NODE)]


def _ui_without(wf: dict[str, Any]) -> dict[str, Any]:
    defs = wf.get("definitions") if isinstance(wf.get("definitions"), dict) else None
    out = {**wf, "nodes": _keep(wf.get("nodes"))} if "nodes" in wf else dict(wf)
    if defs is not None and isinstance(defs.get("subgraphs"), list):
        out["definitions"] = {**defs, "subgraphs": [{**sg, "nodes": _keep(sg.get("nodes"))} if isinstance(sg, dict)
                                                    else sg for sg in defs["subgraphs"]]}
    return out


def _api_without(prompt: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prompt.items() if not (isinstance(v, dict) and v.get("class_type") == DOWNLOAD_NODE)}


def without_download_nodes(data: Any) -> Any:
    """`data` (a UI workflow, an API prompt, or {"workflow", "prompt"}) without our Download nodes."""
    if not isinstance(data, dict):
        return data
    if "workflow" in data or "prompt" in data:
        out = dict(data)
        if isinstance(out.get("workflow"), dict):
            out["workflow"] = _ui_without(out["workflow"])
        if isinstance(out.get("prompt"), dict):
            out["prompt"] = _api_without(out["prompt"])
        return out
    if isinstance(data.get("nodes"), list):
        return _ui_without(data)
    return _api_without(data)

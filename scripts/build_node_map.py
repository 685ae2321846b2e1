"""Build fixer/data/node_map.json.gz: the offline snapshot of ComfyUI-Manager's node map.

    python scripts/build_node_map.py [--manager-dir DIR] [--out fixer/data/node_map.json.gz]

Reads the three data files of the installed `comfyui-manager` package (or DIR): extension-node-map.json,
custom-node-list.json and github-stats.json, and keeps only what naming a pack needs: node types,
title, Manager's list id, install type, files and pip of each pack, its preemptions and
nodename_pattern, and its star count. The package version goes into the file (`source`).
fixer/nodepacks/lookup.py reads it when no ComfyUI-Manager is installed, so a missing node type is
still named by its pack.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
META_KEYS = ("title_aux", "title", "preemptions", "nodename_pattern")
LIST_KEYS = ("id", "title", "reference", "files", "install_type", "pip")


def manager_dir() -> Path:
    spec = importlib.util.find_spec("comfyui_manager")  # located, never imported (it needs ComfyUI)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("comfyui-manager is not installed: pip install -e '.[test]' installs it.")
    return Path(list(spec.submodule_search_locations)[0])


def snapshot(folder: Path) -> dict:
    ext_map = json.loads((folder / "extension-node-map.json").read_text(encoding="utf-8"))
    listing = json.loads((folder / "custom-node-list.json").read_text(encoding="utf-8"))
    stats = json.loads((folder / "github-stats.json").read_text(encoding="utf-8"))
    packs = {url: [value[0], {k: v for k, v in value[1].items() if k in META_KEYS}]
             for url, value in ext_map.items() if isinstance(value, list) and value}
    items = [{k: v for k, v in item.items() if k in LIST_KEYS and v not in (None, [], "")}
             for item in listing.get("custom_nodes", []) if isinstance(item, dict)]
    for item in items:  # the defaults nodepacks assumes: one git clone of the reference
        if item.get("install_type") == "git-clone":
            del item["install_type"]
        if item.get("files") == [item.get("reference")]:
            del item["files"]
    stars = {url: {"stars": s["stars"]} for url, s in stats.items()
             if url in packs and isinstance(s, dict) and isinstance(s.get("stars"), int)}
    try:
        version = importlib.metadata.version("comfyui-manager")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"source": {"package": "comfyui-manager", "version": version},
            "extension-node-map": packs, "custom-node-list": {"custom_nodes": items}, "github-stats": stars}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manager-dir", type=Path, help="a folder holding Manager's three JSON files")
    parser.add_argument("--out", type=Path, default=ROOT / "fixer" / "data" / "node_map.json.gz")
    args = parser.parse_args()
    data = snapshot(args.manager_dir or manager_dir())
    raw = json.dumps(data, separators=(",", ":"), sort_keys=False).encode("utf-8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same input gives the same bytes, so a rebuild without changes is no diff.
    args.out.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(f"{args.out}: {len(data['extension-node-map'])} packs from comfyui-manager {data['source']['version']}, "
          f"{args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()

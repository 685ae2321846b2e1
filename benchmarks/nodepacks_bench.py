"""Node pack index: load and match times, side by side with their floors.

    python benchmarks/nodepacks_bench.py [--repeat 5] [--types 500]

Reads the installed comfyui-manager package's extension-node-map.json, custom-node-list.json
and github-stats.json (the same files PackIndex.load finds).
- "json.load map only": parsing the map alone, the floor for any reader of it.
- "PackIndex.load cold": all three files parsed and indexed (cache cleared each time).
- "PackIndex.load warm": the per-process cache hit every later scan gets.
- "match N types": match_missing_nodes over N types taken from the map (every 10th one
  unknown, so it goes through all the nodename_pattern regexes), beside Manager's own lookup
  loop (glob/manager_core.py: preemptions, first listed pack, then re.search per pattern) on the
  same types with its maps prebuilt. Target: load cold < 250 ms, warm < 1 ms, match < 50 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixer.models import NodeRef, Usage  # noqa: E402
from fixer.nodepacks import lookup as nodepacks  # noqa: E402


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000


def manager_lookup(ext_map: dict, names: list[str]) -> int:
    """Manager's own resolution loop (glob/manager_core.py extract_nodes_from_workflow), maps prebuilt."""
    rext, pre, patterns = {}, {}, []
    for k, v in ext_map.items():
        for x in v[0]:
            rext.setdefault(x, []).append(k)
        for x in v[1].get("preemptions", []):
            pre[x] = k
        if "nodename_pattern" in v[1]:
            patterns.append((v[1]["nodename_pattern"], k))
    t = time.perf_counter()
    found = 0
    for n in names:
        ext = pre.get(n) or (rext.get(n) or [None])[0]
        if ext is None:
            ext = next((k for p, k in patterns if re.search(p, n)), None)
        found += ext is not None
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--types", type=int, default=500)
    args = ap.parse_args()

    spec = importlib.util.find_spec("comfyui_manager")
    folder = Path(list(spec.submodule_search_locations)[0])
    map_path = folder / "extension-node-map.json"
    size = sum((folder / f).stat().st_size for f in ("extension-node-map.json", "custom-node-list.json",
                                                      "github-stats.json"))

    floor = timed(lambda: json.loads(map_path.read_text(encoding="utf-8")), args.repeat)

    def cold():
        nodepacks._CACHE.clear()
        nodepacks.PackIndex.load(None)

    cold_ms = timed(cold, args.repeat)
    index = nodepacks.PackIndex.load(None)
    warm_ms = timed(lambda: nodepacks.PackIndex.load(None), args.repeat * 20)

    all_types = sorted(index.data.by_type)
    step = max(1, len(all_types) // args.types)
    names = [t if i % 10 else f"Zq9 Unknown {i}" for i, t in enumerate(all_types[::step][:args.types])]
    refs = [NodeRef(n, [Usage("wf.json", str(i), n)]) for i, n in enumerate(names)]
    match_ms = timed(lambda: nodepacks.match_missing_nodes(refs, index, "0.3.64"), args.repeat)
    ext_map = json.loads(map_path.read_text(encoding="utf-8"))
    manager_ms = statistics.median(manager_lookup(ext_map, names) for _ in range(args.repeat)) * 1000

    print(f"Manager data: {size / 2**20:.1f} MiB, {len(index.data.packs)} packs, {len(index.data.by_type)} types, "
          f"{len(index.data.patterns)} patterns")
    print(f"{'case':32} {'median ms':>10}")
    for label, ms in (("json.load map only (floor)", floor), ("PackIndex.load cold", cold_ms),
                      ("PackIndex.load warm (cached)", warm_ms),
                      (f"match {len(refs)} types (ours, +ranking)", match_ms),
                      (f"match {len(refs)} types (Manager loop)", manager_ms)):
        print(f"{label:32} {ms:10.2f}")


if __name__ == "__main__":
    main()

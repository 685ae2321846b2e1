"""Real node packs' example workflows: is every reference found, in the folder its node reads?

    COMFYUI_DIR=/path/ComfyUI [COMFY_PYTHON=...] python benchmarks/custom_nodes_bench.py [--url URL] [--json FILE]
        [--corpus tests/data/real_packs_2]

The corpus and its truth are tests/data/real_packs/{packs,truth}.json (built by probing a real
ComfyUI, see build_truth.py there), or another folder laid out alike (--corpus: the second corpus,
packs with unusual folder handling, is tests/data/real_packs_2); the workflows are read from
$COMFYUI_DIR/custom_nodes/<pack>/.
Model folders must be empty (a fresh install). Three ways of scanning, side by side:
- inside ComfyUI: POST /comfyfixer/scan to a ComfyUI running this pack and the packs (--url, else
  one is started on a free loopback port and stopped afterwards);
- CLI with the ComfyUI folder: `comfy-fixer --scan --comfyui-root $COMFYUI_DIR --workflow F --json`;
- CLI keyword-only: the same against a ComfyUI folder whose custom_nodes/ is empty;
- CLI --server: the CLI with the ComfyUI folder asking the running ComfyUI's pack what it recorded.
Figures, over the truth's references:
- recall: reported at all (any state but "downloaded by the node");
- folder right: the folder the node reads (or a key whose destination is the same directory);
- folder unknown: reported without a folder;
- false positives: reported but not a reference: values the node downloads itself, prompt text
  the node does not parse, anything else. References on node types that are not installed (the
  probe cannot know their folder) are left out of every figure;
- beyond the workflows: for every input of an installed pack that the probe saw reading a folder,
  does reading the packs' sources (the CLI's static way) name the same folder?
- inside ComfyUI only: /object_info read over and over while the scans run, and once after: any
  COMBO list that differs from before the scans means asking the nodes leaked (thread confinement).
  Its "seconds" include those reads running beside the scans (ComfyUI answers both).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fixer.constants import CLIENT_HEADER  # noqa: E402
from tests.data.real_packs.build_truth import combo_options, read_workflow, start  # noqa: E402

DATA = REPO / "tests" / "data" / "real_packs"
MODEL_EXT = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf|onnx|patch|pkl|pt2|sft)$", re.I)
MODES = ("inside ComfyUI", "CLI + ComfyUI folder", "CLI keyword-only", "CLI --server")


class NotReady(RuntimeError):
    """The ComfyUI folder is not the corpus' fresh install: the message says what to do."""


def load_truth(corpus: Path = DATA) -> dict:
    return json.loads((corpus / "truth.json").read_text())


def stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return MODEL_EXT.sub("", base).lower()


def usages(report: dict) -> list[dict]:
    """One row per (model, node usage) of a scan report (the CLI's --json and the route's answer)."""
    rows = []
    for m in report.get("models", []):
        name = m.get("filename") or m.get("name")
        for u in m.get("nodes") or [{"node_id": m.get("node_id"), "node_type": m.get("node_type")}]:
            folder = m.get("folder") or m.get("expected_type")  # the scan reports it as expected_type
            rows.append({"name": name, "folder": folder, "source": m.get("folder_source"),
                         "state": m.get("state"), "node": str(u.get("node_id")), "type": u.get("node_type"),
                         "input": u.get("input_name"), "workflow": u.get("workflow")})
    return rows


@dataclass
class Score:
    refs: int = 0
    found: int = 0
    right: int = 0
    unknown: int = 0
    unknowns: list[str] = field(default_factory=list)  # found without a folder
    wrong: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    fp_self: list[str] = field(default_factory=list)
    fp_prompt: list[str] = field(default_factory=list)
    fp_other: list[str] = field(default_factory=list)
    seconds: float = 0.0
    polls: int | None = None  # /object_info answers read while the scans ran (inside ComfyUI only)
    leaks: list[str] = field(default_factory=list)  # COMBO lists /object_info showed changed by a scan
    markers_seen: int = 0  # /object_info answers holding a probe marker (`__cfprobe...`)

    def pct(self, n: int) -> str:
        return f"{100 * n / self.refs:.1f}%" if self.refs else "-"

    def figures(self) -> dict:
        return {"references": self.refs, "recall": self.found / self.refs, "folder_right": self.right / self.refs,
                "folder_unknown": self.unknown / self.refs, "fp_self_downloading": len(self.fp_self),
                "fp_prompt_text": len(self.fp_prompt), "fp_other": len(self.fp_other), "seconds": self.seconds,
                "wrong": self.wrong, "missed": self.missed, "folder_unknown_refs": self.unknowns,
                "fp": self.fp_self + self.fp_prompt + self.fp_other, "object_info_reads": self.polls,
                "object_info_changed": self.leaks,
                "object_info_with_marker": self.markers_seen}


def same_destination(folders: dict, pred_folder: str, pred_name: str, ref: dict, input_map: dict) -> bool:
    """Another key can name the same directory (clip_gguf/text_encoders, ultralytics + 'bbox/')."""
    if pred_folder not in folders:
        return False
    value = ref["value"].replace("\\", "/")
    prefix = next((p for p in sorted(input_map, key=len, reverse=True) if p and value.startswith(p)), "")
    truth_dir = os.path.normpath(os.path.join(folders[ref["folder"]]["paths"][0], os.path.dirname(value[len(prefix):])))
    pred_dir = os.path.normpath(os.path.join(folders[pred_folder]["paths"][0],
                                             os.path.dirname(pred_name.replace("\\", "/"))))
    return truth_dir == pred_dir


def score_workflow(score: Score, wf_key: str, rows: list[dict], truth: dict) -> None:
    expected = truth["workflows"][wf_key]
    outside = set(expected["unknown_node_types"])
    rows = [r for r in rows if r["type"] not in outside]
    reported = [r for r in rows if r["state"] != "by_node"]
    used = set()
    for ref in expected["references"]:
        score.refs += 1
        label = f"{wf_key} #{ref['node']} {ref['type']}.{ref['input'] or 'text'}={ref['value']} [{ref['folder']}]"
        hit = next((i for i, r in enumerate(reported) if i not in used and r["node"] == ref["node"]
                    and stem(r["name"]) == stem(ref["value"])), None)
        if hit is None:
            score.missed.append(label)
            continue
        used.add(hit)
        r = reported[hit]
        score.found += 1
        imap = truth["input_folders"].get(f"{ref['type']}.{ref['input']}", {})
        if r["folder"] == ref["folder"] or (r["folder"] and same_destination(truth["folders"], r["folder"], r["name"],
                                                                             ref, imap)):
            score.right += 1
        elif not r["folder"]:
            score.unknown += 1
            score.unknowns.append(f"{label} ({r['source']})")
        else:
            score.wrong.append(f"{label} -> {r['folder']} ({r['source']})")
    self_dl = {(s["node"], stem(s["value"])) for s in expected["self_downloading"]}
    for i, r in enumerate(reported):
        if i in used:
            continue
        label = f"{wf_key} #{r['node']} {r['type']}.{r['input']}={r['name']} [{r['folder']}/{r['source']}/{r['state']}]"
        if (r["node"], stem(r["name"])) in self_dl:
            score.fp_self.append(label)
        elif r["source"] == "prompt":
            score.fp_prompt.append(label)
        else:
            score.fp_other.append(label)


def workflow_files(comfyui_dir: Path, corpus: Path = DATA) -> dict[str, Path]:
    packs = json.loads((corpus / "packs.json").read_text())
    return {f"{p['dir']}/{rel}": comfyui_dir / "custom_nodes" / p["dir"] / rel
            for p in packs["packs"] for rel in p["workflows"]}


def missing_workflows(files: dict[str, Path]) -> str | None:
    absent = [str(p) for p in files.values() if not p.is_file()]
    if not absent:
        return None
    return (f"{len(absent)} of the corpus' workflows are not on disk, e.g. {absent[0]}: install the packs of "
            "tests/data/real_packs/packs.json into custom_nodes at their commits (COMFY_PACKS_FROM=<mirrors> "
            "scripts/setup_e2e.sh)")


def combo_lists(url: str, score: Score | None = None) -> dict[str, list]:
    with urllib.request.urlopen(url + "/object_info", timeout=120) as r:
        raw = r.read()
    if score is not None and b"__cfprobe" in raw:
        score.markers_seen += 1  # a probe marker reached /object_info: the probe left something behind
    info = json.loads(raw)
    return {f"{t}.{name}": opts for t, d in info.items() for section in ("required", "optional")
            for name, spec in ((d.get("input") or {}).get(section) or {}).items()
            if (opts := combo_options(spec)) is not None}


def watch_object_info(url: str, score: Score, stop: threading.Event) -> None:
    """Read /object_info over and over while the scans run: asking a node which folder it reads must
    never show in anybody else's listing (thread confinement), nor stay once the scan is done."""
    before = combo_lists(url)
    score.polls = 0
    while True:
        last = stop.is_set()
        now = combo_lists(url, score)
        score.polls += 1
        for key, opts in now.items():
            if opts != before.get(key, opts) and key not in {x.split(" ")[0] for x in score.leaks}:
                score.leaks.append(f"{key} {sorted(set(map(str, opts)) ^ set(map(str, before[key])))[:3]}")
        if last:
            return


def scan_inside(url: str, files: dict[str, Path], truth: dict) -> Score:
    score = Score()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_object_info, args=(url, score, stop), daemon=True)
    watcher.start()
    began = time.perf_counter()
    try:
        for key, path in files.items():
            body = json.dumps({"workflow": read_workflow(path), "name": path.name}).encode()
            req = urllib.request.Request(url + "/comfyfixer/scan", data=body, method="POST",
                                         headers={"Content-Type": "application/json", CLIENT_HEADER: "bench"})
            with urllib.request.urlopen(req, timeout=120) as r:
                score_workflow(score, key, usages(json.loads(r.read())), truth)
        score.seconds = time.perf_counter() - began
    finally:
        stop.set()  # one more read after the last scan
        watcher.join(300)
    return score


def scan_cli(root: Path, files: dict[str, Path], truth: dict, server: str | None = None) -> Score:
    """One CLI run over all the workflows (as `--workflow` a folder would be); rows split by workflow."""
    score = Score()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cn-bench-state-") as state:
        cmd = [sys.executable, "-m", "fixer", "--scan", "--comfyui-root", str(root), "--state-dir", state, "--json"]
        cmd += ["--server", server] if server else []
        for path in files.values():
            cmd += ["--workflow", str(path)]
        run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if not run.stdout.strip():
        raise RuntimeError(f"comfy-fixer --scan failed:\n{run.stderr[-2000:]}")
    rows = usages(json.loads(run.stdout))
    for key, path in files.items():
        score_workflow(score, key, [r for r in rows if r["workflow"] and Path(r["workflow"]) == path], truth)
    score.seconds = time.perf_counter() - began
    return score


def bare_root(comfyui_dir: Path, into: Path) -> Path:
    """The same ComfyUI with an empty custom_nodes/: what a keyword-only scan sees."""
    for entry in comfyui_dir.iterdir():
        if entry.name not in ("custom_nodes", "models"):
            (into / entry.name).symlink_to(entry)
    (into / "custom_nodes").mkdir()
    for d in (comfyui_dir / "models").iterdir():
        if d.is_dir():
            (into / "models" / d.name).mkdir(parents=True)
    return into


def assert_fresh_install(comfyui_dir: Path, truth: dict) -> None:
    """The figures are for empty model folders; a model file on disk would make a reference 'present'."""
    found = []
    for info in truth["folders"].values():
        for rel in info["paths"]:
            d = comfyui_dir / rel
            if d.is_dir() and not rel.startswith("custom_nodes"):
                found += [str(p) for p in d.rglob("*") if p.is_file() and MODEL_EXT.search(p.name)]
    if found:
        raise NotReady("Model folders are not empty (move these out first): " + ", ".join(found[:10]))


def run_all(comfyui_dir: Path, url: str | None = None,
            corpus: Path = DATA) -> tuple[dict[str, Score], StaticAgreement]:
    truth = load_truth(corpus)
    assert_fresh_install(comfyui_dir, truth)
    files = workflow_files(comfyui_dir, corpus)
    missing = missing_workflows(files)
    if missing:
        raise NotReady(missing)
    if not (comfyui_dir / "custom_nodes" / "ComfyFixerSmart").exists():
        raise NotReady(f"This pack is not in {comfyui_dir}/custom_nodes: ln -s {REPO} "
                       f"{comfyui_dir}/custom_nodes/ComfyFixerSmart")
    scores: dict[str, Score] = {}
    comfy = None
    if not url:
        python = os.environ.get("COMFY_PYTHON") or str(comfyui_dir.parent / "comfy-venv" / "bin" / "python")
        # A log of its own: readiness is read from it, and another run may be starting beside this one.
        fd, log = tempfile.mkstemp(prefix="custom_nodes_bench.", suffix=".comfyui.log")
        os.close(fd)
        comfy = start(comfyui_dir, python, Path(log))
        url = comfy.url
    try:
        with urllib.request.urlopen(url + "/object_info", timeout=120) as r:
            modules = {t: d.get("python_module", "") for t, d in json.loads(r.read()).items()}
        scores[MODES[0]] = scan_inside(url, files, truth)
        server = scan_cli(comfyui_dir, files, truth, server=url)
    finally:
        if comfy:
            comfy.stop()
            comfy.log_path.unlink(missing_ok=True)  # a failed start says its log tail in the error
    scores[MODES[1]] = scan_cli(comfyui_dir, files, truth)
    with tempfile.TemporaryDirectory(prefix="cn-bench-bare-") as bare:
        scores[MODES[2]] = scan_cli(bare_root(comfyui_dir, Path(bare)), files, truth)
    scores[MODES[3]] = server
    return scores, static_agreement(comfyui_dir, truth, modules)


@dataclass
class StaticAgreement:
    inputs: int = 0
    same: int = 0
    differ: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    registrations_unread: list[str] = field(default_factory=list)  # folder registrations the reader names


def static_agreement(comfyui_dir: Path, truth: dict, modules: dict[str, str]) -> StaticAgreement:
    """The probe's input -> folder map of the packs' nodes against what their sources say."""
    from fixer.host.folder_probe import folder_map_of
    from fixer.host.static_folders import read_custom_nodes

    packs = read_custom_nodes(comfyui_dir / "custom_nodes")
    defs = packs.defs
    result = StaticAgreement(registrations_unread=list(packs.unread))
    for key, expected in truth["input_folders"].items():
        node_type, name = key.rsplit(".", 1)
        if not modules.get(node_type, "").startswith("custom_nodes"):
            continue
        result.inputs += 1
        folder_map = folder_map_of(defs[node_type]) if node_type in defs else None
        listings = folder_map.inputs.get(name) if folder_map else None
        if not listings:
            result.unread.append(f"{key} [{modules[node_type]}]")
            continue
        got = {listing.prefix: listing.folder for listing in listings}
        if all(got.get(prefix) == folder for prefix, folder in expected.items()):
            result.same += 1
        else:
            result.differ.append(f"{key}: probe {expected}, sources {got}")
    return result


def print_agreement(a: StaticAgreement) -> None:
    print(f"\nPacks' inputs reading a folder (probe): {a.inputs}; their sources name the same folder: {a.same}, "
          f"another: {len(a.differ)}, none read: {len(a.unread)}")
    for item in a.differ:
        print(f"  differs: {item}")
    for item in a.unread:
        print(f"  not read: {item}")
    print(f"Folder registrations the static reader could not follow: {len(a.registrations_unread)}")
    for item in a.registrations_unread:
        print(f"  {item}")


def print_table(scores: dict[str, Score]) -> None:
    rows = [("references", lambda s: str(s.refs)), ("recall", lambda s: s.pct(s.found)),
            ("folder right", lambda s: s.pct(s.right)), ("folder unknown", lambda s: s.pct(s.unknown)),
            ("folder wrong", lambda s: str(len(s.wrong))), ("missed", lambda s: str(len(s.missed))),
            ("FP self-downloading", lambda s: str(len(s.fp_self))), ("FP prompt text", lambda s: str(len(s.fp_prompt))),
            ("FP other", lambda s: str(len(s.fp_other))), ("seconds", lambda s: f"{s.seconds:.1f}"),
            ("/object_info reads", lambda s: "-" if s.polls is None else str(s.polls)),
            ("  changed by a scan", lambda s: "-" if s.polls is None else str(len(s.leaks))),
            ("  holding a marker", lambda s: "-" if s.polls is None else str(s.markers_seen))]
    print(f"{'':20}" + "".join(f"{m:>22}" for m in scores))
    for label, fn in rows:
        print(f"{label:20}" + "".join(f"{fn(s):>22}" for s in scores.values()))
    for mode, s in scores.items():
        for kind, items in (("wrong", s.wrong), ("missed", s.missed), ("folder unknown", s.unknowns),
                            ("FP", s.fp_self + s.fp_prompt + s.fp_other),
                            ("/object_info changed", s.leaks)):
            for item in items:
                print(f"  [{mode}] {kind}: {item}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with this pack and the packs (default: start one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--corpus", type=Path, default=DATA, help="folder of packs.json and truth.json")
    args = parser.parse_args()
    if not os.environ.get("COMFYUI_DIR"):
        raise SystemExit("Set COMFYUI_DIR to a ComfyUI with the packs of tests/data/real_packs/packs.json installed.")
    try:
        scores, agreement = run_all(Path(os.environ["COMFYUI_DIR"]).resolve(), args.url, args.corpus.resolve())
    except NotReady as e:
        raise SystemExit(str(e)) from None
    print_table(scores)
    print_agreement(agreement)
    if args.json:
        figures = {m: s.figures() for m, s in scores.items()}
        figures["static_vs_probe"] = {"inputs": agreement.inputs, "same": agreement.same,
                                      "differ": agreement.differ, "not_read": agreement.unread,
                                      "registrations_unread": agreement.registrations_unread}
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

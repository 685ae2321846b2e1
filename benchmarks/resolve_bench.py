"""Resolver benchmark against the fake upstream (no internet).

(a) The seed scenario: 21 missing models of mixed sources (local disk, workflow hints, catalogs,
    Civitai, Hugging Face, one that exists nowhere) with 200 ms latency injected into every
    upstream request. Prints the total resolve time (target < 10 s; the seeds took ~36 min).
(b) "Strip the URLs": every official template with its embedded URLs removed, offline catalogs off
    (they are built from the same templates). The fake Hub knows every repo those URLs pointed to,
    plus decoys: re-uploads named exactly like a file's stem or like the real repo, some with the same
    bytes (true mirrors), most with different bytes and often more downloads. Folders come from the
    scan of the stripped workflow (node types), not from the removed truth. Prints precision and
    recall of the chosen URL+folder (targets: recall >= 95%, no wrong file chosen above threshold).

Run: python benchmarks/resolve_bench.py [--seed N] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixer.config import SearchConfig  # noqa: E402
from fixer.host import StandaloneHost  # noqa: E402
from fixer.inventory import build_inventory  # noqa: E402
from fixer.models import ModelHint, ModelRef  # noqa: E402
from fixer.resolve import ResolveContext, Resolver  # noqa: E402
from fixer.scan import scan_workflow_data  # noqa: E402
from fixer.sources.catalogs import template_files, walk_models  # noqa: E402
from fixer.sources.huggingface import parse_hf_url  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.fake_upstream.api_routes import add_civitai_model, add_hf_repo  # noqa: E402

OBJECT_INFO = ROOT.parent / "shared" / "fixtures" / "comfyui" / "object_info.json"
DECOY_USERS = ["ai-reuploads", "modelhub-mirror", "xXgenXx", "civit-backup", "open-weights-archive", "quantlab",
               "the-model-zoo", "fastmirror", "someuser123", "comfy-community-models"]


def fake_sha(*parts: str) -> str:
    return hashlib.sha256(("synthetic:" + "/".join(parts)).encode()).hexdigest()


# ------------------------------------------------------------------ (a) the seed scenario ------------


def comfy_root(base: Path, files: dict[str, bytes]) -> Path:
    root = base / "ComfyUI"
    for d in ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "upscale_models"):
        (root / "models" / d).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def seed_scenario(up: FakeUpstream, base: Path) -> tuple[list[ModelRef], object]:
    """21 refs: 3 local, 3 hints, 4 catalog, 5 Civitai, 5 Hugging Face, 1 nowhere."""
    for i, (name, org) in enumerate([("orbit_unet_fp16", "Comfy-Org/Orbit_ComfyUI_repackaged"),
                                     ("nimbus_vae", "Comfy-Org/Nimbus_repackaged"),
                                     ("sable_te_fp8_scaled", "sable-labs/sable-text-encoder"),
                                     ("quasar_lora_v2", "quasar-ai/quasar-loras"),
                                     ("helix_upscaler_4x", "helix/helix-upscalers")]):
        add_hf_repo(up, org, {f"split_files/{i}/{name}.safetensors": (1000 + i, fake_sha(org, name)),
                              "README.md": (10, None)}, downloads=10_000)
    for i, word in enumerate(["Crimson Ink", "Velvet Dusk", "Paper Lantern", "Tin Soldier", "Glass Harbor"]):
        stem = word.lower().replace(" ", "_")
        sha = fake_sha("civitai", stem)
        add_civitai_model(up, {
            "id": 990000 + i, "name": f"{word} Style", "type": "LORA", "creator": {"username": "artist"},
            "stats": {"downloadCount": 100},
            "modelVersions": [{"id": 991000 + i, "name": "v1", "trainedWords": [], "baseModel": "SDXL 1.0",
                               "files": [{"id": 992000 + i, "name": f"{stem}.safetensors", "sizeKB": 1.0, "type": "Model",
                                          "metadata": {"format": "SafeTensor"}, "primary": True,
                                          "hashes": {"SHA256": sha.upper()},
                                          "downloadUrl": f"https://civitai.com/api/download/models/{991000 + i}"}]}],
        })
    root = comfy_root(base, {"models/checkpoints/old/sd_local_a.safetensors": b"a",
                             "models/vae/Local_B.safetensors": b"b", "models/loras/x/local_c.safetensors": b"c"})
    inv = build_inventory(StandaloneHost.from_root(root))
    refs = [ModelRef("sd_local_a.safetensors", "checkpoints"), ModelRef("local_b.safetensors", "vae"),
            ModelRef("local_c.safetensors", "loras"),
            ModelRef("flux1-dev-fp8.safetensors", "diffusion_models", hints=[ModelHint(
                url="https://huggingface.co/Kijai/flux-fp8/resolve/main/flux1-dev-fp8.safetensors")]),
            ModelRef("sdxl_base.safetensors", "checkpoints", hints=[ModelHint(
                url="https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors")]),
            ModelRef("tiny.safetensors", "loras", hints=[ModelHint(url="https://civitai.com/api/download/models/9100101")]),
            ModelRef("clip_l.safetensors", "text_encoders"), ModelRef("qwen_image_vae.safetensors", "vae"),
            ModelRef("wan_2.1_vae.safetensors", "vae"), ModelRef("4x-UltraSharp.pth", "upscale_models"),
            ModelRef("crimson_ink.safetensors", "loras"), ModelRef("velvet_dusk.safetensors", "loras"),
            ModelRef("paper_lantern.safetensors", "loras"), ModelRef("tin_soldier.safetensors", "loras"),
            ModelRef("renamed_lora.safetensors", "loras", hints=[ModelHint(hash=fake_sha("civitai", "glass_harbor"))]),
            ModelRef("orbit_unet_fp16.safetensors", "diffusion_models"), ModelRef("nimbus_vae.safetensors", "vae"),
            ModelRef("sable_te_fp8_scaled.safetensors", "text_encoders"),
            ModelRef("quasar_lora_v2.safetensors", "loras"), ModelRef("helix_upscaler_4x.safetensors", "upscale_models"),
            ModelRef("zz_nowhere_model_q.safetensors", "checkpoints")]
    return refs, inv


async def run_resolver(refs, inventory, up: FakeUpstream, catalogs: bool, state: Path | None = None, **cfg):
    ctx = ResolveContext(config=SearchConfig(**cfg), secrets={}, inventory=inventory, state_dir=state,
                         comfyui_root=None, catalogs=catalogs, hf_endpoint=up.base, civitai_base_url=up.base)
    t0 = time.perf_counter()
    out = {}
    first = None
    async for r in Resolver(ctx).resolve(refs):
        first = first if first is not None else time.perf_counter() - t0
        out[r.name] = r
    return out, time.perf_counter() - t0, first or 0.0


def bench_seed(latency: float, verbose: bool) -> None:
    print(f"(a) seed scenario: 21 missing models, {latency * 1000:.0f} ms latency per upstream request")
    for catalogs in (True, False):
        with tempfile.TemporaryDirectory() as tmp, FakeUpstream(latency=latency) as up:
            refs, inv = seed_scenario(up, Path(tmp))
            up.requests.clear()
            res, total, first = asyncio.run(run_resolver(refs, inv, up, catalogs))
            by_source = defaultdict(int)
            for r in res.values():
                by_source[r.source] += 1
            print(f"    catalogs {'on ' if catalogs else 'off'}: {total:5.2f} s total, first result after "
                  f"{first:4.2f} s, {len(up.requests):3d} upstream requests; "
                  + ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())))
            if verbose:
                for r in res.values():
                    print(f"      {r.name:40s} {r.source:12s} {r.chosen.url if r.chosen else r.tried[-1:]}")
    print("    seeds (local LLM, one model at a time): ~36 min for 21 models")


# ------------------------------------------------------------------ (b) strip the URLs ---------------


def load_templates() -> list[tuple[str, dict]]:
    out = []
    for p in template_files():
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("nodes") is not None:
            out.append((p.stem, data))
    return out


def strip_urls(obj):
    """The workflow without models[] lists and without URLs in any string (Note text included)."""
    if isinstance(obj, dict):
        return {k: strip_urls(v) for k, v in obj.items() if k != "models"}
    if isinstance(obj, list):
        return [strip_urls(v) for v in obj]
    if isinstance(obj, str) and ("http://" in obj or "https://" in obj):
        return "(link removed)"
    return obj


def truth_of(templates) -> dict[str, set[tuple[str, str, str]]]:
    """file name -> {(repo_id, path, folder)} from every template's models[]."""
    truth: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for _, data in templates:
        for m in walk_models(data):
            hf = parse_hf_url(m["url"], "https://huggingface.co")
            if hf:
                truth[m["name"]].add((hf[0], hf[2].split("?")[0], m.get("directory") or ""))
    return truth


def populate_hub(up: FakeUpstream, truth, rng: random.Random) -> dict[str, int]:
    """Truth repos with every file the templates point at (same name = same bytes), plus decoys."""
    repos: dict[str, dict[str, tuple[int, str | None]]] = defaultdict(dict)
    for name, places in truth.items():
        for repo, path, _ in places:
            repos[repo][path] = (10_000 + len(name), fake_sha("truth", name))
    downloads = {repo: int(10 ** rng.uniform(3, 6.5)) for repo in repos}
    for repo, files in repos.items():
        files["README.md"] = (100, None)
        add_hf_repo(up, repo, files, downloads=downloads[repo], gated=False)
    kinds = defaultdict(int)
    for repo, files in list(repos.items()):
        org, rname = repo.split("/")
        model_files = [p for p in files if p != "README.md"]
        # A look-alike of the whole repo: re-quantised (different bytes) or a true mirror (same bytes).
        mirror = rng.random() < 0.3
        user = rng.choice(DECOY_USERS)
        add_hf_repo(up, f"{user}/{rname}{rng.choice(['', '-mirror', '_backup', '-GGUF'])}",
                    {p.rsplit('/', 1)[-1]: (files[p][0] if mirror else files[p][0] + 7,
                                            files[p][1] if mirror else fake_sha("decoy", user, p)) for p in model_files},
                    downloads=int(downloads[repo] * rng.uniform(0.01, 2.0)))
        kinds["repo mirror" if mirror else "repo look-alike"] += 1
        # Re-uploads named exactly like a file's stem, most with other bytes.
        for p in rng.sample(model_files, k=min(len(model_files), 3)):
            stem = p.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            same = rng.random() < 0.2
            u = rng.choice(DECOY_USERS)
            add_hf_repo(up, f"{u}/{stem}", {p.rsplit('/', 1)[-1]: (files[p][0] if same else files[p][0] + 3,
                                                                   files[p][1] if same else fake_sha("stem", u, p))},
                        downloads=int(downloads[repo] * rng.uniform(0.001, 2.0)))
            kinds["stem mirror" if same else "stem decoy"] += 1
    return dict(kinds)


def refs_from_scan(templates, host) -> list[ModelRef]:
    merged: dict[str, ModelRef] = {}
    for name, data in templates:
        report = scan_workflow_data(strip_urls(data), name, host)
        for status in report.models:
            ref = status.ref
            key = ref.name
            if key not in merged:
                merged[key] = ModelRef(ref.name, ref.folder, ref.folder_source, list(ref.usages), [])
            elif merged[key].folder is None and ref.folder:
                merged[key].folder = ref.folder
    return list(merged.values())


def bench_strip(seed: int, verbose: bool) -> None:
    templates = load_templates()
    truth = truth_of(templates)
    print(f"(b) strip the URLs: {len(templates)} templates, {len(truth)} distinct model files with a known URL")
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as up:
        kinds = populate_hub(up, truth, random.Random(seed))
        root = comfy_root(Path(tmp), {})
        host = StandaloneHost.from_root(root).with_object_info(json.loads(OBJECT_INFO.read_text()), "object_info")
        refs = [r for r in refs_from_scan(templates, host) if r.basename in truth]
        by_name = {r.basename: r for r in refs}
        missing_from_scan = len(truth) - len(by_name)
        res, total, _ = asyncio.run(run_resolver(refs, None, up, catalogs=False))
        correct = mirror = wrong = unchosen = 0
        wrong_list, missed = [], []
        sha_of = {p: v for repo in up.state["hf_repos"].values() for p, v in
                  [((repo["info"]["id"], e["path"]), (e.get("lfs") or {}).get("oid")) for e in repo["tree"]]}
        for r in res.values():
            places = truth[r.name.rsplit("/", 1)[-1]]
            c = r.chosen
            if c is None:
                unchosen += 1
                missed.append(r)
                continue
            got = (c.ids.get("repo_id"), c.ids.get("path"))
            folders = {f for _, _, f in places}
            if (got[0], got[1]) in {(a, b) for a, b, _ in places} and c.folder in folders:
                correct += 1
            elif sha_of.get(got) == fake_sha("truth", r.name.rsplit("/", 1)[-1]) and c.folder in folders:
                mirror += 1
            else:
                wrong += 1
                wrong_list.append((r, places))
        n = len(truth)
        chosen = correct + mirror + wrong
        print(f"    fake Hub: {len(up.state['hf_repos'])} repos; decoys: "
              + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        print(f"    resolved {len(res)} refs in {total:.2f} s ({missing_from_scan} truth names the scan did not report)")
        print(f"    chosen above threshold: {chosen}  exact URL+folder: {correct}  same bytes elsewhere: {mirror}  "
              f"wrong: {wrong}  left for the user/not found: {unchosen}")
        print(f"    recall (right bytes + folder / all {n}): {(correct + mirror) / n:.1%}   exact-URL recall: "
              f"{correct / n:.1%}   precision: {(correct + mirror) / chosen if chosen else 0:.1%}   "
              f"wrong above threshold: {wrong}")
        if verbose:
            for r, places in wrong_list:
                print(f"      WRONG {r.name} folder={r.chosen.folder} got {r.chosen.ids} want {sorted(places)[:2]}")
            for r in missed:
                print(f"      MISS  {r.name} [{r.folder}] best={[(c.ids.get('repo_id'), c.confidence) for c in r.candidates[:2]]}"
                      f" want={sorted({p[0] for p in truth[r.name.rsplit('/', 1)[-1]]})}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--only", choices=["a", "b"])
    args = ap.parse_args()
    if args.only != "b":
        bench_seed(args.latency, args.verbose)
    if args.only != "a":
        bench_strip(args.seed, args.verbose)


if __name__ == "__main__":
    main()

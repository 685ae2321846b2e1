"""Resolver benchmark against the fake upstream (no internet), made as unfriendly as the real services:
both rate-limit (every Nth request a 429 with Retry-After), Civitai hides NSFW-rated models unless asked,
popular words fill whole search pages.

(a) The founding scenario: 21 missing models of mixed sources (local disk, workflow hints, catalogs, Civitai
    under NSFW, suffixed, {model}_{version} and hash-only names, Hugging Face, two that exist nowhere) with
    200 ms latency injected into every upstream request. Prints the total resolve time and how many of the
    19 findable were found (targets: < 10 s, >= 18 found, no wrong pick; the original tool took ~36 min).
    (a2) The same 21 as one community workflow: four chains (a Pony base on disk, SD 1.5, SDXL, Flux), the
    Civitai files made for their chain's family, an SDXL twin of the SD 1.5 chain's LoRA far more downloaded,
    Civitai as in 2026 (the configured domain hides NSFW models).
(b) "Strip the URLs": every official template with its embedded URLs removed, offline catalogs off
    (they are built from the same templates). The fake Hub knows every repo those URLs pointed to,
    plus decoys: re-uploads named exactly like a file's stem or like the real repo, some with the same
    bytes (true mirrors), most with different bytes and often more downloads. Folders come from the
    scan of the stripped workflow (node types), not from the removed truth. Prints precision and
    recall of the chosen URL+folder (targets: recall >= 95%, no wrong file chosen above threshold).
(c) Community workflows: per model family (SD 1.5, SDXL, Pony, Illustrious, Flux) Civitai-only LoRAs and
    checkpoints under their original, renamed ({model}_{version}), suffixed and re-cased names, NSFW-rated
    ones, a name whose words name no model, same-name LoRAs for another base model, hash-only and AIR-only
    references, and ones nothing may be chosen for (nowhere, only v2 of a wanted v3, only another family).
    Prints recall and wrong automatic picks, with the optional LLM helper off and on (a local stub model
    that is right half the time), and with every family's references in one mixed workflow (one chain per
    family). Civitai as in 2026: a key for downloads, NSFW models hidden on the configured domain.
    Targets: recall >= 97%, zero wrong automatic picks.

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

from fixer.app.resolve import ResolveContext, Resolver  # noqa: E402
from fixer.config import LLMConfig, SearchConfig  # noqa: E402
from fixer.host.host import StandaloneHost  # noqa: E402
from fixer.models import ModelHint, ModelRef, Usage  # noqa: E402
from fixer.read.inventory import build_inventory  # noqa: E402
from fixer.read.scan import scan_workflow_data  # noqa: E402
from fixer.sources.catalogs import template_files, walk_models  # noqa: E402
from fixer.upstream.source_spec import parse_hf_url  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.fake_upstream.api_routes import add_civitai_model, add_hf_repo, crowd_searches  # noqa: E402

OBJECT_INFO = ROOT / "tests" / "data" / "comfyui" / "object_info.json"
CIVITAI_429_EVERY, HF_429_EVERY, RETRY_AFTER = 25, 40, 0.5  # the unfriendly fake's rate limits (benchmarks)
CROWD_CIVITAI = ["style", "realistic", "anime", "pony", "detail", "ink", "portrait", "mix"]
CROWD_HF = ["lora", "style", "flux", "sdxl", "controlnet", "upscale"]
DECOY_USERS = ["ai-reuploads", "modelhub-mirror", "xXgenXx", "civit-backup", "open-weights-archive", "quantlab",
               "the-model-zoo", "fastmirror", "someuser123", "comfy-community-models"]


def fake_sha(*parts: str) -> str:
    return hashlib.sha256(("synthetic:" + "/".join(parts)).encode()).hexdigest()


# ------------------------------------------------------------------ (a) the founding scenario ------------


def comfy_root(base: Path, files: dict[str, bytes]) -> Path:
    root = base / "ComfyUI"
    for d in ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "upscale_models"):
        (root / "models" / d).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def unfriendly(up: FakeUpstream) -> None:
    """The real services' manners: both rate-limit (429 + Retry-After), popular words fill whole pages."""
    up.rate_limit("civitai", every=CIVITAI_429_EVERY, retry_after=RETRY_AFTER)
    up.rate_limit("huggingface", every=HF_429_EVERY, retry_after=RETRY_AFTER)
    crowd_searches(up, hf_words=CROWD_HF, civitai_words=CROWD_CIVITAI, per_word=60)


def civitai_item(mid: int, name: str, file_name: str, sha: str, mtype: str = "LORA", base: str = "SDXL 1.0",
                 version: str = "v1", nsfw: bool = False, downloads: int = 100) -> dict:
    vid = mid + 1000
    return {"id": mid, "name": name, "type": mtype, "nsfw": nsfw, "creator": {"username": "artist"},
            "stats": {"downloadCount": downloads},
            "modelVersions": [{"id": vid, "name": version, "trainedWords": [], "baseModel": base,
                               "files": [{"id": vid + 1000, "name": file_name, "sizeKB": 1.0, "type": "Model",
                                          "metadata": {"format": "SafeTensor"}, "primary": True,
                                          "hashes": {"SHA256": sha.upper(), "AutoV2": sha[:10].upper()},
                                          "downloadUrl": f"https://civitai.com/api/download/models/{vid}"}]}]}


def seed_scenario(up: FakeUpstream, base: Path, chains: bool = False) -> tuple[list[ModelRef], object]:
    """21 refs: 3 local, 3 hints, 4 catalog, 5 Civitai (NSFW-rated, a random download suffix, Civitai's
    {model}_{version} download name, a model whose name shares no word with its file, a renamed file known by
    its hash), 4 Hugging Face, 2 that exist nowhere: 19 findable."""
    for i, (name, org) in enumerate([("orbit_unet_fp16", "Comfy-Org/Orbit_ComfyUI_repackaged"),
                                     ("nimbus_vae", "Comfy-Org/Nimbus_repackaged"),
                                     ("sable_te_fp8_scaled", "sable-labs/sable-text-encoder"),
                                     ("quasar_lora_v2", "quasar-ai/quasar-loras")]):
        add_hf_repo(up, org, {f"split_files/{i}/{name}.safetensors": (1000 + i, fake_sha(org, name)),
                              "README.md": (10, None)}, downloads=10_000)
    civitai = [("Crimson Ink Style", "crimson_ink.safetensors", {"nsfw": True}),
               ("Velvet Dusk Style", "velvet_dusk.safetensors", {}),
               ("Paper Lantern", "lantern_final_upload.safetensors", {"mtype": "Checkpoint", "version": "v2"}),
               ("Toy Army Figures", "tin_soldier.safetensors", {}),
               ("Glass Harbor Style", "glass_harbor.safetensors", {})]
    for i, (model_name, file_name, kw) in enumerate(civitai):
        kw = {**kw, "base": SEED_BASES[file_name]} if chains else kw
        add_civitai_model(up, civitai_item(990000 + i, model_name, file_name, fake_sha("civitai", file_name), **kw))
    root = comfy_root(base, {"models/checkpoints/old/sd_local_a.safetensors": b"a",
                             "models/vae/Local_B.safetensors": b"b", "models/loras/x/local_c.safetensors": b"c"})
    inv = build_inventory(StandaloneHost.from_root(root))
    refs = [ModelRef("sd_local_a.safetensors", "checkpoints"), ModelRef("local_b.safetensors", "vae"),
            ModelRef("local_c.safetensors", "loras"),
            ModelRef("flux1-dev-fp8.safetensors", "diffusion_models", hints=[ModelHint(
                url="https://huggingface.co/Kijai/flux-fp8/resolve/main/flux1-dev-fp8.safetensors")]),
            ModelRef("sdxl_base.safetensors", "checkpoints", hints=[ModelHint(
                url="https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors")]),
            ModelRef("tiny.safetensors", "loras",
                     hints=[ModelHint(url="https://civitai.com/api/download/models/9100101")]),
            ModelRef("clip_l.safetensors", "text_encoders"), ModelRef("qwen_image_vae.safetensors", "vae"),
            ModelRef("wan_2.1_vae.safetensors", "vae"), ModelRef("4x-UltraSharp.pth", "upscale_models"),
            ModelRef("crimson_ink.safetensors", "loras"), ModelRef("velvet_dusk.q7k2.safetensors", "loras"),
            ModelRef("paperLantern_v2.safetensors", "checkpoints"), ModelRef("tin_soldier.safetensors", "loras"),
            ModelRef("renamed_lora.safetensors", "loras",
                     hints=[ModelHint(hash=fake_sha("civitai", "glass_harbor.safetensors"))]),
            ModelRef("orbit_unet_fp16.safetensors", "diffusion_models"), ModelRef("nimbus_vae.safetensors", "vae"),
            ModelRef("sable_te_fp8_scaled.safetensors", "text_encoders"),
            ModelRef("quasar_lora_v2.safetensors", "loras"),
            ModelRef("zz_nowhere_model_q.safetensors", "checkpoints"),
            ModelRef("yy_private_merge_v3.safetensors", "loras")]
    return refs, inv


SEED_NOWHERE = {"zz_nowhere_model_q.safetensors", "yy_private_merge_v3.safetensors"}
# (a2) the same 21 models in one workflow of four chains: anchor -> (its family, the references it feeds).
SEED_CHAINS = {
    ("checkpoints", "ponydiffusionv6xl_v6startwiththisone.safetensors"): ("Pony", ["crimson_ink.safetensors"]),
    ("checkpoints", "paperlantern_v2.safetensors"): ("SD 1.5", ["velvet_dusk.q7k2.safetensors", "local_c.safetensors"]),
    ("checkpoints", "sdxl_base.safetensors"): ("SDXL", ["tin_soldier.safetensors", "renamed_lora.safetensors",
                                                        "local_b.safetensors"]),
    ("diffusion_models", "flux1-dev-fp8.safetensors"): ("Flux", ["quasar_lora_v2.safetensors", "clip_l.safetensors"]),
}
SEED_BASES = {"crimson_ink.safetensors": "Pony", "velvet_dusk.safetensors": "SD 1.5",
              "lantern_final_upload.safetensors": "SD 1.5", "tin_soldier.safetensors": "SDXL 1.0",
              "glass_harbor.safetensors": "Illustrious"}


def as_one_workflow(up: FakeUpstream, refs: list[ModelRef]) -> tuple[list[ModelRef], dict[str, str]]:
    """The founding scenario as community workflows are: one file, several chains of several families (a Pony
    base present on disk, an SD 1.5 pass, an SDXL pass, a Flux pass), and the Civitai files made for the
    family of their chain; an SDXL twin of the SD 1.5 chain's LoRA, far more downloaded. Returns the refs and
    the family the old per-workflow rule gives (the scan's: its present Pony checkpoint)."""
    add_civitai_model(up, civitai_item(990100, "Velvet Dusk XL", "velvet_dusk.safetensors",
                                       fake_sha("civitai", "velvet_dusk.xl"), base="SDXL 1.0", downloads=90_000))
    anchor_of = {name: key for key, (_, names) in SEED_CHAINS.items() for name in names}
    out = []
    for i, r in enumerate(refs):
        anchor = anchor_of.get(r.name)
        u = Usage("seed.json", str(i), "CheckpointLoaderSimple" if r.folder == "checkpoints" else "LoraLoader",
                  anchors=(anchor,) if anchor else ())
        out.append(ModelRef(r.name, r.folder, "node_table", [u], list(r.hints)))
    return out, {"seed.json": "Pony"}


async def run_resolver(refs, inventory, up: FakeUpstream, catalogs: bool, state: Path | None = None,
                       families: dict[str, str] | None = None, **cfg):
    ctx = ResolveContext(config=SearchConfig(**cfg), secrets={}, inventory=inventory, state_dir=state,
                         comfyui_root=None, catalogs=catalogs, hf_endpoint=up.base, civitai_base_url=up.base,
                         civitai_red_url=up.red_base, families=families)
    t0 = time.perf_counter()
    out = {}
    first = None
    async for r in Resolver(ctx).resolve(refs):
        first = first if first is not None else time.perf_counter() - t0
        out[r.name] = r
    return out, time.perf_counter() - t0, first or 0.0


def bench_seed(latency: float, verbose: bool) -> None:
    print(f"(a) seed scenario: 21 missing models (19 findable), {latency * 1000:.0f} ms latency per upstream "
          "request, unfriendly fake (429s, NSFW hidden, crowded pages)")
    for chains, catalogs in ((False, True), (False, False), (True, True)):
        with tempfile.TemporaryDirectory() as tmp, FakeUpstream(latency=latency) as up:
            refs, inv = seed_scenario(up, Path(tmp), chains)
            families = None
            if chains:  # (a2): Civitai as in 2026 (the configured domain hides NSFW) and one workflow of 4 chains
                up.civitai_2026()
                refs, families = as_one_workflow(up, refs)
            unfriendly(up)
            up.requests.clear()
            res, total, first = asyncio.run(run_resolver(refs, inv, up, catalogs, families=families))
            by_source = defaultdict(int)
            for r in res.values():
                by_source[r.source] += 1
            found = sum(1 for r in res.values() if r.chosen and r.name not in SEED_NOWHERE)
            wrong = sum(1 for r in res.values() if r.chosen and (r.name in SEED_NOWHERE or (
                r.name.startswith("velvet_dusk") and r.chosen.ids.get("model_id") == 990100)))
            label = "one workflow, 4 chains" if chains else f"catalogs {'on ' if catalogs else 'off'}"
            print(f"    {label}: {total:5.2f} s total, first result after "
                  f"{first:4.2f} s, {len(up.requests):3d} upstream requests; found {found}/19, wrong picks {wrong}; "
                  + ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())))
            if verbose:
                for r in res.values():
                    print(f"      {r.name:40s} {r.source:12s} {r.chosen.url if r.chosen else r.why}")
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
                                            files[p][1] if mirror else fake_sha("decoy", user,
                                                                                p)) for p in model_files},
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
        print(f"    resolved {len(res)} refs in {total:.2f} s "
              f"({missing_from_scan} truth names the scan did not report)")
        print(f"    chosen above threshold: {chosen}  exact URL+folder: {correct}  same bytes elsewhere: {mirror}  "
              f"wrong: {wrong}  left for the user/not found: {unchosen}")
        print(f"    recall (right bytes + folder / all {n}): {(correct + mirror) / n:.1%}   exact-URL recall: "
              f"{correct / n:.1%}   precision: {(correct + mirror) / chosen if chosen else 0:.1%}   "
              f"wrong above threshold: {wrong}")
        if verbose:
            for r, places in wrong_list:
                print(f"      WRONG {r.name} folder={r.chosen.folder} got {r.chosen.ids} want {sorted(places)[:2]}")
            for r in missed:
                best = [(c.ids.get("repo_id"), c.confidence) for c in r.candidates[:2]]
                print(f"      MISS  {r.name} [{r.folder}] best={best}"
                      f" want={sorted({p[0] for p in truth[r.name.rsplit('/', 1)[-1]]})}")


# ------------------------------------------------------------------ (c) community workflows -----------

FAMILY_ANCHORS = {  # family -> (Civitai baseModel, the checkpoint / diffusion model its workflow loads)
    "SD 1.5": ("SD 1.5", "checkpoints", "v1-5-pruned-emaonly.safetensors"),
    "SDXL": ("SDXL 1.0", "checkpoints", "sd_xl_base_1.0.safetensors"),
    "Pony": ("Pony", "checkpoints", "ponyDiffusionV6XL_v6StartWithThisOne.safetensors"),
    "Illustrious": ("Illustrious", "checkpoints", "illustriousXL_v01.safetensors"),
    "Flux": ("Flux.1 D", "diffusion_models", "flux1-dev-fp8.safetensors"),
}
WORDS = ("amber bramble cobalt dune ember fable garnet harbor indigo juniper kestrel lumen marble nectar onyx "
         "pebble quartz russet saffron thistle umber velvet willow xenon yarrow zephyr basalt cinder drift "
         "fennel glacier hollow ivory jasper kelp lichen mosaic nimbus orchid prism quill raven sable tundra "
         "ultra vesper wisp yonder zinnia aurora blossom canyon delta echo fjord grove heron isle jade").split()
KINDS = ("original", "filename_only", "ckpt_renamed", "ckpt_original", "suffixed", "case_seps", "same_name",
         "hash_only", "air_only", "nowhere", "near_miss", "other_family_only")


def community_cases(up: FakeUpstream, rng: random.Random,
                    mixed: bool = False) -> tuple[list[ModelRef], dict[str, tuple[int | None, str]]]:
    """Civitai-only community references for each family's workflow (`mixed`: all in one workflow, one chain
    per family, each reference fed by its family's anchor); returns the refs and the truth:
    name -> (version id to choose, folder), version None when nothing may be chosen automatically."""
    words = iter(rng.sample(WORDS, len(WORDS)) + [f"{a}{b}" for a in WORDS for b in WORDS])
    refs: list[ModelRef] = []
    truth: dict[str, tuple[int | None, str]] = {}
    mid = iter(range(700000, 800000, 7))
    for family, (base, anchor_folder, anchor) in FAMILY_ANCHORS.items():
        wf = "community_mixed.json" if mixed else f"community_{family.replace(' ', '').replace('.', '')}.json"
        chain = ((anchor_folder, anchor.lower()),) if mixed else ()
        use = lambda node, chain=chain, wf=wf: [Usage(wf, str(len(refs)), node, anchors=chain)]  # noqa: E731
        refs.append(ModelRef(anchor, anchor_folder, "node_table",
                             [Usage(wf, str(len(refs)), "CheckpointLoaderSimple")]))
        other = rng.choice([b for f, (b, _, _) in FAMILY_ANCHORS.items() if f != family and "Flux" not in (f, family)]
                           if family != "Flux" else ["SDXL 1.0", "SD 1.5"])
        for kind in KINDS:
            a, b = next(words), next(words)
            m = next(mid)
            nsfw = rng.random() < 0.35
            sha = fake_sha("community", family, kind, a, b)
            lora_file = f"{a}_{b}_style.safetensors"
            folder, ckpt = "loras", False
            if kind == "original":
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", lora_file, sha, base=base,
                                          nsfw=nsfw), lora_file
            elif kind == "filename_only":
                fname = f"{a[:2]}{rng.randint(10, 99)}_{b}.safetensors"
                item, want = civitai_item(m, f"{next(words).title()} {next(words).title()} Pack", fname, sha, base=base,
                                          nsfw=nsfw), fname
            elif kind in ("ckpt_renamed", "ckpt_original"):
                folder, ckpt = "checkpoints", True
                version = f"v{rng.randint(1, 9)}.{rng.randint(0, 9)}"
                download = f"{a}{b.title()}Mix_{version.replace('.', '')}.safetensors"
                api_name = f"{a}_{b}_final_upload.safetensors" if kind == "ckpt_renamed" else download
                item, want = civitai_item(m, f"{a.title()} {b.title()} Mix", api_name, sha, mtype="Checkpoint",
                                          base=base,
                                          version=version, nsfw=nsfw), download
            elif kind == "suffixed":
                letters = "abcdefghkmnpqrstuvwxyz"
                tag = f"{rng.choice(letters)}{rng.randint(0, 9)}{rng.choice(letters)}{rng.randint(0, 9)}"
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", lora_file, sha, base=base, nsfw=nsfw), \
                    lora_file.replace(".safetensors", f".{tag}.safetensors")
            elif kind == "case_seps":
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", lora_file, sha, base=base, nsfw=nsfw), \
                    f"{a.title()}-{b.title()}-Style.safetensors"
            elif kind == "same_name":  # the same file name for another base model, used far more
                add_civitai_model(up, civitai_item(next(mid), f"{a.title()} {b.title()} Style {other}", lora_file,
                                                   fake_sha("other", sha), base=other, downloads=50_000))
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", lora_file, sha, base=base,
                                          nsfw=nsfw), lora_file
            elif kind == "hash_only":
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", lora_file, sha, base=base, nsfw=nsfw), \
                    f"my_renamed_{a}.safetensors"
            elif kind == "air_only":
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", lora_file, sha, base=base, nsfw=nsfw), \
                    f"downloaded_{a}.safetensors"
            elif kind == "near_miss":  # v2 exists, the workflow wants v3: nothing may be chosen
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", f"{a}_{b}_style_v2.safetensors", sha,
                                          base=base, nsfw=nsfw), f"{a}_{b}_style_v3.safetensors"
            elif kind == "other_family_only":  # exists only for another base model: picked, the mismatch said
                item, want = civitai_item(m, f"{a.title()} {b.title()} Style", lora_file, sha, base=other, nsfw=nsfw), \
                    lora_file
            else:  # nowhere
                item, want = None, f"zz_{a}_{b}_private_merge.safetensors"
            if item:
                add_civitai_model(up, item)
            hints = []
            if kind == "hash_only":
                hints = [ModelHint(hash=sha[:10].upper() if rng.random() < 0.5 else sha, hash_type="sha256")]
            elif kind == "air_only":
                hints = [ModelHint(url=f"urn:air:{base.split()[0].lower()}:lora:civitai:{m}@{m + 1000}")]
            # A checkpoint is an anchor of its own chain; everything else hangs off the family's anchor.
            refs.append(ModelRef(want, folder, "node_table",
                                 [Usage(wf, str(len(refs)), "CheckpointLoaderSimple")] if ckpt else use("LoraLoader"),
                                 hints))
            findable = kind not in ("nowhere", "near_miss")  # an exact unique name of another family: picked
            truth[want] = (m + 1000 if findable else None, folder)
    return refs, truth


def llm_stub(up: FakeUpstream, truth: dict[str, tuple[int | None, str]], rng: random.Random) -> None:
    """A local stub model: right about half the time, otherwise a confident made-up version id."""
    for name, (vid, _) in truth.items():
        guess = vid if vid and rng.random() < 0.5 else rng.randint(100000, 999999)
        up.state.setdefault("llm_replies", []).append((f"File name: {name}\n",
                                                       json.dumps({"civitai": [{"version_id": guess}]})))


def bench_community(seed: int, verbose: bool, latency: float = 0.05) -> None:
    print(f"(c) community workflows: Civitai-only references per model family, {latency * 1000:.0f} ms latency, "
          "unfriendly fake; Civitai as in 2026 (a key for downloads, NSFW hidden on the configured domain)")
    for mixed, llm in ((False, False), (False, True), (True, False)):
        with tempfile.TemporaryDirectory() as tmp, FakeUpstream(latency=latency) as up:
            rng = random.Random(seed)
            unfriendly(up)
            up.civitai_2026()
            refs, truth = community_cases(up, rng, mixed)
            if llm:
                llm_stub(up, truth, random.Random(seed))
            anchors = {f"models/{folder}/{name}": b"anchor" for _, folder, name in FAMILY_ANCHORS.values()}
            inv = build_inventory(StandaloneHost.from_root(comfy_root(Path(tmp), anchors)))
            up.requests.clear()
            extra = {"llm": LLMConfig(enabled=True, endpoint=f"{up.base}/v1")} if llm else {}
            res, total, _ = asyncio.run(run_resolver(refs, inv, up, catalogs=False, **extra))
            right = wrong = 0
            findable = sum(1 for v, _ in truth.values() if v)
            misses, wrongs = [], []
            for name, (vid, folder) in truth.items():
                c = res[name].chosen
                if c is None:
                    if vid:
                        misses.append(name)
                    continue
                if vid and c.ids.get("version_id") == vid and c.folder == folder:
                    right += 1
                else:
                    wrong += 1
                    wrongs.append((name, c.ids.get("version_id"), vid))
            label = "one mixed workflow (5 chains)" if mixed else f"LLM helper {'on ' if llm else 'off'}"
            print(f"    {label}: {len(truth)} references ({findable} findable) in {total:.2f} s, "
                  f"{len(up.requests)} upstream requests; recall {right / findable:.1%} ({right}/{findable}), "
                  f"wrong automatic picks {wrong}")
            if verbose:
                for n in misses:
                    print(f"      MISS  {n}: {res[n].why} {res[n].tried[-2:]}")
                for n, got, want in wrongs:
                    print(f"      WRONG {n}: chose version {got}, want {want}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--only", choices=["a", "b", "c"])
    args = ap.parse_args()
    if args.only in (None, "a"):
        bench_seed(args.latency, args.verbose)
    if args.only in (None, "b"):
        bench_strip(args.seed, args.verbose)
    if args.only in (None, "c"):
        bench_community(args.seed, args.verbose)


if __name__ == "__main__":
    main()

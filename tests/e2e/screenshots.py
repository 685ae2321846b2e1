"""Take the panel's screenshots for docs/screenshots: a 30-model workflow in a real ComfyUI against
the fake upstream, 1280x720, dark and light, before / review / during / after / after-compact on the
frontend given, plus before / after on the pinned one when --pinned-too.

    COMFYUI_DIR=/path/ComfyUI python -m tests.e2e.screenshots [--front-end-root DIR] [--pinned-too]
        [--out docs/screenshots]

The scenario is the one a user meets: most files download (valid safetensors, small on disk but
throttled so "during" catches several mid-transfer with speed and ETA), three exist nowhere, one
needs a Hugging Face login, one arrives with other bytes than Civitai lists, one is already on disk
in another folder. Inside ComfyUI, flux2_dev_fp8mixed also asks for a pick: its templates catalog has
no entry for it and the fixtures' nearest match is another precision of FLUX.2-dev.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.comfyui_proc import E2E, start_comfyui  # noqa: E402
from tests.e2e.test_e2e_fix import graph_node  # noqa: E402

MB = 1 << 20
RATE = 450_000  # bytes/s per connection: a 6 MB file takes ~14 s, so "during" finds files mid-way

# Civitai models (file name, type, size): found by their exact file name and served.
CIVITAI = [
    ("juggernautXL_v9Rdphoto2Lightning.safetensors", "Checkpoint", 7.0 * MB),
    ("epicrealism_naturalSinRC1VAE.safetensors", "Checkpoint", 5.5 * MB),
    ("cyberrealistic_v42.safetensors", "Checkpoint", 5.5 * MB),  # served with other bytes: hash mismatch
    ("realcartoon3d_v17.safetensors", "Checkpoint", 5.0 * MB),
    ("absolutereality_v181.safetensors", "Checkpoint", 5.0 * MB),
    ("animagineXL_v31.safetensors", "Checkpoint", 6.5 * MB),
    ("zavychromaxl_v80.safetensors", "Checkpoint", 6.5 * MB),
    ("photon_v1.safetensors", "Checkpoint", 4.0 * MB),
    ("hassakuXLIllustrious_v21.safetensors", "Checkpoint", 6.5 * MB),
    ("more_details_v1.safetensors", "LORA", 0.9 * MB),
    ("film_grain_lora_2024.safetensors", "LORA", 1.2 * MB),
    ("detail_tweaker_xl_v2.safetensors", "LORA", 2.2 * MB),
    ("epiNoiseoffset_v2.safetensors", "LORA", 0.8 * MB),
    ("pixelArtStyle_xl.safetensors", "LORA", 1.6 * MB),
    ("ClearVAE_v23.safetensors", "VAE", 1.8 * MB),
]
WRONG_BYTES = "cyberrealistic_v42.safetensors"
# Hugging Face files the offline catalogs point at (repo, path in repo), plus one found by repo search.
HF = [
    ("comfyanonymous/ControlNet-v1-1_fp16_safetensors", "control_v11p_sd15_openpose_fp16.safetensors", 2.8 * MB),
    ("xinsir/controlnet-union-sdxl-1.0", "diffusion_pytorch_model_promax.safetensors", 4.5 * MB),
    ("Comfy-Org/flux2-dev", "split_files/diffusion_models/flux2_dev_fp8mixed.safetensors", 9.0 * MB),
    ("Comfy-Org/flux2-dev", "split_files/text_encoders/mistral_3_small_flux2_fp8.safetensors", 7.5 * MB),
    ("comfyanonymous/flux_text_encoders", "clip_l.safetensors", 1.5 * MB),
    ("comfyanonymous/flux_text_encoders", "t5xxl_fp8_e4m3fn.safetensors", 6.0 * MB),
    ("comfyanonymous/flux_text_encoders", "t5xxl_fp16.safetensors", 8.5 * MB),
    ("stabilityai/sdxl-vae", "sdxl_vae.safetensors", 1.8 * MB),
    ("stabilityai/sd-vae-ft-mse-original", "vae-ft-mse-840000-ema-pruned.safetensors", 1.8 * MB),
    ("SG161222/RealVisXL_V5.0", "RealVisXL_V5.0_fp16.safetensors", 6.5 * MB),
]
GATED = ("Comfy-Org/flux1-dev", "flux1-dev-fp8.safetensors", 9.0 * MB)  # needs a token and the license
ELSEWHERE = {"checkpoints/4x-UltraSharp.pth": b"ESRGAN weights saved into the wrong folder\n" * 4096}
NOWHERE = ["aeshteticv5.safetensors", "my_private_style_v3.safetensors", "clip_vision_h_custom_2025.safetensors"]


# (node type, widget values): 30 model references across 8 folders, as a large community workflow has them.
LOADERS = [
    *[("CheckpointLoaderSimple", [n]) for n, kind, _ in CIVITAI if kind == "Checkpoint"],
    ("CheckpointLoaderSimple", ["RealVisXL_V5.0_fp16.safetensors"]),
    ("CheckpointLoaderSimple", ["aeshteticv5.safetensors"]),
    *[("LoraLoader", [n, 1.0, 1.0]) for n, kind, _ in CIVITAI if kind == "LORA"],
    ("LoraLoader", ["my_private_style_v3.safetensors", 0.8, 0.8]),
    *[("VAELoader", [n]) for n in ("sdxl_vae.safetensors", "vae-ft-mse-840000-ema-pruned.safetensors",
                                   "ClearVAE_v23.safetensors")],
    ("UpscaleModelLoader", ["4x-UltraSharp.pth"]),
    *[("ControlNetLoader", [n]) for n in ("diffusion_pytorch_model_promax.safetensors",
                                          "control_v11p_sd15_openpose_fp16.safetensors")],
    *[("UNETLoader", [n, "default"]) for n in ("flux1-dev-fp8.safetensors", "flux2_dev_fp8mixed.safetensors")],
    ("DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux"]),
    ("DualCLIPLoader", ["t5xxl_fp16.safetensors", "mistral_3_small_flux2_fp8.safetensors", "flux"]),
    ("CLIPVisionLoader", ["clip_vision_h_custom_2025.safetensors"]),
]


def thirty_model_workflow() -> dict:
    nodes = [graph_node(i + 1, t, w) for i, (t, w) in enumerate(LOADERS)]
    return {"id": "3a0b1c2d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "revision": 0, "last_node_id": len(nodes), "last_link_id": 0,
            "nodes": nodes, "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4}


def checkpoint_bytes(name: str, size: float) -> bytes:
    """A well-formed safetensors file of about `size` bytes (the pack checks the header after download)."""
    from tests.fake_upstream import payload_bytes

    return payload_bytes({"recipe": "safetensors-f16", "seed": f"screenshot {name}", "n_values": int(size) // 2})


def serve_scenario(up) -> None:
    from tests.fake_upstream import file_routes
    from tests.fake_upstream.api_routes import add_civitai_model, add_hf_repo

    for i, (name, kind, size) in enumerate(CIVITAI):
        data = checkpoint_bytes(name, size)
        mid, vid = 7_100_000 + i, 71_000_000 + i
        sha = hashlib.sha256(data).hexdigest().upper()
        add_civitai_model(up, {
            "id": mid, "name": name.split("_")[0], "type": kind, "nsfw": False, "creator": {"username": "community"},
            "stats": {"downloadCount": 250_000 - i * 1000},
            "modelVersions": [{"id": vid, "name": "v1", "baseModel": "SDXL 1.0" if "xl" in name.lower() else "SD 1.5",
                               "files": [{"id": vid, "name": name, "sizeKB": len(data) / 1024, "type": "Model",
                                          "metadata": {"format": "SafeTensor"}, "primary": True,
                                          "hashes": {"SHA256": sha},
                                          "downloadUrl": f"https://civitai.com/api/download/models/{vid}"}]}]})
        file_routes.register_civitai_file(up, vid, name, data)
        fault = file_routes.faults(up, file_routes.civitai_key(vid))
        fault.rate = RATE
        fault.wrong_bytes = name == WRONG_BYTES
    for repo, path, size in [*HF, GATED]:
        data = checkpoint_bytes(path, size)
        gated = "manual" if (repo, path, size) == GATED else False
        add_hf_repo(up, repo, {path: (len(data), hashlib.sha256(data).hexdigest())}, downloads=100_000, gated=gated)
        file_routes.register_hf_file(up, repo, path, data, gated=bool(gated))
        file_routes.faults(up, file_routes.hf_key(repo, path)).rate = RATE


def take(comfy_dir: Path, front_end_root: str | None, out: Path) -> int:
    """One fresh ComfyUI and fake upstream; the flow writes 01-before .. 05-after-compact into `out`."""
    from tests.fake_upstream import FakeUpstream

    up = FakeUpstream().start()
    serve_scenario(up)
    base = Path(tempfile.mkdtemp(prefix="cfx-shots-"))
    for rel, data in ELSEWHERE.items():
        (base / "models" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "models" / rel).write_bytes(data)
    comfy = start_comfyui(comfy_dir, base, env=up.env(), front_end_root=front_end_root)
    try:
        comfy.post_json("/api/comfyfixer/settings", {"connections_per_file": 1, "max_concurrent": 4})
        scenario = out / "screenshots-scenario.json"
        scenario.write_text(json.dumps({"url": comfy.url, "artifacts": str(out), "workflow": thirty_model_workflow(),
                                        "name": "community_30_models"}))
        run = subprocess.run(["node", str(E2E / "screenshots_flow.mjs"), str(scenario)], cwd=E2E, timeout=900)
        scenario.unlink()
        return run.returncode
    finally:
        comfy.stop()
        up.stop()
        shutil.rmtree(base, ignore_errors=True)


def pinned_frontend(comfy_dir: Path) -> str:
    """"1.27" from ComfyUI's requirements.txt pin comfyui-frontend-package==1.27.10."""
    pin = re.search(r"comfyui-frontend-package==(\d+\.\d+)", (comfy_dir / "requirements.txt").read_text())
    return pin.group(1) if pin else "pinned"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front-end-root", help="the frontend for 01..05 (default: the one ComfyUI pins)")
    parser.add_argument("--pinned-too", action="store_true",
                        help="also take before/after on the pinned frontend as 08/09-*-<version>-<theme>.png")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    comfy_dir = Path(os.environ["COMFYUI_DIR"])
    code = take(comfy_dir, args.front_end_root, out)
    if code or not args.pinned_too:
        return code
    pinned = pinned_frontend(comfy_dir)
    with tempfile.TemporaryDirectory(prefix="cfx-shots-pinned-") as tmp:
        code = take(comfy_dir, None, Path(tmp))
        for src, dst in (("01-before", "08-before"), ("04-after", "09-after")):
            for theme in ("dark", "light"):
                if (Path(tmp) / f"{src}-{theme}.png").exists():
                    shutil.copy(Path(tmp) / f"{src}-{theme}.png", out / f"{dst}-{pinned}-{theme}.png")
        shutil.copy(Path(tmp) / "screenshots-result.json", out / f"screenshots-result-{pinned}.json")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Take the panel's screenshots for docs/screenshots: a 30-model workflow in a real ComfyUI against
the fake upstream, 1280x720, dark and light, before / review / during / after.

    COMFYUI_DIR=/path/ComfyUI python -m tests.e2e.screenshots [--front-end-root DIR] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.comfyui_proc import E2E, start_comfyui  # noqa: E402
from tests.e2e.conftest import serve_valid_hf_checkpoint  # noqa: E402
from tests.e2e.test_e2e_fix import graph_node  # noqa: E402

# (node type, widget values): 30 model references across 8 folders, as a large community workflow has
# them. Most names are real models the fake upstream knows (real sizes); a few exist nowhere.
LOADERS = [
    *[("CheckpointLoaderSimple", [n]) for n in (
        "dreamshaper_8.safetensors", "majicmixRealistic_v7.safetensors", "realisticVisionV60B1_v51HyperVAE.safetensors",
        "dreamshaperXL_turboDPMSDE.safetensors", "waiIllustriousSDXL_v160.safetensors", "fixture_hf_model.safetensors",
        "fixture_tiny_checkpoint.safetensors", "meinamix_meinaV11.safetensors", "counterfeitV30_v30.safetensors",
        "ghostmix_v20Bakedvae.safetensors", "aeshteticv5.safetensors")],
    *[("LoraLoader", [n, 1.0, 1.0]) for n in (
        "add_detail.safetensors", "fixture_tiny_lora.safetensors", "my_private_style_v3.safetensors",
        "detail_tweaker_xl_v2.safetensors", "film_grain_lora_2024.safetensors")],
    *[("VAELoader", [n]) for n in ("sdxl_vae.safetensors", "vae-ft-mse-840000-ema-pruned.safetensors", "ae.safetensors")],
    *[("UpscaleModelLoader", [n]) for n in ("4x-UltraSharp.pth", "4xUltrasharp_v10.pt")],
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


def main() -> int:
    from tests.fake_upstream import FakeUpstream, file_routes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front-end-root")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    up = FakeUpstream().start()
    serve_valid_hf_checkpoint(up)
    for key in (file_routes.hf_key("comfy-fixer-fixtures/tiny-model", "fixture_hf_model.safetensors"),
                file_routes.civitai_key(9100101)):
        file_routes.faults(up, key).rate = 25_000  # slow enough that "during" shows progress
    comfy = start_comfyui(Path(os.environ["COMFYUI_DIR"]), Path(tempfile.mkdtemp(prefix="cfx-shots-")), env=up.env(),
                          front_end_root=args.front_end_root)
    try:
        comfy.post_json("/api/comfyfixer/settings", {"connections_per_file": 1})
        scenario = out / "screenshots-scenario.json"
        scenario.write_text(json.dumps({"url": comfy.url, "artifacts": str(out), "workflow": thirty_model_workflow(),
                                        "name": "community_30_models"}))
        run = subprocess.run(["node", str(E2E / "screenshots_flow.mjs"), str(scenario)], cwd=E2E, timeout=900)
        scenario.unlink()
        return run.returncode
    finally:
        comfy.stop()
        up.stop()


if __name__ == "__main__":
    sys.exit(main())

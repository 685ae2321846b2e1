"""Family per chain: each reference knows the checkpoint / diffusion model feeding its chain (LoRA stacks,
reroutes, set/get nodes, subgraphs, ControlNets and VAEs through their consumers), and the resolver picks, per
chain, the file made for that chain's family, the anchor's own family coming from what resolving it revealed."""

from __future__ import annotations

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.host.host import StandaloneHost
from fixer.read.scan import scan_workflow_data
from fixer.sources.family import report_families
from tests.conftest import make_comfy_root
from tests.fake_upstream.api_routes import add_civitai_model
from tests.graphs import Graph, detailer_in_a_subgraph
from tests.test_civitai_real import civitai

XL = ("checkpoints", "sd_xl_base_1.0.safetensors")
DS = ("checkpoints", "moonlit_merge_q.safetensors")


def two_chains() -> Graph:
    """An SDXL base with a LoRA stack, then an SD 1.5 pass (behind a reroute) with its own LoRA, an embedding
    in its prompt, a ControlNet and a VAE; the second sampler takes the first one's latent."""
    g = Graph()
    g.add(1, "CheckpointLoaderSimple", ["sd_xl_base_1.0.safetensors"], inputs=[])
    g.add(2, "LoraLoader", ["kelp_glow.safetensors", 1, 1])
    g.add(3, "LoraLoader", ["xl_detail_q.safetensors", 1, 1])
    g.add(4, "CLIPTextEncode", ["a cat"])
    g.add(5, "KSampler", [0, "fixed", 20, 7, "euler", "normal", 1])
    for src, dst in ((1, 2), (2, 3)):
        g.link(src, 0, dst, "model", "MODEL")
        g.link(src, 1, dst, "clip", "CLIP")
    g.link(3, 1, 4, "clip", "CLIP")
    g.link(3, 0, 5, "model", "MODEL")
    g.link(4, 0, 5, "positive", "CONDITIONING")
    g.add(11, "CheckpointLoaderSimple", ["moonlit_merge_q.safetensors"], inputs=[])
    g.add(12, "Reroute")
    g.add(13, "LoraLoader", ["moss_glow.safetensors", 1, 1])
    g.add(14, "CLIPTextEncode", ["embedding:ink_hands, a cat"])
    g.add(15, "ControlNetLoader", ["edge_guide_q.safetensors"], inputs=[])
    g.add(16, "ControlNetApplyAdvanced", [1, 0, 1])
    g.add(17, "KSampler", [0, "fixed", 20, 7, "euler", "normal", 0.5])
    g.add(18, "VAELoader", ["fine_vae_q.safetensors"], inputs=[])
    g.add(19, "VAEDecode")
    g.link(11, 0, 12, "", "MODEL")
    g.link(12, 0, 13, "model", "MODEL")
    g.link(11, 1, 13, "clip", "CLIP")
    g.link(13, 1, 14, "clip", "CLIP")
    g.link(14, 0, 16, "positive", "CONDITIONING")
    g.link(15, 0, 16, "control_net", "CONTROL_NET")
    g.link(13, 0, 17, "model", "MODEL")
    g.link(16, 0, 17, "positive", "CONDITIONING")
    g.link(5, 0, 17, "latent_image", "LATENT")
    g.link(17, 0, 19, "samples", "LATENT")
    g.link(18, 0, 19, "vae", "VAE")
    return g


def scan(tmp_path, data, files=None):
    root = make_comfy_root(tmp_path, files or {})
    return scan_workflow_data(data, "mixed.json", StandaloneHost.from_root(root))


def anchors_by_name(report) -> dict[str, set]:
    return {s.ref.name: {a for u in s.ref.usages for a in u.anchors} for s in report.models}


def test_each_reference_knows_the_anchor_of_its_own_chain(tmp_path):
    got = anchors_by_name(scan(tmp_path, two_chains().workflow()))
    assert got["kelp_glow.safetensors"] == {XL} and got["xl_detail_q.safetensors"] == {XL}  # a LoRA stack
    assert got["moss_glow.safetensors"] == {DS}  # behind a reroute, though the sampler takes the XL latent
    assert got["ink_hands.safetensors"] == {DS}  # an embedding: through its prompt's CLIP
    assert got["edge_guide_q.safetensors"] == {DS}  # a ControlNet: through the conditioning it is applied to
    assert got["fine_vae_q.safetensors"] == {DS}  # a VAE: through the latent it decodes
    assert got["sd_xl_base_1.0.safetensors"] == set() and got["moonlit_merge_q.safetensors"] == set()


def test_chains_are_followed_through_subgraphs_and_set_get_nodes(tmp_path):
    g = detailer_in_a_subgraph()
    g.add(3, "CheckpointLoaderSimple", ["sd_xl_base_1.0.safetensors"], inputs=[])
    g.add(4, "SetNode", ["model_xl"])
    g.link(3, 0, 4, "MODEL", "MODEL")
    g.add(7, "GetNode", ["model_xl"])
    g.add(8, "LoraLoaderModelOnly", ["kelp_glow.safetensors", 1])
    g.link(7, 0, 8, "model", "MODEL")
    report = scan(tmp_path, g.workflow())
    got = anchors_by_name(report)
    assert got["moss_glow.safetensors"] == {DS} and got["kelp_glow.safetensors"] == {XL}
    moss = next(s.ref for s in report.models if s.ref.name == "moss_glow.safetensors")
    assert moss.usages[0].subgraph_path == ("Detailer#2",)


def test_chains_in_an_api_prompt_follow_model_and_clip_inputs(tmp_path):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "kelp_glow.safetensors", "strength_model": 1,
                                                     "strength_clip": 1, "model": ["1", 0], "clip": ["1", 1]}},
        "11": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "moonlit_merge_q.safetensors"}},
        "13": {"class_type": "LoraLoader", "inputs": {"lora_name": "moss_glow.safetensors", "strength_model": 1,
                                                      "strength_clip": 1, "model": ["11", 0], "clip": ["11", 1]}},
        "17": {"class_type": "KSampler", "inputs": {"model": ["13", 0], "latent_image": ["2", 0], "seed": 1}},
    }
    got = anchors_by_name(scan(tmp_path, prompt))
    assert got["kelp_glow.safetensors"] == {XL} and got["moss_glow.safetensors"] == {DS}


def test_a_hostile_graph_of_endless_reroutes_and_cycles_costs_no_recursion(tmp_path):
    g = Graph()
    g.add(1, "CheckpointLoaderSimple", ["moonlit_merge_q.safetensors"], inputs=[])
    prev = 1
    for nid in range(2, 5002):
        g.add(nid, "Reroute")
        g.link(prev, 0, nid, "", "MODEL")
        prev = nid
    g.add(6000, "LoraLoaderModelOnly", ["moss_glow.safetensors", 1])
    g.link(prev, 0, 6000, "model", "MODEL")
    g.add(6001, "Reroute")
    g.add(6002, "Reroute")
    g.link(6001, 0, 6002, "", "MODEL")
    g.link(6002, 0, 6001, "", "MODEL")
    g.add(6003, "LoraLoaderModelOnly", ["kelp_glow.safetensors", 1])
    g.link(6002, 0, 6003, "model", "MODEL")
    got = anchors_by_name(scan(tmp_path, g.workflow()))
    assert got["moss_glow.safetensors"] == {DS} and got["kelp_glow.safetensors"] == set()


async def test_the_right_lora_per_chain_and_the_anchor_family_from_what_resolving_it_revealed(tmp_path, upstream):
    """An SDXL chain (its checkpoint present) and an SD 1.5 chain whose checkpoint's name says no family: the
    checkpoint is found on Civitai made for SD 1.5 (picked: an exact, unique name is never vetoed), and that
    answer decides its LoRA among same-name files for SDXL and SD 1.5; the SDXL chain's LoRA takes SDXL's."""
    add_civitai_model(upstream, civitai(7001, "DreamShaper", [("moonlit_merge_q.safetensors", "d1" * 32)],
                                        mtype="Checkpoint", version="8"))
    for mid, base, name, downloads in ((7002, "SDXL 1.0", "moss_glow.safetensors", 90_000),
                                       (7003, "SD 1.5", "moss_glow.safetensors", 50),
                                       (7004, "SDXL 1.0", "kelp_glow.safetensors", 40),
                                       (7005, "SD 1.5", "kelp_glow.safetensors", 80_000)):
        add_civitai_model(upstream, civitai(mid, f"Glow {mid}", [(name, f"{mid:064x}")], base=base,
                                            downloads=downloads))
    report = scan(tmp_path, two_chains().workflow(), {"models/checkpoints/sd_xl_base_1.0.safetensors": "x"})
    missing = [s.ref for s in report.models if s.state == "missing" and s.ref.name in
               ("moonlit_merge_q.safetensors", "moss_glow.safetensors", "kelp_glow.safetensors")]
    ctx = ResolveContext(config=SearchConfig(huggingface=False, use_catalogs=False, retries=1), secrets={},
                         families=report_families(report))
    res = {r.name: r async for r in Resolver(ctx).resolve(missing)}
    ckpt = res["moonlit_merge_q.safetensors"].chosen
    assert ckpt and ckpt.ids["model_id"] == 7001
    assert res["moss_glow.safetensors"].chosen.ids["model_id"] == 7003
    assert res["kelp_glow.safetensors"].chosen.ids["model_id"] == 7004
    assert "made for SDXL; this chain looks SD 1.5" in res["moss_glow.safetensors"].candidates[0].reason


async def test_an_anchor_found_on_hugging_face_tells_its_family_by_the_repos_tags(tmp_path, upstream):
    """The chain's checkpoint is only on Hugging Face, in a repo whose name says nothing but whose tags say SD 1.5:
    its LoRA takes the SD 1.5 file among same-name ones."""
    from tests.fake_upstream.api_routes import add_hf_repo

    add_hf_repo(upstream, "quietlab/moonlit-merge", {"moonlit_merge_q.safetensors": (5000, "9a" * 32)})
    upstream.state["hf_repos"]["quietlab/moonlit-merge"]["info"]["tags"] = [
        "base_model:stable-diffusion-v1-5/stable-diffusion-v1-5", "region:us"]
    for mid, base, downloads in ((7012, "SDXL 1.0", 90_000), (7013, "SD 1.5", 50)):
        add_civitai_model(upstream, civitai(mid, f"Glow {mid}", [("moss_glow.safetensors", f"{mid:064x}")], base=base,
                                            downloads=downloads))
    report = scan(tmp_path, two_chains().workflow(), {"models/checkpoints/sd_xl_base_1.0.safetensors": "x"})
    missing = [s.ref for s in report.models if s.ref.name in ("moonlit_merge_q.safetensors", "moss_glow.safetensors")]
    ctx = ResolveContext(config=SearchConfig(use_catalogs=False, retries=1), secrets={},
                         families=report_families(report))
    res = {r.name: r async for r in Resolver(ctx).resolve(missing)}
    assert res["moonlit_merge_q.safetensors"].chosen.ids["family"] == "SD 1.5"
    assert res["moss_glow.safetensors"].chosen.ids["model_id"] == 7013

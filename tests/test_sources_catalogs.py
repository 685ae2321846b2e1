"""Offline catalogs read from the installed packages: ComfyUI templates and ComfyUI-Manager's model list."""

from __future__ import annotations

import json

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelRef
from fixer.sources.catalogs import manager_lists, template_files, walk_models


async def catalog_only(ref: ModelRef, root=None):
    ctx = ResolveContext(config=SearchConfig(civitai=False, huggingface=False), secrets={}, inventory=None,
                         state_dir=None, comfyui_root=root)
    return [r async for r in Resolver(ctx).resolve([ref])][0]


def test_templates_are_found_in_the_installed_package():
    files = template_files()
    assert len(files) > 500 and all(not f.name.startswith("index") for f in files)


def test_models_entries_are_read_from_top_level_and_node_properties():
    wf = {"models": [{"name": "a.safetensors", "url": "u1", "directory": "vae"}],
          "nodes": [{"properties": {"models": [{"name": "b.safetensors", "url": "u2", "directory": "loras"}]}}],
          "definitions": {"subgraphs": [{"nodes": [{"properties": {"models": [{"name": "c.pt", "url": "u3"}]}}]}]}}
    assert [m["name"] for m in walk_models(wf)] == ["a.safetensors", "b.safetensors", "c.pt"]


async def test_template_entry_resolves_offline_with_url_rewritten_to_hf_endpoint(upstream):
    r = await catalog_only(ModelRef("qwen_image_vae.safetensors", "vae"))
    c = r.chosen
    assert c.source == "catalog" and c.folder == "vae" and c.confidence == 0.92
    assert c.url.startswith(upstream.base + "/Comfy-Org/") and c.ids["path"].endswith("qwen_image_vae.safetensors")
    assert not upstream.requests


async def test_catalog_folder_fills_in_when_the_workflow_does_not_say(upstream):
    assert (await catalog_only(ModelRef("qwen_image_vae.safetensors", None))).chosen.folder == "vae"


async def test_catalog_entry_for_another_folder_is_not_chosen(upstream):
    r = await catalog_only(ModelRef("qwen_image_vae.safetensors", "loras"))
    assert r.chosen is None and "workflow loads it from loras" in r.candidates[0].reason


async def test_manager_model_list_answers_with_its_folder(upstream):
    r = await catalog_only(ModelRef("taef1_decoder.pth", "vae_approx"))
    assert r.chosen.source == "catalog" and "model-list.json" in r.chosen.reason
    assert r.chosen.url == "https://github.com/madebyollin/taesd/raw/main/taef1_decoder.pth"


async def test_manager_list_under_the_comfyui_root_is_read(upstream, tmp_path):
    p = tmp_path / "custom_nodes" / "ComfyUI-Manager" / "model-list.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"models": [{"filename": "only_here.safetensors", "type": "lora", "save_path": "default",
                                         "url": "https://example.org/only_here.safetensors"}]}))
    assert p in manager_lists(tmp_path)
    r = await catalog_only(ModelRef("only_here.safetensors", "loras"), root=tmp_path)
    assert r.chosen.url == "https://example.org/only_here.safetensors" and r.chosen.folder == "loras"


async def test_catalog_folder_wins_over_a_keyword_guess(upstream):
    r = await catalog_only(ModelRef("qwen_image_vae.safetensors", "loras", folder_source="keyword"))
    assert r.chosen.source == "catalog" and r.chosen.folder == "vae"


def test_templates_in_the_comfyui_venv_are_found(tmp_path):
    pkg = tmp_path / "venv/lib/python3.12/site-packages/comfyui_workflow_templates_media_other/templates"
    pkg.mkdir(parents=True)
    (pkg / "t.json").write_text(json.dumps({"models": [{"name": "x.safetensors", "url": "u", "directory": "vae"}]}))
    (pkg / "index.json").write_text("[]")
    files = template_files(tmp_path)
    assert pkg / "t.json" in files and pkg / "index.json" not in files

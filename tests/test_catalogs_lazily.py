"""The offline catalogs are read only when a model needs them: a workflow that links its models itself (its
models[] entries, checked on the Hub) has them resolved without the ~650 templates being found or parsed --
what a many-model `--auto` waited ~0.35 s for before its first download (benchmarks/many_files_bench.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixer.app.resolve import ResolveContext, Resolver
from fixer.config import SearchConfig
from fixer.models import ModelHint, ModelRef
from fixer.sources import catalogs
from tests.fake_upstream.api_routes import add_hf_repo

REPO, FILE = "comfy-fixer-fixtures/linked", "linked_lora.safetensors"
SHA = "c" * 64


def manager_list(root: Path, url: str) -> None:
    p = root / "custom_nodes" / "ComfyUI-Manager" / "model-list.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"models": [{"filename": FILE, "type": "lora", "save_path": "default", "url": url}]}))


@pytest.fixture
def catalog_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time the catalogs' files are looked for or their index built."""
    reads: list[str] = []
    for name in ("template_files", "manager_lists", "load_index"):
        real = getattr(catalogs, name)

        def spy(*a: object, _real=real, _name=name, **kw: object) -> object:
            reads.append(_name)
            return _real(*a, **kw)

        monkeypatch.setattr(catalogs, name, spy)
    return reads


async def resolve(ref: ModelRef, root: Path):
    ctx = ResolveContext(config=SearchConfig(civitai=False, huggingface=True, retries=1), secrets={},
                         inventory=None, state_dir=None, comfyui_root=root)
    return [r async for r in Resolver(ctx).resolve([ref])][0]


async def test_a_model_the_workflow_links_is_resolved_without_reading_the_catalogs(upstream, tmp_path, catalog_reads):
    add_hf_repo(upstream, REPO, {FILE: (1000, SHA)})
    url = f"{upstream.base}/{REPO}/resolve/main/{FILE}"
    manager_list(tmp_path, url)  # the catalogs know the file too: still nothing of them is read
    r = await resolve(ModelRef(FILE, "loras", hints=[ModelHint(url=url, hash=SHA, hash_type="sha256")]), tmp_path)
    assert r.chosen is not None and r.chosen.source == "embedded" and r.chosen.url == url
    assert catalog_reads == []


async def test_a_model_without_a_link_still_finds_the_catalog_entry(upstream, tmp_path, catalog_reads):
    add_hf_repo(upstream, REPO, {FILE: (1000, SHA)})
    manager_list(tmp_path, f"{upstream.base}/{REPO}/resolve/main/{FILE}")
    r = await resolve(ModelRef(FILE, "loras"), tmp_path)
    assert r.chosen is not None and r.chosen.source == "catalog"
    assert catalog_reads.count("template_files") == 1 and catalog_reads.count("manager_lists") == 1

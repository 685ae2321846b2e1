"""'Make this workflow portable': models[] entries for every resolved model the workflow uses."""

from __future__ import annotations

import json

from fixer.app.portable import make_portable, public_url, write_portable
from fixer.models import Candidate, Resolution
from tests.conftest import make_workflow, node, write_json


def hf(name: str, folder: str, sha: str | None = "ab" * 32, conf: float = 0.9) -> Candidate:
    return Candidate(source="huggingface", filename=name, folder=folder, confidence=conf, reason="r",
                     url=f"http://127.0.0.1:9/Comfy-Org/x/resolve/main/split_files/{folder}/{name}", sha256=sha)


def test_public_url_maps_endpoints_back_and_drops_tokens():
    assert public_url("http://127.0.0.1:9/a/b/resolve/main/c.safetensors", hf="http://127.0.0.1:9") == \
        "https://huggingface.co/a/b/resolve/main/c.safetensors"
    assert public_url("http://m:1/api/download/models/5?type=Model&token=SECRET", hf="http://x",
                      civitai="http://m:1") == \
        "https://civitai.com/api/download/models/5?type=Model"
    assert public_url("https://civitai.com/api/download/models/5?api_key=SECRET&type=Model") == \
        "https://civitai.com/api/download/models/5?type=Model"  # every credential key the downloader knows


def test_resolved_models_used_by_the_workflow_get_entries(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    wf = make_workflow([node(1, "VAELoader", ["ae.safetensors"]), node(2, "LoraLoader", ["sub\\l.safetensors", 1, 1])],
                       models=[{"name": "other.safetensors", "url": "https://x/other.safetensors", "directory": "vae"}])
    res = [Resolution("ae.safetensors", "vae", hf("ae.safetensors", "vae")),
           Resolution("sub/l.safetensors", "loras", hf("l.safetensors", "loras", sha=None)),
           Resolution("unused.safetensors", "vae", hf("unused.safetensors", "vae")),
           Resolution("nf.safetensors", "vae", None)]
    out = make_portable(wf, res)
    by_name = {m["name"]: m for m in out["models"]}
    assert set(by_name) == {"other.safetensors", "ae.safetensors", "sub/l.safetensors"}
    assert by_name["ae.safetensors"] == {"name": "ae.safetensors", "directory": "vae", "hash": "ab" * 32,
                                         "hash_type": "sha256",
                                         "url": "https://huggingface.co/Comfy-Org/x/resolve/main/split_files/vae/ae.safetensors"}
    assert "hash" not in by_name["sub/l.safetensors"]
    assert "models" not in wf or len(wf["models"]) == 1  # the input is not modified


def test_local_pick_falls_back_to_the_sure_remote_candidate():
    wf = make_workflow([node(1, "VAELoader", ["ae.safetensors"])])
    local = Candidate(source="local", filename="ae.safetensors", folder="vae", confidence=1.0, reason="r",
                      local_path="/m/vae/old.safetensors")
    res = Resolution("ae.safetensors", "vae", local, candidates=[hf("ae.safetensors", "vae", conf=0.5),
                                                                  hf("ae.safetensors", "vae", conf=0.92)])
    out = make_portable(wf, [res])
    assert len(out["models"]) == 1 and out["models"][0]["url"].endswith("/ae.safetensors")
    assert make_portable(wf, [Resolution("ae.safetensors", "vae", local)])["models"] == []


def test_written_beside_the_original_which_is_left_alone(tmp_path):
    src = write_json(tmp_path / "wf.json", make_workflow([node(1, "VAELoader", ["ae.safetensors"])]))
    before = src.read_text()
    dest = write_portable(src, [Resolution("ae.safetensors", "vae", hf("ae.safetensors", "vae"))])
    assert dest.name == "wf.portable.json" and src.read_text() == before
    assert json.loads(dest.read_text())["models"][0]["name"] == "ae.safetensors"


def test_portable_copy_drops_tokens_pasted_into_existing_model_links():
    from fixer.app.portable import make_portable

    wf = {"nodes": [{"id": 1, "type": "LoraLoader", "widgets_values": ["a.safetensors", 1, 1],
                     "properties": {"models": [{"name": "a.safetensors", "directory": "loras",
                                                "url": "https://civitai.com/api/download/models/1?token=SECRET"}]}}],
          "models": [{"name": "b.safetensors", "directory": "vae",
                      "url": "https://civitai.com/api/download/models/2?type=Model&token=SECRET"}]}
    out = make_portable(wf, [])
    assert "SECRET" not in json.dumps(out)
    assert out["models"][0]["url"] == "https://civitai.com/api/download/models/2?type=Model"


def test_one_mirror_for_both_services_maps_each_link_to_its_own_public_host():
    base = "http://127.0.0.1:9999"
    assert public_url(f"{base}/api/download/models/9100101", hf=base, civitai=base) == \
        "https://civitai.com/api/download/models/9100101"
    assert public_url(f"{base}/org/repo/resolve/main/x.safetensors", hf=base, civitai=base) == \
        "https://huggingface.co/org/repo/resolve/main/x.safetensors"


async def test_portable_links_present_files_from_download_records_and_names_the_rest(tmp_path):
    from fixer.app.service import FixerService
    from fixer.host.host import StandaloneHost
    from tests.conftest import make_comfy_root

    root = make_comfy_root(tmp_path, {"models/loras/got.safetensors": b"x", "models/vae/mine.safetensors": b"y"})
    state = tmp_path / "state"
    url = "https://huggingface.co/org/repo/resolve/main/got.safetensors"
    write_json(state / "output" / "downloaded_models.json", {"downloads": [
        {"name": "got.safetensors", "filename": "got.safetensors", "folder": "loras", "url": url,
         "source": "huggingface",
         "state": "done", "sha256": "cd" * 32, "path": str(root / "models/loras/got.safetensors")},
        {"name": "mine.safetensors", "folder": "vae", "url": "https://x/mine", "state": "failed"}]})
    svc = FixerService(StandaloneHost.from_root(root), state, comfyui_root=root)
    wf = make_workflow([node(1, "LoraLoader", ["got.safetensors", 1, 1]), node(2, "VAELoader", ["mine.safetensors"])])

    answer = await svc.portable(wf)
    by_name = {m["name"]: m for m in answer["workflow"]["models"]}
    assert by_name["got.safetensors"] == {"name": "got.safetensors", "url": url, "directory": "loras",
                                          "hash": "cd" * 32, "hash_type": "sha256"}
    assert answer["without_link"] == ["mine.safetensors"]  # a failed record is no link


def test_portable_takes_a_link_the_offline_catalog_gives_for_that_name_and_folder(tmp_path, monkeypatch):
    from fixer.app import portable
    from fixer.sources import catalogs

    entry = catalogs.CatalogEntry("ae.safetensors", "https://huggingface.co/o/r/resolve/main/ae.safetensors", "vae",
                                  "ef" * 32, "ComfyUI template flux")
    monkeypatch.setattr(catalogs.CatalogSource, "index", lambda self: {"ae.safetensors": [entry]})
    found = portable.recorded_resolutions(tmp_path, {"ae.safetensors": "vae", "x.safetensors": "loras"})
    assert [(r.name, r.chosen.url, r.chosen.sha256) for r in found] == [("ae.safetensors", entry.url, "ef" * 32)]


def test_a_portable_copy_of_names_with_lone_surrogates_is_valid_utf8_json(tmp_path):
    import os

    name = os.fsdecode(b"caf\xe9.safetensors")  # a name from a non-UTF-8 disk, as a resolution can carry it
    src = write_json(tmp_path / "wf.json", make_workflow([node(1, "VAELoader", ["ae.safetensors"])]))
    dest = write_portable(src, [Resolution("ae.safetensors", "vae", hf(name, "vae"))])
    json.loads(dest.read_bytes().decode("utf-8"))  # UTF-8 that any JSON reader takes
    assert not list(tmp_path.glob("*.tmp"))


def test_search_history_keeps_a_line_whose_query_holds_a_lone_surrogate(tmp_path):
    from fixer.sources.history import SearchHistory

    log = tmp_path / "search_history.log"
    SearchHistory(log).record("civitai", "caf\udce9", "no match", "x.safetensors")
    assert "no match" in log.read_text(encoding="utf-8")

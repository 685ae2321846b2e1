"""Naming the pack behind each missing node type.

Most tests use the real extension-node-map.json of the `comfyui-manager` package (a test
dependency); ranking rules and discovery use small Manager folders built per test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixer.models import NodeRef, Usage, to_jsonable
from fixer.nodepacks import lookup as nodepacks
from fixer.nodepacks.lookup import (
    PackIndex,
    compile_pattern,
    is_newer,
    match_missing_nodes,
    missing_nodes_json,
    packs_markdown,
    parse_version,
)

RUNNING = "0.3.64"


def make_ref(node_type: str, workflow: str = "wf.json", node_ids: tuple[str, ...] = ("1",), **hints) -> NodeRef:
    return NodeRef(node_type, [Usage(workflow, i, node_type) for i in node_ids], **hints)


def make_manager_dir(folder: Path, packs: dict[str, dict], *, listing: list[dict] | None = None,
                     stars: dict[str, int] | None = None) -> Path:
    """A Manager data folder: `packs` maps repo URL -> {"nodes": [...], **meta}."""
    folder.mkdir(parents=True, exist_ok=True)
    ext_map = {url: [p.get("nodes", []), {k: v for k, v in p.items() if k != "nodes"} | {"title_aux": url[-6:]}]
               for url, p in packs.items()}
    (folder / "extension-node-map.json").write_text(json.dumps(ext_map), encoding="utf-8")
    (folder / "custom-node-list.json").write_text(json.dumps({"custom_nodes": listing or []}), encoding="utf-8")
    (folder / "github-stats.json").write_text(
        json.dumps({u: {"stars": s, "last_update": "2025-01-01"} for u, s in (stars or {}).items()}), encoding="utf-8")
    return folder


def make_comfy_root(tmp_path: Path, packs: dict[str, dict], **kw) -> Path:
    root = tmp_path / "ComfyUI"
    make_manager_dir(root / "custom_nodes" / "ComfyUI-Manager", packs, **kw)
    return root


def local_index(tmp_path: Path, packs: dict[str, dict], **kw) -> PackIndex:
    return PackIndex.load(make_comfy_root(tmp_path, packs, **kw), search_package=False)


@pytest.fixture(scope="module")
def real() -> PackIndex:
    index = PackIndex.load(None)
    assert index.source and index.source.endswith("comfyui_manager/extension-node-map.json")
    return index


def one(matches, node_type):
    return next(m for m in matches if node_type in m.node_types)


# ---------------------------------------------------------------- the real map


def test_real_map_loads_from_installed_comfyui_manager_package(real):
    assert len(real.data.packs) > 3000
    assert len(real.data.by_type) > 20000
    assert real.data.patterns and not real.data.skipped_patterns


def test_cnr_id_property_names_registry_pack_and_installs_with_comfy_cli(real):
    [m] = match_missing_nodes([make_ref("UnetLoaderGGUF", cnr_id="comfyui-gguf", ver="1.1.4")], real, RUNNING)
    assert (m.matched_by, m.id, m.cnr_id, m.version) == ("cnr_id", "comfyui-gguf", "comfyui-gguf", "1.1.4")
    assert m.repository == "https://github.com/city96/ComfyUI-GGUF"
    assert m.install == ["comfy node install comfyui-gguf"]


def test_a_cnr_id_no_list_knows_is_only_what_the_workflow_says(real):
    [m] = match_missing_nodes([make_ref("BrandNewNode", cnr_id="brand-new-pack", ver="0.1.0")], real, RUNNING)
    assert (m.matched_by, m.id, m.repository, m.cnr_id) == ("unknown", None, None, None)
    assert m.workflow_says == "registry pack 'brand-new-pack'"
    assert m.install == m.install_cli == m.install_git == [] and not m.manager_installable


def test_an_aux_id_of_a_listed_pack_for_a_type_the_map_lacks_is_only_what_the_workflow_says(real):
    # A newer node of a well-known pack, or anyone's node claiming that pack: the map cannot tell.
    [m] = match_missing_nodes([make_ref("KJNewerNode", aux_id="kijai/ComfyUI-KJNodes", ver="abc1234")], real, RUNNING)
    assert (m.matched_by, m.id, m.repository) == ("unknown", None, None)
    assert m.workflow_says == "repository https://github.com/kijai/ComfyUI-KJNodes"
    assert m.install == m.install_git == [] and not m.manager_installable


def test_aux_id_wins_over_the_maps_choice_for_an_ambiguous_type(real):
    [m] = match_missing_nodes([make_ref("ShowText", aux_id="fairy-root/ComfyUI-Show-Text")], real, RUNNING)
    assert (m.matched_by, m.id) == ("aux_id", "fairy-root/ComfyUI-Show-Text")
    assert "fairy-root/ComfyUI-Show-Text" not in [c.id for c in m.candidates]
    assert len(m.candidates) == 6


def test_exact_name_in_real_map(real):
    [m] = match_missing_nodes([make_ref("CR Seed to Int")], real, RUNNING)
    assert (m.matched_by, m.id, m.title) == ("exact", "Suzie1/ComfyUI_Comfyroll_CustomNodes", "Comfyroll Studio")
    assert m.candidates == []


def test_type_matched_only_by_nodename_pattern(real):
    [m] = match_missing_nodes([make_ref("Some Future Node (rgthree)")], real, RUNNING)
    assert (m.matched_by, m.id) == ("pattern", "rgthree/rgthree-comfy")


def test_ambiguous_type_lists_every_pack_most_starred_first(real):
    [m] = match_missing_nodes([make_ref("ShowText")], real, RUNNING)
    providers, _ = real.packs_for("ShowText")
    assert {m.id, *(c.id for c in m.candidates)} == {p.id for p in providers}
    stars = [real.pack(m.repository).stars] + [c.stars for c in m.candidates]
    assert stars == sorted(stars, reverse=True)
    assert "7 packs provide it" in m.reason and "GitHub stars" in m.reason


def test_preempting_pack_ranks_first_for_its_type(real):
    [m] = match_missing_nodes([make_ref("UnetLoaderGGUF")], real, RUNNING)
    assert m.id == "city96/ComfyUI-GGUF" and "preemptions" in m.reason
    assert [c.id for c in m.candidates] == ["kael558/ComfyUI-GGUF-FantasyTalking"]


def test_type_no_pack_provides_is_unknown_with_search_link(real):
    [m] = match_missing_nodes([make_ref("Zq9 Nobody Ships This")], real, RUNNING)
    assert (m.matched_by, m.id, m.install) == ("unknown", None, [])
    assert m.search_url == "https://github.com/search?type=code&q=%22Zq9%20Nobody%20Ships%20This%22"


def test_comfy_core_node_from_newer_comfyui_means_update_comfyui(real):
    [m] = match_missing_nodes([make_ref("EmptyFutureLatent", cnr_id="comfy-core", ver="0.9.2")], real, RUNNING)
    assert (m.matched_by, m.id, m.version) == ("update_comfyui", "comfy-core", "0.9.2")
    assert "0.9.2" in m.reason and RUNNING in m.reason
    assert m.install == ["git -C . pull", "python -m pip install -r requirements.txt"]


def test_comfy_core_with_git_hash_version_still_means_update_comfyui(real):
    [m] = match_missing_nodes([make_ref("EmptyFutureLatent", cnr_id="comfy-core", ver="3d2f1e0")], real, RUNNING)
    assert m.matched_by == "update_comfyui"


def test_comfy_core_not_newer_than_running_is_not_called_an_update(real):
    [m] = match_missing_nodes([make_ref("RemovedCoreNode", cnr_id="comfy-core", ver="0.3.10")], real, RUNNING)
    assert m.matched_by == "unknown"
    assert "core node of ComfyUI 0.3.10" in m.reason


def test_core_type_listed_in_manager_map_means_update_comfyui(real):
    [m] = match_missing_nodes([make_ref("KSampler")], real, RUNNING)
    assert m.matched_by == "update_comfyui"
    assert {c.id for c in m.candidates} == {"iacoposk8/ComfyUI-Fooocus-Inpaint-Wrapper", "mrhan1993/ComfyUI-Fooocus"}


def test_types_of_one_pack_are_grouped_with_their_workflows(real):
    refs = [make_ref("CR Seed to Int", "a.json"), make_ref("CR Image Output", "b.json", ("4", "9")),
            make_ref("UnetLoaderGGUF", "a.json")]
    matches = match_missing_nodes(refs, real, RUNNING)
    assert len(matches) == 2
    cr = one(matches, "CR Seed to Int")
    assert cr.node_types == ["CR Image Output", "CR Seed to Int"] and cr.workflows == ["a.json", "b.json"]
    assert matches[0] is cr  # the pack covering most types comes first


def test_pack_named_by_cnr_id_on_one_node_and_found_by_name_for_another_is_one_group(real):
    refs = [make_ref("UnetLoaderGGUF", "a.json", cnr_id="comfyui-gguf", ver="1.1.4"), make_ref("CLIPLoaderGGUF",
                                                                                               "b.json")]
    [m] = match_missing_nodes(refs, real, RUNNING)
    assert (m.matched_by, m.id, m.node_types) == ("cnr_id", "comfyui-gguf", ["CLIPLoaderGGUF", "UnetLoaderGGUF"])
    assert m.workflows == ["a.json", "b.json"]


def test_no_manager_installed_and_no_snapshot_gives_empty_index_and_unknown_types(tmp_path):
    index = PackIndex.load(tmp_path, search_package=False, snapshot=None)
    assert index.empty and index.source is None
    [m] = match_missing_nodes([make_ref("CR Seed to Int")], index, RUNNING)
    assert m.matched_by == "unknown" and "was not found" in m.reason


# ---------------------------------------------------------------- ranking rules and discovery


def test_pack_providing_more_of_the_missing_types_beats_more_stars(tmp_path):
    index = local_index(tmp_path, {
        "https://github.com/big/Popular": {"nodes": ["Shared"]},
        "https://github.com/small/Suite": {"nodes": ["Shared", "OnlySuite"]},
    }, stars={"https://github.com/big/Popular": 5000, "https://github.com/small/Suite": 3})
    matches = match_missing_nodes([make_ref("Shared"), make_ref("OnlySuite")], index, RUNNING)
    assert [m.id for m in matches] == ["small/Suite"]
    assert matches[0].node_types == ["OnlySuite", "Shared"]
    assert [c.id for c in matches[0].candidates] == ["big/Popular"]
    assert "provides 2 of the missing types" in matches[0].reason


def test_pack_other_nodes_name_outright_ranks_first_for_a_hintless_type(real):
    refs = [make_ref("ShowText"), make_ref("SomeOtherShowNode", aux_id="fairy-root/ComfyUI-Show-Text")]
    matches = match_missing_nodes(refs, real, RUNNING)
    # The claim picks among the packs the map lists for ShowText; the type no list knows stays unknown.
    assert [(m.id, m.node_types) for m in matches] == [
        ("fairy-root/ComfyUI-Show-Text", ["ShowText"]), (None, ["SomeOtherShowNode"])]
    assert "other nodes of the workflows name this pack" in matches[0].reason


def test_map_order_breaks_a_tie(tmp_path):
    index = local_index(tmp_path, {"https://github.com/a/First": {"nodes": ["T"]},
                                   "https://github.com/b/Second": {"nodes": ["T"]}})
    [m] = match_missing_nodes([make_ref("T")], index, RUNNING)
    assert m.id == "a/First" and "listed first" in m.reason


def test_invalid_or_risky_patterns_are_skipped_not_fatal(tmp_path):
    index = local_index(tmp_path, {
        "https://github.com/x/Broken": {"nodes": [], "nodename_pattern": "([unclosed"},
        "https://github.com/x/Slow": {"nodes": [], "nodename_pattern": "^(a+)+$"},
        "https://github.com/x/Good": {"nodes": [], "nodename_pattern": r" \(good\)$"},
    })
    assert len(index.data.skipped_patterns) == 2
    [m] = match_missing_nodes([make_ref("Thing (good)"), ], index, RUNNING)
    assert (m.matched_by, m.id) == ("pattern", "x/Good")
    [m] = match_missing_nodes([make_ref("a" * 40 + "!")], index, RUNNING)
    assert m.matched_by == "unknown"


@pytest.mark.parametrize("pattern", [None, 7, "", "x" * 300, "(", r"(\w*)*z", r"(?:a|b+){2,}"])
def test_compile_pattern_refuses_unusable_patterns(pattern):
    assert compile_pattern(pattern) is None


def test_index_found_in_custom_nodes_manager_folder(tmp_path):
    root = make_comfy_root(tmp_path, {"https://github.com/me/Pack": {"nodes": ["MyNode"]}},
                           listing=[{"title": "My Pack", "reference": "https://github.com/me/Pack",
                                     "files": ["https://github.com/me/Pack"], "install_type": "git-clone",
                                     "pip": ["onnxruntime"], "id": "my-pack"}])
    index = PackIndex.load(root, search_package=False)
    assert index.source == str(root / "custom_nodes" / "ComfyUI-Manager" / "extension-node-map.json")
    [m] = match_missing_nodes([make_ref("MyNode")], index, RUNNING)
    assert (m.title, m.pip) == ("My Pack", ["onnxruntime"])
    cn = root / "custom_nodes"
    assert m.install == [f"git clone https://github.com/me/Pack {cn}/Pack",
                         f"python -m pip install -r {cn}/Pack/requirements.txt",
                         "python -m pip install onnxruntime"]


def test_index_found_in_new_manager_layout_and_disabled_copy_ignored(tmp_path):
    root = tmp_path / "ComfyUI"
    make_manager_dir(root / "custom_nodes" / "comfyui-manager" / "comfyui_manager",
                     {"https://github.com/me/New": {"nodes": ["N"]}})
    make_manager_dir(root / "custom_nodes" / "ComfyUI-Manager.disabled",
                     {"https://github.com/me/Old": {"nodes": ["N"]}})
    [m] = match_missing_nodes([make_ref("N")], PackIndex.load(root, search_package=False), RUNNING)
    assert m.id == "me/New"


def test_index_parsed_once_per_file_version(tmp_path):
    root = make_comfy_root(tmp_path, {"https://github.com/me/Pack": {"nodes": ["A"]}})
    first = PackIndex.load(root, search_package=False)
    assert PackIndex.load(root, search_package=False).data is first.data
    map_file = Path(first.source)
    make_manager_dir(map_file.parent, {"https://github.com/me/Pack": {"nodes": ["A", "B"]}})
    import os
    os.utime(map_file, ns=(map_file.stat().st_atime_ns, map_file.stat().st_mtime_ns + 10**9))
    assert "B" in PackIndex.load(root, search_package=False).data.by_type


def test_malformed_map_entries_are_skipped(tmp_path):
    root = tmp_path / "ComfyUI"
    folder = root / "custom_nodes" / "ComfyUI-Manager"
    folder.mkdir(parents=True)
    (folder / "extension-node-map.json").write_text(json.dumps({
        "https://github.com/bad/One": "not a list",
        "https://github.com/bad/Two": [[1, None, "Fine"], "meta not a dict"],
    }))
    [m] = match_missing_nodes([make_ref("Fine")], PackIndex.load(root, search_package=False), RUNNING)
    assert m.id == "bad/Two"


# ---------------------------------------------------------------- install commands


def test_install_commands_quote_a_root_with_spaces(tmp_path):
    root = tmp_path / "my comfy"
    make_manager_dir(root / "custom_nodes" / "ComfyUI-Manager", {"https://github.com/me/Pack": {"nodes": ["A"]}})
    [m] = match_missing_nodes([make_ref("A")], PackIndex.load(root, search_package=False), RUNNING,
                              python="/opt/py env/bin/python")
    assert m.install == [f"git clone https://github.com/me/Pack '{root}/custom_nodes/Pack'",
                         f"'/opt/py env/bin/python' -m pip install -r '{root}/custom_nodes/Pack/requirements.txt'"]


def test_copy_install_type_downloads_the_file_into_custom_nodes(tmp_path):
    url = "https://raw.githubusercontent.com/me/x/main/node.py"
    index = local_index(tmp_path, {"https://github.com/me/x": {"nodes": ["A"]}},
                        listing=[{"title": "X", "reference": "https://github.com/me/x", "files": [url],
                                  "install_type": "copy"}])
    [m] = match_missing_nodes([make_ref("A")], index, RUNNING)
    assert m.install == [f"curl -L -o {index.comfyui_root}/custom_nodes/node.py {url}"]


def test_registry_install_uses_the_workspace_when_root_known(tmp_path):
    index = local_index(tmp_path, {"https://github.com/me/some-pack": {"nodes": ["A"]}})
    [m] = match_missing_nodes([make_ref("A", cnr_id="some-pack")], index, RUNNING)
    assert m.install == [f"comfy --workspace {index.comfyui_root} node install some-pack"]


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize("ver,parsed", [("0.3.64", (0, 3, 64)), ("v1.2", (1, 2, 0)), ("0.3.64-rc.1", (0, 3, 64)),
                                        ("unknown", None), ("3d2f1e0", None), ("1234567", None), (None, None)])
def test_parse_version(ver, parsed):
    assert parse_version(ver) == parsed


def test_is_newer_compares_numerically_and_gives_none_when_not_comparable():
    assert is_newer("0.3.100", "0.3.64") is True
    assert is_newer("0.3.64", "0.3.64") is False
    assert is_newer("abc123", "0.3.64") is None
    assert is_newer("0.4.0", None) is None


def test_running_version_read_from_the_root_when_not_given(tmp_path):
    root = make_comfy_root(tmp_path, {})
    (root / "comfyui_version.py").write_text('__version__ = "0.9.5"\n')
    index = PackIndex.load(root, search_package=False)
    [m] = match_missing_nodes([make_ref("EmptyFutureLatent", cnr_id="comfy-core", ver="0.9.2")], index, None)
    assert m.matched_by == "unknown" and "(0.9.5) lacks it" in m.reason


def test_comfyui_version_from_root(tmp_path):
    (tmp_path / "comfyui_version.py").write_text('# generated\n__version__ = "0.3.64"\n')
    assert nodepacks.comfyui_version_from_root(tmp_path) == "0.3.64"
    assert nodepacks.comfyui_version_from_root(tmp_path / "nope") is None


# ---------------------------------------------------------------- outputs


def test_missing_nodes_json_has_seed_fields_and_pack(real):
    refs = [make_ref("CR Seed to Int", "a.json", ("10", "2")), make_ref("Zq9 Nobody Ships This", "b.json")]
    rows = to_jsonable(missing_nodes_json(refs, match_missing_nodes(refs, real, RUNNING)))
    cr = rows[0]
    assert cr["node_type"] == cr["class_type"] == "CR Seed to Int"
    assert (cr["workflows"], cr["node_ids"], cr["count"]) == (["a.json"], ["2", "10"], 2)
    assert (cr["pack_id"], cr["pack_title"], cr["matched_by"]) == (
        "Suzie1/ComfyUI_Comfyroll_CustomNodes", "Comfyroll Studio", "exact")
    assert cr["repository"] == "https://github.com/Suzie1/ComfyUI_Comfyroll_CustomNodes"
    assert rows[1]["matched_by"] == "unknown" and rows[1]["search_url"].startswith("https://github.com/search")
    json.dumps(rows)


def test_packs_markdown_groups_types_and_workflows_by_pack(real):
    refs = [make_ref("CR Seed to Int", "a.json"), make_ref("CR Image Output", "b.json"),
            make_ref("EmptyFutureLatent", "c.json", cnr_id="comfy-core", ver="0.9.2"),
            make_ref("Zq9 Nobody Ships This", "d.json")]
    md = packs_markdown(match_missing_nodes(refs, real, RUNNING))
    assert md.startswith("4 missing node type(s): 1 pack(s) to install, ComfyUI to update, 1 type(s) no list knows.")
    section = md.split("### Comfyroll Studio")[1].split("###")[0]
    assert "`CR Image Output`, `CR Seed to Int`" in section and "a.json, b.json" in section
    assert "git clone https://github.com/Suzie1/ComfyUI_Comfyroll_CustomNodes" in section
    assert "Update ComfyUI to 0.9.2 or newer" in md
    assert "### Unknown: `Zq9 Nobody Ships This`" in md


def test_packs_markdown_says_when_nothing_is_missing():
    assert "No node types are missing." in packs_markdown([])


# ---------------------------------------------------------------- through the lead's scan


def test_workflow_scanned_against_object_info_names_its_packs(tmp_path, real):
    from fixer.host.host import StandaloneHost
    from fixer.read import scan  # an import error here is a failure, never a skip

    workflow = {
        "last_node_id": 4, "last_link_id": 0, "version": 0.4, "links": [],
        "nodes": [
            {"id": 1, "type": "KSampler", "properties": {"cnr_id": "comfy-core", "ver": "0.3.64"},
             "widgets_values": []},
            {"id": 2, "type": "VHS_VideoCombine", "widgets_values": {},
             "properties": {"cnr_id": "comfyui-videohelpersuite", "ver": "1.7.1"}},
            {"id": 3, "type": "Image Comparer (rgthree)", "properties": {"aux_id": "rgthree/rgthree-comfy"},
             "widgets_values": []},
            {"id": 4, "type": "Reroute", "properties": {}, "widgets_values": []},
        ],
    }
    host = StandaloneHost.from_root(tmp_path).with_object_info({"KSampler": {}}, "object_info")
    report = scan.scan_workflow_data(workflow, "shared.json", host)
    matches = match_missing_nodes(report.missing_nodes, real, RUNNING)
    assert [(m.matched_by, m.id) for m in matches] == [  # same size: by title
        ("cnr_id", "comfyui-videohelpersuite"), ("aux_id", "rgthree/rgthree-comfy")]
    assert one(matches, "VHS_VideoCombine").repository == "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite"
    assert all(m.workflows == ["shared.json"] for m in matches)


# ---------------------------------------------------------------- without Manager: the shipped snapshot


@pytest.fixture(scope="module")
def snapshot_index() -> PackIndex:
    index = PackIndex.load(None, search_package=False)
    assert index.from_snapshot and index.source == str(nodepacks.SNAPSHOT_FILE)
    return index


def test_without_manager_the_snapshot_names_the_ipadapter_pack_with_both_install_ways(snapshot_index):
    [m] = match_missing_nodes([make_ref("IPAdapterModelLoader")], snapshot_index, RUNNING)
    assert (m.matched_by, m.id, m.title) == ("exact", "cubiq/ComfyUI_IPAdapter_plus", "ComfyUI_IPAdapter_plus")
    assert m.repository == "https://github.com/cubiq/ComfyUI_IPAdapter_plus"
    assert m.install_git == ["git clone https://github.com/cubiq/ComfyUI_IPAdapter_plus "
                             "custom_nodes/ComfyUI_IPAdapter_plus",
                             "python -m pip install -r custom_nodes/ComfyUI_IPAdapter_plus/requirements.txt",
                             "python -m pip install insightface"]
    assert m.install_cli == ["comfy node install comfyui_ipadapter_plus"]
    assert m.manager_installable and m.workflow_says is None


def test_snapshot_holds_what_the_installed_manager_map_says(snapshot_index, real):
    assert snapshot_index.data.by_type == real.data.by_type
    assert snapshot_index.data.core_types == real.data.core_types
    assert [k for _, k in snapshot_index.data.patterns] == [k for _, k in real.data.patterns]
    assert snapshot_index.data.packs == real.data.packs  # titles, list ids, files, pip, stars, preemptions


def test_an_installed_manager_wins_over_the_snapshot(tmp_path):
    index = local_index(tmp_path, {"https://github.com/me/Fork": {"nodes": ["IPAdapterModelLoader"]}})
    assert not index.from_snapshot
    [m] = match_missing_nodes([make_ref("IPAdapterModelLoader")], index, RUNNING)
    assert m.id == "me/Fork"


def test_the_lists_manager_downloaded_into_its_cache_are_read(tmp_path):
    root = tmp_path / "ComfyUI"
    cache = root / "user" / "__manager" / "cache"
    make_manager_dir(cache, {"https://github.com/me/Cached": {"nodes": ["CachedNode"]}},
                     listing=[{"title": "Cached Pack", "reference": "https://github.com/me/Cached", "id": "cached"}])
    for name in ("extension-node-map.json", "custom-node-list.json", "github-stats.json"):
        (cache / name).rename(cache / f"1514988643_{name}")  # Manager names them "<channel hash>_<file>"
    index = PackIndex.load(root, search_package=False, snapshot=None)
    assert index.source == str(cache / "1514988643_extension-node-map.json")
    [m] = match_missing_nodes([make_ref("CachedNode")], index, RUNNING)
    assert (m.id, m.title) == ("me/Cached", "Cached Pack")


# ---------------------------------------------------------------- a workflow's aux_id vs Manager's curated map


def test_aux_id_naming_another_repo_never_outranks_the_maps_pack_for_the_type(real):
    [m] = match_missing_nodes([make_ref("IPAdapterModelLoader", aux_id="attacker/ComfyUI_IPAdapter_plus")],
                              real, RUNNING)
    assert (m.matched_by, m.id) == ("exact", "cubiq/ComfyUI_IPAdapter_plus")
    assert m.manager_installable
    assert m.workflow_says == "repository https://github.com/attacker/ComfyUI_IPAdapter_plus"
    assert "which Manager's map does not list for this type" in m.reason
    assert all("attacker" not in c for c in m.install_git + m.install_cli + m.install)


def test_aux_id_repository_no_list_knows_is_only_what_the_workflow_says(real):
    [m] = match_missing_nodes([make_ref("TotallyNewNode", aux_id="someone/comfyui-new-pack")], real, RUNNING)
    assert (m.matched_by, m.id, m.repository) == ("unknown", None, None)
    assert m.workflow_says == "repository https://github.com/someone/comfyui-new-pack" and not m.manager_installable
    assert m.install == m.install_git == m.install_cli == []  # no `git clone` of anyone's code to copy-paste
    [entry] = to_jsonable(missing_nodes_json([make_ref("TotallyNewNode", aux_id="someone/comfyui-new-pack")], [m]))
    assert (entry["workflow_says"], entry["manager_installable"], entry["install_git"]) == (
        "repository https://github.com/someone/comfyui-new-pack", False, [])
    report = packs_markdown([m])
    assert "The workflow says: repository https://github.com/someone/comfyui-new-pack" in report
    assert "git clone" not in report


@pytest.mark.parametrize("claim", [{"cnr_id": "comfyui-impact-pack-evil"},
                                   {"aux_id": "attacker/ComfyUI-Impact-Pack"},
                                   {"cnr_id": "comfyui-impact-pack-evil", "aux_id": "attacker/ComfyUI-Impact-Pack"}])
def test_a_spoofed_pack_id_never_outranks_the_map_nor_reaches_an_install_line(real, claim):
    [m] = match_missing_nodes([make_ref("ImpactWildcardProcessor", **claim)], real, RUNNING)
    assert (m.matched_by, m.repository) == ("exact", "https://github.com/ltdrdata/ComfyUI-Impact-Pack")
    assert m.cnr_id is None and "evil" not in (m.id or "") and "attacker" not in (m.id or "")
    assert m.workflow_says and ("evil" in m.workflow_says or "attacker" in m.workflow_says)
    assert all("evil" not in c and "attacker" not in c for c in m.install + m.install_git + m.install_cli)


def test_a_registry_id_the_map_lists_for_the_type_is_confirmed(real):
    [m] = match_missing_nodes([make_ref("ImpactWildcardProcessor", cnr_id="comfyui-impact-pack")], real, RUNNING)
    assert (m.matched_by, m.id, m.cnr_id) == ("cnr_id", "comfyui-impact-pack", "comfyui-impact-pack")
    assert m.workflow_says is None and m.manager_installable


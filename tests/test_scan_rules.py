"""What counts as missing, present, present elsewhere or unsafe, and which folder a file belongs in."""

from __future__ import annotations

import pytest

from fixer.errors import UnsafePath
from fixer.host.host import StandaloneHost
from fixer.read.names import confine
from fixer.read.scan import scan_workflow_data
from tests.conftest import make_comfy_root, make_workflow, node


def states(report):
    return {s.ref.name: s.state for s in report.models}


def test_windows_backslash_name_matches_local_file(tmp_path, host_for):
    root = make_comfy_root(tmp_path, {"models/checkpoints/SDXL/foo.safetensors": ""})
    wf = make_workflow([node(1, "CheckpointLoaderSimple", ["SDXL\\foo.safetensors"])])
    assert states(scan_workflow_data(wf, "wf", host_for(root))) == {"SDXL/foo.safetensors": "present"}


@pytest.mark.parametrize("value", ["taesd", "taesdxl", "pixel_space", "None", "", "[None]", None, 3.5])
def test_values_that_are_not_files_are_never_missing(comfy_root, host_for, value):
    wf = make_workflow([node(1, "VAELoader", [value])])
    assert scan_workflow_data(wf, "wf", host_for(comfy_root)).models == []


@pytest.mark.parametrize("name", ["../../etc/passwd.safetensors", "/abs/x.safetensors", "C:\\models\\x.safetensors",
                                  "sub/../../x.ckpt", "a\x00b.safetensors", "..\\x.pt"])
def test_names_that_escape_their_folder_are_reported_unsafe(comfy_root, host_for, name):
    report = scan_workflow_data(make_workflow([node(1, "LoraLoader", [name, 1, 1])]), "wf", host_for(comfy_root))
    (s,) = report.models
    assert s.state == "unsafe" and s.ref.unsafe_reason


def test_confine_refuses_a_symlink_that_leads_outside(tmp_path):
    root = make_comfy_root(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "models" / "loras" / "link").symlink_to(outside)
    with pytest.raises(UnsafePath):
        confine(root / "models" / "loras", "link/x.safetensors")
    assert confine(root / "models" / "loras",
                   "sub/x.safetensors") == root / "models" / "loras" / "sub" / "x.safetensors"


@pytest.mark.parametrize("where", ["models/checkpoints/x.safetensors",       # wrong folder
                                   "models/loras/other/x.safetensors",       # other subfolder
                                   "models/loras/X.SAFETENSORS"])            # other case
def test_a_file_in_the_wrong_place_is_present_elsewhere_not_missing(tmp_path, host_for, where):
    root = make_comfy_root(tmp_path, {where: ""})
    report = scan_workflow_data(make_workflow([node(1, "LoraLoader", ["x.safetensors", 1, 1])]), "wf", host_for(root))
    (s,) = report.models
    assert s.state == "elsewhere"
    assert [f.path for f in s.elsewhere] == [str(root / where)]


def test_extra_model_paths_yaml_is_honoured(tmp_path, host_for):
    root = make_comfy_root(tmp_path)
    shared = tmp_path / "shared_models"
    (shared / "Lora").mkdir(parents=True)
    (shared / "Lora" / "shared.safetensors").write_bytes(b"")
    (root / "extra_model_paths.yaml").write_text(
        f"a111:\n  base_path: {shared}\n  loras: |\n    Lora\n  is_default: true\n")
    host = host_for(root)
    assert host.folders()["loras"][0] == str(shared / "Lora")
    report = scan_workflow_data(make_workflow([node(1, "LoraLoader", ["shared.safetensors", 1, 1])]), "wf", host)
    assert states(report) == {"shared.safetensors": "present"}


def test_legacy_unet_and_clip_directories_are_the_canonical_folders(tmp_path, host_for):
    root = make_comfy_root(tmp_path, {"models/unet/u.safetensors": "", "models/clip/c.safetensors": ""})
    wf = make_workflow([node(1, "UNETLoader", ["u.safetensors", "default"]),
                        node(2, "CLIPLoader", ["c.safetensors", "flux", "default"])])
    report = scan_workflow_data(wf, "wf", host_for(root))
    assert {(s.ref.folder, s.state) for s in report.models} == {("diffusion_models", "present"),
                                                              ("text_encoders", "present")}


def test_custom_node_folder_comes_from_its_live_combo_options(tmp_path, host_for):
    root = make_comfy_root(tmp_path, {"models/ipadapter/ip-adapter_sd15.safetensors": ""})
    defs = {"MyAdapterLoader": {"input": {"required": {"adapter_file": [["ip-adapter_sd15.safetensors"], {}]}},
                                "input_order": {"required": ["adapter_file"]}}}
    wf = make_workflow([node(1, "MyAdapterLoader", ["ip-adapter_plus.safetensors"])])
    (s,) = scan_workflow_data(wf, "wf", host_for(root, defs)).models
    assert (s.ref.folder, s.ref.folder_source, s.state) == ("ipadapter", "node_def", "missing")


def test_custom_node_folder_from_workflow_hint_beats_keywords(comfy_root, host_for):
    wf = make_workflow([node(1, "SomeLoader", ["thing.safetensors"],
                             models=[{"name": "thing.safetensors", "url": "https://h/x", "directory": "loras"}])])
    (s,) = scan_workflow_data(wf, "wf", host_for(comfy_root)).models
    assert (s.ref.folder, s.ref.folder_source) == ("loras", "hint")


def test_custom_node_folder_from_keywords_then_unknown(comfy_root, host_for):
    wf = make_workflow([node(1, "FancyLoraStack", ["a.safetensors"]), node(2, "Mystery", ["b.safetensors"])])
    got = {s.ref.name: (s.ref.folder,
                        s.ref.folder_source) for s in scan_workflow_data(wf, "wf", host_for(comfy_root)).models}
    assert got == {"a.safetensors": ("loras", "keyword"), "b.safetensors": (None, "unknown")}


def test_note_urls_ending_in_the_file_name_become_hints(comfy_root, host_for):
    url = "https://huggingface.co/org/repo/resolve/main/split_files/vae/wan_vae.safetensors"
    wf = make_workflow([node(1, "Note", [f"Get the VAE here: {url}."]), node(2, "VAELoader", ["wan_vae.safetensors"])])
    (s,) = scan_workflow_data(wf, "wf", host_for(comfy_root)).models
    assert s.ref.hint("url") == url


def test_missing_node_types_skip_frontend_only_types(comfy_root, host_for, object_info):
    wf = make_workflow([node(1, "Reroute"), node(2, "Note", ["hi"]), node(3, "MarkdownNote", ["x"]),
                        node(4, "PrimitiveNode"), node(5, "KSampler"), node(6, "ImpactWildcardProcessor",
                                                                           cnr_id="comfyui-impact-pack")])
    report = scan_workflow_data(wf, "wf", host_for(comfy_root, object_info))
    assert [(n.node_type, n.cnr_id) for n in report.missing_nodes] == [("ImpactWildcardProcessor",
                                                                        "comfyui-impact-pack")]


def test_primitive_value_nodes_are_server_nodes_an_older_comfyui_lacks(comfy_root, host_for, object_info):
    """Fails on 3ac7c4e: PrimitiveInt & co. were taken for frontend-only nodes (like PrimitiveNode), so a ComfyUI
    without them (older than comfy_extras/nodes_primitive.py) was never told they are missing."""
    wf = make_workflow([node(1, "PrimitiveNode"), node(2, "PrimitiveInt", [7]), node(3, "PrimitiveString", ["x"])])
    assert scan_workflow_data(wf, "wf", host_for(comfy_root, object_info)).missing_nodes == []  # 0.3.64 has them
    older = {k: v for k, v in object_info.items() if not k.startswith("Primitive")}
    missing = scan_workflow_data(wf, "wf", host_for(comfy_root, older)).missing_nodes
    assert [n.node_type for n in missing] == ["PrimitiveInt", "PrimitiveString"]


def test_without_node_definitions_node_checking_is_skipped(comfy_root, host_for):
    report = scan_workflow_data(make_workflow([node(1, "Anything")]), "wf", host_for(comfy_root))
    assert report.node_check == "skipped" and report.missing_nodes == []


def test_same_model_in_two_workflows_is_one_entry_with_both_usages(tmp_path, host_for):
    from fixer.read.scan import Scanner

    root = make_comfy_root(tmp_path)
    scanner = Scanner(host_for(root))
    scanner.add_data(make_workflow([node(1, "VAELoader", ["v.safetensors"])]), "a.json")
    scanner.add_data(make_workflow([node(9, "VAELoader", ["v.safetensors"])]), "b.json")
    (s,) = scanner.finish().models
    assert [(u.workflow, u.node_id) for u in s.ref.usages] == [("a.json", "1"), ("b.json", "9")]


def test_custom_pack_folders_under_models_are_registered_for_the_cli(tmp_path):
    root = make_comfy_root(tmp_path, {"models/ultralytics/bbox/face_yolov8m.pt": ""})
    assert StandaloneHost.from_root(root).folders()["ultralytics"] == [str(root / "models" / "ultralytics")]


@pytest.mark.parametrize("name", ["evil\u202egnp.safetensors", "a\u2215b.safetensors", "zero\u200bwidth.safetensors"])
def test_names_that_hide_their_real_shape_are_unsafe(comfy_root, host_for, name):
    report = scan_workflow_data(make_workflow([node(1, "LoraLoader", [name, 1, 1])]), "wf", host_for(comfy_root))
    assert [s.state for s in report.models] == ["unsafe"]


def test_inside_comfyui_only_the_workflows_node_types_are_asked_for_their_inputs(comfy_root):
    from types import SimpleNamespace

    from fixer.host.host import FolderPathsHost

    asked: list[str] = []

    def node_class(name: str, inputs: dict):
        def input_types():
            asked.append(name)
            return inputs
        return SimpleNamespace(INPUT_TYPES=input_types)

    classes = {"VAELoader": node_class("VAELoader", {"required": {"vae_name": [[], {}]}}),
               "HeavyPackNode": node_class("HeavyPackNode", {"required": {}}),
               "BrokenNode": SimpleNamespace(INPUT_TYPES=lambda: 1 / 0)}
    folder_paths = SimpleNamespace(folder_names_and_paths={"vae": ([str(comfy_root / "models" / "vae")],
                                                                   {".safetensors"})})
    host = FolderPathsHost(folder_paths, node_classes=lambda: classes)
    wf = make_workflow([node(1, "VAELoader", ["v.safetensors"]), node(2, "BrokenNode", ["x.safetensors"])])
    report = scan_workflow_data(wf, "wf", host)
    assert [s.ref.name for s in report.by_state("missing")] == ["v.safetensors", "x.safetensors"]
    assert "HeavyPackNode" not in asked and report.missing_nodes == []

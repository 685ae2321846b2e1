"""One model named in several places is one reference that keeps every place it is used."""

from __future__ import annotations

from fixer.host.host import StandaloneHost
from fixer.read.scan import scan_workflow_data
from tests.conftest import make_workflow, node


def test_usages_with_an_unknown_folder_join_the_same_name_with_a_known_folder(comfy_root):
    wf = make_workflow([node(1, "CheckpointLoaderSimple", ["shared.safetensors"]),
                        node(2, "SomeUnknownPackNode", ["shared.safetensors"])])
    report = scan_workflow_data(wf, "wf.json", StandaloneHost.from_root(comfy_root))
    (status,) = report.models
    assert status.ref.folder == "checkpoints"
    assert sorted((u.node_id, u.node_type) for u in status.ref.usages) == [
        ("1", "CheckpointLoaderSimple"), ("2", "SomeUnknownPackNode")]

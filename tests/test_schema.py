"""The JSON Schema derived from fixer/shapes.py: committed up to date, met by the files a real run writes
and the answers the page gets, and naming every field the page reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fixer.app.report import write_scan_outputs
from fixer.models import TransferRequest, to_jsonable
from fixer.schema import json_schema, schema_text
from fixer.shapes import PHASES
from tests.conftest import ROOT, make_workflow, node
from tests.test_service_review import LORA, service, wait_for

SCHEMA = json_schema()
COMMITTED = ROOT / "docs" / "schema.json"


def check(document: str, value: Any) -> None:
    """`value` (JSON types) is a valid `document` of the schema."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    schema = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], **SCHEMA["properties"][document]}
    jsonschema.Draft202012Validator(schema).validate(value)


def test_the_committed_schema_is_the_one_the_shapes_give():
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), "run: python -m fixer.schema > docs/schema.json"


def test_phases_and_row_states_are_literals_with_review():
    status_phase = SCHEMA["$defs"]["StatusDoc"]["properties"]["phase"]["enum"]
    assert status_phase == list(PHASES) and "review" in status_phase
    assert "user" in SCHEMA["$defs"]["CandidateEntry"]["properties"]["source"]["enum"]
    assert "enum" in SCHEMA["$defs"]["Row"]["properties"]["state"]


def test_a_shape_change_is_caught(tmp_path):
    with pytest.raises(jsonschema.ValidationError):
        check("error", {"code": "disk_full", "message": "x", "retry_after": None})  # every field is written
    with pytest.raises(jsonschema.ValidationError):
        check("status.json", {"timestamp": "t", "phase": "reviewing", "progress": {"current": 0, "total": 0,
              "percent": 0.0}, "data": {}, "errors": []})


async def test_what_a_real_fix_writes_and_serves_meets_the_schema(comfy_root, tmp_path, upstream):
    """status.json in review and at the end, resolutions.json, missing_models.json, the page's scan and the
    done event of a fix with one file found, one not found and one missing node type."""
    state = tmp_path / "state"
    svc = service(comfy_root, state)
    events: list[tuple[str, dict]] = []
    svc.on_event(lambda name, payload: events.append((name, payload)))
    workflow = make_workflow([node(1, "LoraLoader", [LORA, 1.0, 1.0]),
                              node(2, "LoraLoader", ["nowhere_to_be_found_q7.safetensors", 1.0, 1.0]),
                              node(3, "NoSuchCustomNode", [])])
    scan = await svc.scan(workflow, "wf.json")
    check("scan", scan)
    report, _ = svc.app.scan_workflow(workflow, "wf.json")
    write_scan_outputs(report, state)
    check("output/missing_models.json", json.loads((state / "output" / "missing_models.json").read_text()))
    check("output/missing_nodes.json", json.loads((state / "output" / "missing_nodes.json").read_text()))

    await svc.start_fix(workflow, "wf.json", review=True)
    held = await wait_for(svc, lambda s: s["phase"] == "review")
    assert held["data"]["plan"]["files"]
    check("comfyfixer.status", held)
    check("status.json", json.loads((state / "status.json").read_text()))
    svc.approve()
    await svc._task
    final = json.loads((state / "status.json").read_text())
    assert "index" not in final
    assert {r["state"] for r in final["data"]["models"]} == {"done", "not_found"}
    check("status.json", final)
    check("output/resolutions.json", json.loads((state / "output" / "resolutions.json").read_text()))
    check("output/downloaded_models.json", json.loads((state / "output" / "downloaded_models.json").read_text()))
    check("output/verification_report.json",
          json.loads((state / "output" / "verification_report.json").read_text()))
    done = [payload for name, payload in events if name == "comfyfixer.done"]
    assert done
    check("comfyfixer.done", done[-1])
    for name, payload in events:
        if name == "comfyfixer.status":
            check("comfyfixer.status", payload)  # status.json's fields and the background index beside them
    with pytest.raises(jsonschema.ValidationError):
        check("status.json", held)  # the index is the panel's, never in status.json


async def test_the_clis_download_status_meets_the_schema(upstream, tmp_path):
    from fixer.transfer import download_one
    from fixer.transfer.progress import snapshot
    from tests.test_transfer_engine import FAST, cfg, tiny_hf_url

    t = await download_one(TransferRequest(url=tiny_hf_url(upstream), folder="loras", filename="x.gguf"),
                           str(tmp_path), cfg(), {}, retry=FAST)
    bad = await download_one(TransferRequest(url=tiny_hf_url(upstream, "nobody/nothing"), folder="loras",
                                             filename="y.gguf"), str(tmp_path), cfg(), {}, retry=FAST)
    assert (t.state, bad.state) == ("done", "failed")
    check("downloads", to_jsonable(snapshot([t, bad])))


def test_a_refused_download_and_the_error_list_meet_the_schema(tmp_path):
    from fixer.errors import NotEnoughSpace
    from fixer.state import StatusDocument

    doc = StatusDocument(tmp_path / "status.json")
    doc.add_error(NotEnoughSpace(10, 1, "/m").info())
    check("status.json", json.loads((tmp_path / "status.json").read_text()))
    check("error", to_jsonable(NotEnoughSpace(10, 1, "/m").info()))


# --- the fields the page reads ---------------------------------------------------------------------------
# Which shape each variable holds, per file of the page (a name means the same thing throughout its file).
PAGE_READS: dict[str, dict[str, str]] = {
    "web/lib/panel.js": {"row": "Row", "r": "Row", "model": "ModelEntry", "m": "ModelEntry", "pack": "PackMatch",
                         "plan": "PlanDoc", "overall": "Overall", "where": "LocalFile", "u": "Usage",
                         "data": "RunData", "report": "ScanResult", "n": "MissingNode", "s": "ScanCounts",
                         "index": "IndexProgress"},
    "web/lib/words.js": {"row": "Row", "error": "ErrorInfo", "e": "ErrorInfo", "index": "IndexProgress"},
    "web/comfyfixer.js": {"model": "ModelEntry", "m": "ModelEntry", "f": "DoneFile", "r": "Row",
                          "report": "ScanResult", "s": "ScanCounts", "lock": "LockFile", "dupes": "DuplicatesReport"},
}
JS_OWN = {"length", "map", "filter", "join", "slice", "some", "find", "includes", "has", "get", "set"}


def page_reads(path: Path, names: dict[str, str]) -> dict[str, set[str]]:
    text = re.sub(r"//[^\n]*", "", path.read_text(encoding="utf-8"))
    reads: dict[str, set[str]] = {}
    for var, shape in names.items():
        for prop in re.findall(rf"(?<![\w.$]){re.escape(var)}\??\.([A-Za-z_][A-Za-z_0-9]*)", text):
            if prop not in JS_OWN:
                reads.setdefault(shape, set()).add(prop)
    return reads


@pytest.mark.parametrize("page", sorted(PAGE_READS))
def test_every_field_the_page_reads_is_in_the_schema(page):
    """Fails on a33b692: the panel read `m.name ?? m.filename`, `row.details`, `pack.manager_available` and
    `pack.models_downloaded_by_pack` (fields no shape has, or two names for one)."""
    reads = page_reads(ROOT / page, PAGE_READS[page])
    assert reads
    for shape, props in reads.items():
        known = set(SCHEMA["$defs"][shape]["properties"])
        assert props <= known, f"{page} reads {sorted(props - known)} of {shape}, which has {sorted(known)}"


def test_the_serializer_refuses_what_is_not_json():
    """A value no shape describes (a path, an object) is refused where it is serialized, not passed on."""
    from fixer.state import json_text

    assert to_jsonable({"n": [1, (2.5, None)], 3: {"x"}}) == {"n": [1, [2.5, None]], "3": ["x"]}
    for value in (Path("models/x.safetensors"), object(), {"nested": [b"bytes"]}):
        with pytest.raises(TypeError):
            to_jsonable(value)
    with pytest.raises(TypeError, match="is not a JSON value"):
        json_text({"path": Path("x")})

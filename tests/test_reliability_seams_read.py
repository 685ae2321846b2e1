"""Reading what a stranger sends costs work in proportion to it: nested subgraphs, AIR floods, big image metadata.

Nested subgraphs are analysed once per definition, never once per chain of instances; AIR URNs, prompt text
and clue pairing are read in linear time under a per-document CPU budget; big bodies wait in a line of
bounded length (or are refused at once, 503 + Retry-After) and each scan in the worker has a deadline; a
WebP's EXIF is read alone and refused unread beyond its bound.

The hostile corpus is tests/hostile_corpus.py (benchmarks/hostile_bench.py prints time and peak memory of
each case). The resource bounds below are generous multiples of what the code needs (CPU seconds, not wall
time, so a busy machine does not fail them): they catch quadratic work, not a slow day.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

import server_routes as sr
from fixer.app.service import FixerService
from fixer.comfy.scan_worker import ScanWorker
from fixer.host.host import StandaloneHost
from fixer.read.clues import MAX_CLUES, air_hints
from fixer.read.readers import read_documents
from fixer.read.scan import scan_workflow_data
from tests.conftest import PAGE_HEADERS, ROOT, make_workflow, node
from tests.hostile_corpus import (
    MiB,
    air_flood,
    air_urns,
    clue_flood,
    exif_webp,
    nested_subgraphs,
    prompt_flood,
    weight_flood,
    write_exif_webp,
)

JSON = {"Content-Type": "application/json", **PAGE_HEADERS}
CPU_SECONDS = 10  # per hostile body in a child process; each needs well under 1 s
EXTRA_MEMORY = 256 * MiB  # beyond what the same process needs for a one-node workflow
IMAGE_MEMORY = 2**30


def usages_of(report, name):
    (status,) = [s for s in report.models if s.ref.name == name]
    return status.ref.usages


# ------------------------------------------------------------------ 1. nested subgraphs


def test_a_subgraph_definition_is_read_once_and_counted_in_every_instance(comfy_root, host_for):
    report = scan_workflow_data(nested_subgraphs(levels=5, per_level=10), "nested.json", host_for(comfy_root, {}))
    (usage,) = usages_of(report, "nested_lora.safetensors")  # one usage, not one per chain of instances
    assert usage.instances == 10**5
    assert usage.subgraph_path == ("Level 1#1", "Level 2#1", "Level 3#1", "Level 4#1", "Level 5#1")
    assert not usage.optional
    (node_usage,) = next(n for n in report.missing_nodes if n.node_type == "NestedNodeNobodyHas").usages
    assert node_usage.instances == 10**5


def test_a_subgraph_placed_only_muted_is_optional_and_one_placed_once_unmuted_is_required(comfy_root, host_for):
    def sg(sg_id, file):
        return {"id": sg_id, "name": sg_id, "nodes": [node(1, "LoraLoader", [file, 1, 1])]}

    outer = {"id": "outer", "name": "Outer", "nodes": [node(1, "both", mode=4), node(2, "muted-only", mode=2)]}
    wf = make_workflow([node(1, "outer"), node(2, "both"), node(3, "muted-only", mode=4)],
                       definitions={"subgraphs": [outer, sg("both", "both.safetensors"),
                                                  sg("muted-only", "muted.safetensors")]})
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    (both,) = usages_of(report, "both.safetensors")
    (muted,) = usages_of(report, "muted.safetensors")
    assert (both.optional, both.instances, both.subgraph_path) == (False, 2, ("both#2",))
    assert (muted.optional, muted.instances) == (True, 2)


def test_subgraphs_that_place_each_other_are_counted_without_looping(comfy_root, host_for):
    a = {"id": "a", "name": "A", "nodes": [node(1, "b"), node(2, "VAELoader", ["a.safetensors"])]}
    b = {"id": "b", "name": "B", "nodes": [node(1, "a"), node(2, "b"), node(3, "VAELoader", ["b.safetensors"])]}
    wf = make_workflow([node(1, "a"), node(2, "a")], definitions={"subgraphs": [a, b]})
    report = scan_workflow_data(wf, "wf", host_for(comfy_root))
    assert [u.instances for u in usages_of(report, "a.safetensors")] == [2]
    assert [(u.instances, u.subgraph_path) for u in usages_of(report, "b.safetensors")] == [(2, ("A#1", "B#1"))]


def test_a_chain_deeper_than_any_frontend_nests_is_named_by_its_definition(comfy_root, host_for):
    defs = [{"id": f"d{i}", "name": f"D{i}", "nodes": [node(1, f"d{i + 1}")]} for i in range(200)]
    defs.append({"id": "d200", "name": "Bottom", "nodes": [node(1, "VAELoader", ["deep.safetensors"])]})
    report = scan_workflow_data(make_workflow([node(1, "d0")], definitions={"subgraphs": defs}), "wf",
                                host_for(comfy_root))
    (usage,) = usages_of(report, "deep.safetensors")
    assert usage.subgraph_path == ("Bottom",) and usage.instances == 1


def test_a_definition_never_placed_is_still_read_once(comfy_root, host_for):
    lonely = {"id": "lonely", "name": "Lonely", "nodes": [node(1, "VAELoader", ["lonely.safetensors"])]}
    report = scan_workflow_data(make_workflow([], definitions={"subgraphs": [lonely]}), "wf", host_for(comfy_root))
    (usage,) = usages_of(report, "lonely.safetensors")
    assert (usage.subgraph_path, usage.instances) == (("Lonely",), 0)


# ------------------------------------------------------------------ 5. linear time, CPU budget


def test_air_hints_keep_the_first_distinct_urns_in_order():
    urns = air_urns(MAX_CLUES + 50)
    text = " ".join(urns[:3] + urns[:3] + urns[3:])  # repeats are kept once
    hints = air_hints({"extra": {"airs": text}})
    assert [h.url for h in hints] == urns[:MAX_CLUES]
    assert [h.kind for h in hints[:4]] == ["lora", "checkpoint", "embedding", "vae"]


class CountingFolders(dict):
    """KIND_FOLDERS, counting how often a clue's kind is looked up: the pairing's work."""

    calls = 0

    def get(self, key, default=None):
        CountingFolders.calls += 1
        return super().get(key, default)


def test_clue_pairing_is_linear_in_references_and_clues(monkeypatch):
    from fixer.models import ModelRef
    from fixer.read import clues

    monkeypatch.setattr(clues, "KIND_FOLDERS", CountingFolders(clues.KIND_FOLDERS))
    hints = air_hints(" ".join(u.replace(":checkpoint:", ":lora:") for u in air_urns(MAX_CLUES)))
    refs = [ModelRef(f"r{i}.safetensors", "loras" if i % 2 else "vae") for i in range(5000)]
    clues.attach(refs, {}, hints)
    assert CountingFolders.calls <= 4 * (len(refs) + len(hints))  # was references x clues x 2: 2,000,000
    loras = [h for h in hints if h.kind == "lora"][: clues.MAX_PAIRED]
    assert refs[1].hints == loras and refs[0].hints == [h for h in hints if h.kind == "vae"][: clues.MAX_PAIRED]


def test_a_scan_past_its_cpu_budget_is_refused_naming_the_workflow(comfy_root, host_for, monkeypatch):
    from fixer.read import budget as budget_module

    monkeypatch.setattr(budget_module, "SCAN_CPU_SECONDS", 0.0)
    report = scan_workflow_data(clue_flood(2000), "slow.json", host_for(comfy_root))
    (problem,) = report.problems
    assert problem.path == "slow.json" and "CPU time" in problem.error and report.models == []


def test_a_workflow_naming_more_models_than_any_workflow_is_refused_by_name(comfy_root, host_for):
    from fixer.read.extract import MAX_MODELS

    report = scan_workflow_data(clue_flood(MAX_MODELS + 100), "flood.json", host_for(comfy_root))
    (problem,) = report.problems
    assert problem.path == "flood.json" and f"more than {MAX_MODELS} different model files" in problem.error
    assert report.models == []
    report = scan_workflow_data(clue_flood(MAX_MODELS), "big.json", host_for(comfy_root))
    assert report.problems == [] and len(report.models) == MAX_MODELS  # the bound itself is still read


def _scan_in_child(path: Path, root: Path, state: Path) -> tuple[int, str, int]:
    """`python -m fixer --scan` of one file under a CPU-time limit: exit code, stderr, peak RSS in bytes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    limit = lambda: resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))  # noqa: E731
    child = subprocess.Popen([sys.executable, "-m", "fixer", "--scan", "--workflow", str(path), "--comfyui-root",
                              str(root), "--state-dir", str(state)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=limit)
    err = child.stderr.read() if child.stderr else b""
    _, status, usage = os.wait4(child.pid, 0)
    return os.waitstatus_to_exitcode(status), err.decode("utf-8", "replace"), usage.ru_maxrss * 1024


HOSTILE_BODIES = {"nested": nested_subgraphs, "air": lambda: air_flood(6 * MiB), "prompt": prompt_flood,
                  "weight": weight_flood}


@pytest.fixture(scope="module")
def one_node_rss(tmp_path_factory) -> int:
    tmp = tmp_path_factory.mktemp("baseline")
    (tmp / "one.json").write_text(json.dumps(make_workflow([node(1, "LoraLoader", ["a.safetensors", 1, 1])])))
    code, err, rss = _scan_in_child(tmp / "one.json", _root(tmp), tmp / "state")
    assert code == 1, err
    return rss


def _root(tmp: Path) -> Path:
    from tests.conftest import make_comfy_root

    return make_comfy_root(tmp)


@pytest.mark.parametrize("case", HOSTILE_BODIES)
def test_a_hostile_body_is_scanned_by_the_cli_in_bounded_cpu_and_memory(tmp_path, case, one_node_rss):
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(HOSTILE_BODIES[case]()))
    code, err, rss = _scan_in_child(path, _root(tmp_path), tmp_path / "state")
    assert code == 1, err[-2000:]  # 1: models are missing; killed for CPU time (-9/-24) or a traceback is not
    assert "Traceback" not in err
    assert rss - one_node_rss < EXTRA_MEMORY


class _Worker(ScanWorker):
    def peak_rss(self) -> int:
        assert self._proc is not None
        for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


def _padded(wf: dict, size: int = sr.INLINE_DECODE_BYTES + 1000) -> dict:
    """The workflow made bigger than the inline limit with a note, so it goes to the worker."""
    wf["nodes"].append(node(99_999, "Note", ["x" * size]))
    return wf


async def _client(aiohttp_client, svc, worker, **kw):
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: svc, scan_worker=worker, worker_scan_bytes=sr.INLINE_DECODE_BYTES, **kw)
    app = web.Application()
    app.add_routes(routes)
    return await aiohttp_client(app)


@pytest.fixture
def service(comfy_root, tmp_path):
    return FixerService(StandaloneHost.from_root(comfy_root), tmp_path / "state", comfyui_root=comfy_root)


@pytest.mark.parametrize("case", ["nested", "air", "prompt"])
async def test_a_hostile_body_is_scanned_by_the_worker_in_bounded_time_and_memory(aiohttp_client, service, case):
    worker = _Worker(deadline=20)  # 503 past it: the bound this test holds the scan to
    try:
        client = await _client(aiohttp_client, service, worker)
        small = json.dumps({"workflow": _padded(make_workflow([node(1, "LoraLoader", ["a.safetensors", 1, 1])]))})
        assert (await client.post("/comfyfixer/scan", data=small, headers=JSON)).status == 200
        before = worker.peak_rss()
        r = await client.post("/comfyfixer/scan", data=json.dumps({"workflow": _padded(HOSTILE_BODIES[case]())}),
                              headers=JSON)
        assert r.status == 200, await r.text()
        answer = await r.json()
        assert worker.peak_rss() - before < EXTRA_MEMORY
    finally:
        worker.close()
    if case == "nested":
        (row,) = [m for m in answer["models"] if m["filename"] == "nested_lora.safetensors"]
        assert [u["instances"] for u in row["nodes"]] == [10**6]


class SlowDefinitions:
    """A host whose node definitions take `delay` seconds each to compute (a pack's slow INPUT_TYPES)."""

    def __init__(self, host, delay: float):
        self._host, self._delay = host, delay

    def __getattr__(self, name):
        return getattr(self._host, name)

    def node_defs(self):
        defs, delay = self._host.node_defs(), self._delay

        class Slow(dict):
            def __getitem__(self, key):
                time.sleep(delay)
                return defs[key]

        return Slow(defs)


async def test_a_scan_past_the_worker_deadline_is_stopped_and_answered_503(aiohttp_client, comfy_root, tmp_path,
                                                                          object_info):
    host = StandaloneHost.from_root(comfy_root).with_object_info(
        {**object_info, "SlowPackLoader": {"input": {"required": {"m": [["a.safetensors"], {}]}}}}, "host")
    svc = FixerService(SlowDefinitions(host, 3.0), tmp_path / "state", comfyui_root=comfy_root)
    worker = ScanWorker(deadline=1.0)
    try:
        client = await _client(aiohttp_client, svc, worker)
        body = json.dumps({"workflow": _padded(make_workflow([node(1, "SlowPackLoader", ["my.safetensors"])]))})
        r = await client.post("/comfyfixer/scan", data=body, headers=JSON)
        assert r.status == 503
        answer = await r.json()
        assert answer["code"] == "service_busy" and "longer than 1 s" in answer["error"]
        worker.deadline = 60.0
        svc.host._delay = 0.0
        r = await client.post("/comfyfixer/scan", data=body, headers=JSON)
        assert r.status == 200, await r.text()  # a new worker serves the next scan
    finally:
        worker.close()


class HeldWorker:
    """A scan worker that holds every scan until released: big bodies pile up behind the first."""

    def __init__(self):
        self.release = asyncio.Event()
        self.started = 0

    async def scan(self, raw: bytes, service) -> bytes:
        self.started += 1
        await self.release.wait()
        return b'{"models": []}'


async def test_big_bodies_beyond_the_line_are_refused_at_once_with_503_and_retry_after(aiohttp_client, service):
    worker = HeldWorker()
    client = await _client(aiohttp_client, service, worker)
    body = json.dumps({"workflow": _padded(make_workflow([]))})
    served = [asyncio.ensure_future(client.post("/comfyfixer/scan", data=body, headers=JSON))
              for _ in range(1 + sr.MAX_WAITING_BIG_BODIES)]
    for _ in range(200):  # the first is being scanned, the others wait in line
        await asyncio.sleep(0.01)
        if worker.started == 1:
            break
    t = time.monotonic()
    r = await asyncio.wait_for(client.post("/comfyfixer/scan", data=body, headers=JSON), 10)
    assert time.monotonic() - t < 5  # answered at once, not after the line
    assert r.status == 503 and r.headers["Retry-After"].isdigit()
    answer = await r.json()
    assert answer["code"] == "service_busy" and answer["retry_after"] == int(r.headers["Retry-After"])
    assert "try again" in answer["error"]
    worker.release.set()
    assert [(await f).status for f in served] == [200] * len(served)  # the line itself is served in full
    r = await client.post("/comfyfixer/scan", data=body, headers=JSON)
    assert r.status == 200  # and the line is free again


# ------------------------------------------------------------------ 9. image metadata within its bound


def test_a_webp_with_480_mib_of_exif_text_is_refused_unread_within_the_memory_bound(tmp_path):
    image = exif_webp(tmp_path / "exif.webp", 480)
    code = ("import sys, resource; from pathlib import Path; from fixer.read.readers import read_documents\n"
            "try:\n    read_documents(Path(sys.argv[1]))\nexcept Exception as e:\n    print(e)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(image)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = child.stdout.read().decode() if child.stdout else ""
    err = child.stderr.read().decode() if child.stderr else ""
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err
    assert "EXIF metadata is 480 MiB" in out and "it was not read" in out
    assert usage.ru_maxrss * 1024 < IMAGE_MEMORY


def test_a_webp_under_the_exif_bound_gives_its_workflow_after_other_chunks(tmp_path):
    wf = make_workflow([node(1, "LoraLoader", ["webp_lora.safetensors", 1, 1])])
    path = tmp_path / "ok.webp"
    with open(path, "wb") as f:
        write_exif_webp(f, ("workflow:" + json.dumps(wf)).encode(), filler=MiB)
    ((kind, doc),) = read_documents(path)
    assert kind == "workflow" and doc["nodes"][0]["widgets_values"][0] == "webp_lora.safetensors"
    from fixer.read.readers import MAX_EXIF_BYTES, MAX_JSON_BYTES

    assert MAX_EXIF_BYTES > 2 * MAX_JSON_BYTES  # room for a workflow and its prompt at their own bound


# ------------------------------------------------------------------ the fast parser changes nothing read


@pytest.mark.parametrize("raw,expected", [
    (b'\xef\xbb\xbf{"nodes": [], "v": 1}', {"nodes": [], "v": 1}),  # a BOM: orjson refuses it, json reads it
    (b'{"nodes": [], "v": NaN}', None),  # NaN: orjson refuses it, json reads it (a float nan)
    (b'{"nodes": [], "v": "\\udc80x"}', {"nodes": [], "v": "\ufffdx"}),  # a lone surrogate: U+FFFD
    (b'{"nodes": [], "v": [1.5, 18446744073709551615, "\\ud83d\\ude00"]}',
     {"nodes": [], "v": [1.5, 18446744073709551615, "\U0001f600"]}),
])
def test_what_the_fast_parser_refuses_is_read_as_json_reads_it(raw, expected):
    from fixer.read.readers import parse_json_bytes

    data = parse_json_bytes(raw, "w.json")
    if expected is None:
        assert data["nodes"] == [] and data["v"] != data["v"]  # nan
    else:
        assert data == expected


def test_nesting_past_what_json_reads_is_refused_with_the_fast_parser_too():
    from fixer.errors import WorkflowError
    from fixer.read.readers import parse_json_bytes

    for depth in (1100, 100_000):
        with pytest.raises(WorkflowError, match="nests too deeply"):
            parse_json_bytes(b"[" * depth + b"]" * depth, "deep.json")

"""Big /scan bodies are scanned in a worker process, with the answer the in-process scan gives."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from conftest import make_workflow, node
from fake_comfy import install_comfy

import server_routes as sr
from fixer.app.service import FixerService
from fixer.comfy.scan_worker import HostSnapshot, ScanWorker
from fixer.host.host import StandaloneHost
from tests.conftest import PAGE_HEADERS

JSON = {"Content-Type": "application/json"}
SMALL_LIMIT = sr.INLINE_DECODE_BYTES  # bodies over this go to the worker in these tests (ComfyUI: 1 MiB)
PAD = SMALL_LIMIT + 1000


class InProcessScanRefused:
    """The service, except that scanning in this process is an error: big scans belong to the worker."""

    def __init__(self, svc: FixerService):
        self._svc = svc

    def __getattr__(self, name: str):
        return getattr(self._svc, name)

    async def scan(self, *args, **kwargs):
        raise AssertionError("a big workflow was scanned in ComfyUI's own process")


def big_workflow() -> dict:
    nodes = [
        node(1, "CheckpointLoaderSimple", ["present.safetensors"]),
        node(2, "LoraLoader", ["missing_lora.safetensors", 1.0, 1.0]),
        node(3, "IPAdapterModelLoader", ["ip-adapter_sd15.safetensors"]),
        node(4, "SomeUnknownNode", [], aux_id="someone/comfyui-unknown"),
    ]
    # Notes pad it past the limit, as a real multi-MB workflow is mostly layout and text.
    nodes += [node(10 + i, "Note", ["x" * 200]) for i in range(SMALL_LIMIT // 200)]
    return make_workflow(nodes)


@pytest.fixture
def worker():
    w = ScanWorker()
    yield w
    w.close()


async def client_for(aiohttp_client, svc, worker):
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: InProcessScanRefused(svc), scan_worker=worker, worker_scan_bytes=SMALL_LIMIT)
    app = web.Application()
    app.add_routes(routes)
    return await aiohttp_client(app, headers=PAGE_HEADERS)


@pytest.fixture
def standalone_service(comfy_root, tmp_path, object_info):
    (comfy_root / "models" / "checkpoints" / "present.safetensors").write_bytes(b"weights")
    host = StandaloneHost.from_root(comfy_root).with_object_info(object_info, "host")
    return FixerService(host, tmp_path / "state", comfyui_root=comfy_root)


async def test_a_big_scan_is_answered_by_the_worker_as_the_service_answers_it(aiohttp_client, standalone_service,
                                                                              worker):
    client = await client_for(aiohttp_client, standalone_service, worker)
    workflow = big_workflow()
    body = json.dumps({"workflow": workflow, "name": "big.json"})
    assert len(body) > SMALL_LIMIT
    r = await client.post("/comfyfixer/scan", data=body, headers=JSON)
    assert r.status == 200, await r.text()
    got = await r.json()
    want = json.loads(json.dumps(await standalone_service.scan(workflow, "big.json")))
    assert got == want
    assert got["summary"]["missing"] >= 1 and got["missing_nodes"]  # the answer is a real scan, not an empty one
    assert worker._proc is not None and worker._proc.poll() is None  # served by the child, which stays up


async def test_inside_comfyui_the_worker_uses_the_live_node_classes(monkeypatch, comfy_root, aiohttp_client, worker):
    server = install_comfy(monkeypatch, comfy_root)
    svc = sr.comfy_runtime.build_service(sr.comfy_links(server.PromptServer.instance))
    client = await client_for(aiohttp_client, svc, worker)
    workflow = big_workflow()
    r = await client.post("/comfyfixer/scan", data=json.dumps({"workflow": workflow}), headers=JSON)
    assert r.status == 200, await r.text()
    assert await r.json() == json.loads(json.dumps(await svc.scan(workflow, "workflow")))


@pytest.mark.parametrize("body,status,words", [
    (json.dumps({"workflow": ["x" * PAD]}), 400, "'workflow' must be a workflow JSON object"),
    (json.dumps({"workflow": {"nodes": [], "pad": "x" * PAD}, "name": "a\x00b"}), 400, "'name'"),
    ("{" + " " * PAD, 400, "not valid JSON"),
])
async def test_a_bad_big_body_is_refused_by_the_worker_naming_the_problem(aiohttp_client, standalone_service, worker,
                                                                          body, status, words):
    client = await client_for(aiohttp_client, standalone_service, worker)
    r = await client.post("/comfyfixer/scan", data=body, headers=JSON)
    assert r.status == status
    assert words in (await r.json())["error"]
    r = await client.post("/comfyfixer/scan", data=json.dumps({"workflow": big_workflow()}), headers=JSON)
    assert r.status == 200  # the worker goes on serving


async def test_a_worker_that_died_is_replaced_on_the_next_scan(aiohttp_client, standalone_service, worker):
    client = await client_for(aiohttp_client, standalone_service, worker)
    body = json.dumps({"workflow": big_workflow()})
    assert (await client.post("/comfyfixer/scan", data=body, headers=JSON)).status == 200
    first = worker._proc
    first.kill()
    first.wait()
    r = await client.post("/comfyfixer/scan", data=body, headers=JSON)
    assert r.status == 200, await r.text()
    assert worker._proc is not first


class RecordingHost:
    """A host that notes which node definitions are asked of it."""

    def __init__(self, host):
        self._host, self.asked = host, []

    def __getattr__(self, name):
        return getattr(self._host, name)

    def node_defs(self):
        defs, asked = self._host.node_defs(), self.asked

        class Recorded(dict):
            def __getitem__(self, key):
                asked.append(key)
                return defs[key]

            def get(self, key, default=None):
                try:
                    return self[key]
                except KeyError:
                    return default

        return Recorded(defs)


async def test_the_worker_asks_for_the_definitions_the_in_process_scan_reads(comfy_root, tmp_path, object_info,
                                                                            worker):
    custom = {"input": {"required": {"model_name": [["a.safetensors"], {}]}},
              "input_order": {"required": ["model_name"]}}
    base = StandaloneHost.from_root(comfy_root).with_object_info({**object_info, "MyPackLoader": custom}, "host")
    in_process, via_worker = RecordingHost(base), RecordingHost(base)
    workflow = big_workflow()
    workflow["nodes"].append(node(99, "MyPackLoader", ["my_model.safetensors"]))
    await FixerService(in_process, tmp_path / "a", comfyui_root=comfy_root).scan(workflow, "w")
    svc = FixerService(via_worker, tmp_path / "b", comfyui_root=comfy_root)
    await worker.scan(json.dumps({"workflow": workflow}).encode(), svc)
    installed = {t for t in in_process.asked if t in base.node_types()}
    assert "MyPackLoader" in installed and set(via_worker.asked) == installed
    assert "KSampler" not in via_worker.asked  # only what the workflow's nodes need, not every type


def test_the_snapshot_answers_as_the_host_does(comfy_root, object_info):
    host = StandaloneHost.from_root(comfy_root).with_object_info(object_info, "object_info")
    snap = HostSnapshot.of(host)
    assert snap.node_types() == host.node_types() and snap.folders() == host.folders()
    assert snap.extensions("clip") == host.extensions("text_encoders")  # legacy names map as on the host
    assert snap.node_source == "object_info" and len(snap.node_defs()) == len(host.node_types())

"""`--server URL`: the CLI asks this pack, running in that ComfyUI, which folder each input lists.

Only a scan the user starts (the panel's, or the CLI's POST) makes a node class run the folder probe;
the GET any page can aim at (`<img src=.../comfyfixer/folder_map>`) answers what those scans learned."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

import server_routes as sr
from fixer.host.host import FolderPathsHost
from tests import fake_folder_paths
from tests.conftest import PAGE_HEADERS, make_comfy_root, make_workflow, node
from tests.test_cli_scan import run_cli


def comfy_app(tmp_path: Path, calls: list[str] | None = None) -> web.Application:
    """A ComfyUI stand-in: /object_info and this pack's routes over a fake folder_paths whose only custom
    node lists a folder the pack registers (empty: a fresh install). `calls` records each INPUT_TYPES()."""
    fp = fake_folder_paths.make(tmp_path / "served", {"xlabs_controlnets": (["xlabs/controlnets"],
                                                                            fake_folder_paths.PT)})
    calls = [] if calls is None else calls

    class LoadFluxControlNet:
        @classmethod
        def INPUT_TYPES(cls):
            calls.append("LoadFluxControlNet")
            return {"required": {"model_name": (["flux-dev", "flux-schnell"],),
                                 "controlnet_path": (fp.get_filename_list("xlabs_controlnets"),)}}

    class RIFE_VFI:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ckpt_name": (["rife47.pth", "rife49.pth"],)}}

    classes = {"LoadFluxControlNet": LoadFluxControlNet, "RIFE_VFI": RIFE_VFI}
    service = SimpleNamespace(host=FolderPathsHost(fp, node_classes=lambda: classes))
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: service)

    @routes.get("/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return web.json_response({t: {"input": c.INPUT_TYPES(),
                                      "input_order": {"required": list(c.INPUT_TYPES()["required"])}}
                                  for t, c in classes.items()})

    app = web.Application()
    app.add_routes(routes)
    return app


async def test_the_route_answers_each_node_types_folder_map(aiohttp_client, tmp_path):
    client = await aiohttp_client(comfy_app(tmp_path), headers=PAGE_HEADERS)
    r = await client.post("/comfyfixer/folder_map", json={})
    assert r.status == 200
    answer = await r.json()
    assert answer["LoadFluxControlNet"]["inputs"] == {
        "controlnet_path": [{"folder": "xlabs_controlnets", "prefix": "", "extensions": sorted(fake_folder_paths.PT)}]}
    assert answer["RIFE_VFI"] == {"source": "probe", "complete": True, "fixed": ["ckpt_name"], "inputs": {}}
    one = await (await client.post("/comfyfixer/folder_map", json={"types": ["RIFE_VFI", "NotInstalled"]})).json()
    assert list(one) == ["RIFE_VFI"]
    assert (await client.post("/comfyfixer/folder_map", json={"types": "RIFE_VFI"})).status == 400


async def test_a_cross_site_get_of_the_folder_map_is_refused_and_probes_nothing(aiohttp_client, tmp_path):
    calls: list[str] = []
    client = await aiohttp_client(comfy_app(tmp_path, calls))
    # What <img src="http://127.0.0.1:8188/comfyfixer/folder_map"> on another site sends: no Origin, no custom header.
    for headers in ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, {}):
        r = await client.get("/comfyfixer/folder_map", headers=headers)
        assert r.status == 403, headers
        assert "Request refused" in (await r.json())["error"]
    assert calls == []
    # The panel's own GET, before any scan: nothing learned, and still no node was probed.
    r = await client.get("/comfyfixer/folder_map", headers=PAGE_HEADERS)
    assert (r.status, await r.json(), calls) == (200, {}, [])
    # A scan the user started (here the CLI's POST) teaches it; the GET then answers from the probe's cache.
    await client.post("/comfyfixer/folder_map", json={"types": ["LoadFluxControlNet"]}, headers=PAGE_HEADERS)
    probed = len(calls)
    answer = await (await client.get("/comfyfixer/folder_map", headers=PAGE_HEADERS)).json()
    assert list(answer) == ["LoadFluxControlNet"] and len(calls) == probed


@pytest.fixture
def served(tmp_path):
    """The stand-in served on 127.0.0.1 in a thread, for a CLI subprocess."""
    ready = threading.Event()
    box: dict = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(comfy_app(tmp_path))
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        box["loop"] = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(10)
    yield box["url"]
    box["loop"].call_soon_threadsafe(box["loop"].stop)
    t.join(10)


def test_the_cli_with_server_takes_the_folder_the_pack_recorded(tmp_path, served):
    root = make_comfy_root(tmp_path)
    wf = root / "user/default/workflows/a.json"
    wf.write_text(json.dumps(make_workflow([node(1, "LoadFluxControlNet",
                                                 ["flux-dev", "flux-canny-controlnet-v3.safetensors"]),
                                            node(2, "RIFE_VFI", ["rife47.pth"])])))
    r = run_cli("--scan", "--json", "--comfyui-root", str(root), "--state-dir", str(tmp_path / "state"),
                "--server", served)
    models = json.loads((tmp_path / "state/output/missing_models.json").read_text())
    assert [(m["expected_type"], m["filename"], m["folder_source"]) for m in models] == [
        ("xlabs_controlnets", "flux-canny-controlnet-v3.safetensors", "server")], r.stderr

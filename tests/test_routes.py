"""The /comfyfixer routes: request checks as pure functions, then through aiohttp's test client."""

from __future__ import annotations

import pytest
from aiohttp import web

import server_routes as sr
from fixer.app.service import PackNotOffered
from tests.conftest import PAGE_HEADERS

JSON = {"Content-Type": "application/json"}


# ---- through aiohttp, refused before the service is touched ------------------------------------

def untouchable_service():
    raise AssertionError("a refused request must not reach the service")


async def no_manager(pack_id: str) -> None:
    return None


async def routes_client(aiohttp_client, service, **client_kw):
    """The pack's routes in an aiohttp test app over `service`, no Manager, bodies up to 4 KiB."""
    routes = web.RouteTableDef()
    sr.add_routes(routes, service, install_pack=no_manager, max_body_bytes=4096)
    app = web.Application()
    app.add_routes(routes)
    return await aiohttp_client(app, **client_kw)


@pytest.fixture
async def refusing_client(aiohttp_client):
    return await routes_client(aiohttp_client, untouchable_service, headers=PAGE_HEADERS)


POST_ROUTES = ["scan", "fix", "cancel", "unqueue", "retry", "relink", "settings", "portable", "install_pack",
               "approve", "discard_partial", "paste_link", "folder_map", "lockfile", "duplicates", "duplicates/fix"]


def test_every_contract_route_is_registered_once():
    routes = web.RouteTableDef()
    sr.add_routes(routes, untouchable_service)
    got = sorted((r.method, r.path) for r in routes)
    want = sorted([("POST", f"/comfyfixer/{p}") for p in POST_ROUTES]
                  + [("GET", f"/comfyfixer/{p}") for p in ("status", "settings", "folder_map")])
    assert got == want


def test_the_route_table_and_the_handlers_built_on_the_first_request_name_the_same_routes():
    # ComfyUI's start-up registers stand-ins from sr.ROUTES; the first request builds the handlers. A handler
    # without its line in ROUTES would never be reachable, a line without a handler would answer 500.
    built = sr.handlers(untouchable_service, install_pack=no_manager, max_body_bytes=sr.MAX_BODY_BYTES,
                        scan_worker=None, worker_scan_bytes=sr.WORKER_SCAN_BYTES)
    assert sorted(built) == sorted(sr.ROUTES)


async def test_handlers_that_cannot_load_answer_every_request_with_the_reason(aiohttp_client, monkeypatch):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'fixer.comfy.web_guard'")

    monkeypatch.setattr(sr, "handlers", broken)
    routes = web.RouteTableDef()
    sr.add_routes(routes, untouchable_service)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    r = await client.get("/comfyfixer/status")
    assert r.status == 500
    body = await r.json()
    assert body["code"] == "unexpected" and "could not load its request handlers" in body["error"]
    assert "web_guard" in body["error"]


@pytest.mark.parametrize("route", POST_ROUTES)
async def test_cross_origin_post_is_refused_on_a_lan_host(refusing_client, route):
    r = await refusing_client.post(f"/comfyfixer/{route}", json={"workflow": {}},
                                   headers={"Origin": "http://evil.example", "Host": "192.168.1.20:8188"})
    assert r.status == 403
    assert "Cross-origin" in (await r.json())["error"]


GET_ROUTES = ["status", "settings", "folder_map"]
EVERY_ROUTE = [("POST", r) for r in POST_ROUTES] + [("GET", r) for r in GET_ROUTES]


@pytest.fixture
async def bare_client(aiohttp_client):
    """A client that sends only what a page of another site can make a browser send."""
    return await routes_client(aiohttp_client, untouchable_service)


@pytest.mark.parametrize("method,route", EVERY_ROUTE)
async def test_every_route_refuses_a_cross_site_request_without_origin(bare_client, method, route):
    # <img src>, <a href>, a form or a no-cors fetch from another site: no Origin on a GET, and
    # Sec-Fetch-Site names the other site. Even with the custom header (which such a page cannot add).
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", **PAGE_HEADERS}
    r = await bare_client.request(method, f"/comfyfixer/{route}", json={"workflow": {}}, headers=headers)
    assert r.status == 403
    assert "Sec-Fetch-Site: cross-site" in (await r.json())["error"]


@pytest.mark.parametrize("method,route", EVERY_ROUTE)
async def test_every_route_refuses_a_request_without_the_panels_header(bare_client, method, route):
    # An older browser sends no Sec-Fetch-Site: the header the panel's own code sets is what tells.
    r = await bare_client.request(method, f"/comfyfixer/{route}", json={"workflow": {}},
                                  headers={"Host": "127.0.0.1:8188"})
    assert r.status == 403
    assert "X-ComfyFixer-Client" in (await r.json())["error"]


async def test_cross_origin_post_is_refused_when_listening_on_all_interfaces(refusing_client):
    r = await refusing_client.post("/comfyfixer/fix", json={"workflow": {}},
                                   headers={"Origin": "http://attacker.test:8188", "Host": "0.0.0.0:8188"})
    assert r.status == 403


@pytest.mark.parametrize("method,route", [("POST", "scan"), ("POST", "fix"), ("POST", "install_pack"),
                                          ("POST", "settings"), ("GET", "status"), ("GET", "settings")])
async def test_a_page_under_a_rebound_domain_name_is_refused(refusing_client, monkeypatch, method, route):
    monkeypatch.delenv("COMFYFIXER_ALLOWED_HOSTS", raising=False)
    # Same origin as far as the browser knows: the attacker's name now points at 127.0.0.1.
    headers = {"Origin": "http://rebind.attacker.test:8188", "Host": "rebind.attacker.test:8188"}
    r = await refusing_client.request(method, f"/comfyfixer/{route}", json={"workflow": {}}, headers=headers)
    assert r.status == 403
    assert "COMFYFIXER_ALLOWED_HOSTS=rebind.attacker.test" in (await r.json())["error"]


async def test_a_host_name_the_user_configured_reaches_the_service(aiohttp_client, monkeypatch):
    monkeypatch.setenv("COMFYFIXER_ALLOWED_HOSTS", "comfy.lan")
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: type("Svc", (), {"status": lambda self: {"phase": "idle"}})())
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    r = await client.get("/comfyfixer/status", headers={"Origin": "http://comfy.lan:8188", "Host": "comfy.lan:8188"})
    assert r.status == 200 and (await r.json()) == {"phase": "idle"}


async def test_cross_origin_get_is_refused(refusing_client):
    r = await refusing_client.get("/comfyfixer/settings", headers={"Origin": "http://evil.example"})
    assert r.status == 403


@pytest.mark.parametrize("ct", ["text/plain", "application/x-www-form-urlencoded"])
async def test_post_without_json_content_type_is_refused(refusing_client, ct):
    r = await refusing_client.post("/comfyfixer/fix", data=b'{"workflow": {}}', headers={"Content-Type": ct})
    assert r.status == 415
    assert "application/json" in (await r.json())["error"]


@pytest.mark.parametrize("raw,words", [(b"{oops", "not valid JSON"), (b"[]", "must be a JSON object"),
                                        (b"", "empty")])
async def test_post_with_a_body_that_is_not_a_json_object_is_refused(refusing_client, raw, words):
    r = await refusing_client.post("/comfyfixer/scan", data=raw, headers=JSON)
    assert r.status == 400
    assert words in (await r.json())["error"]


@pytest.mark.parametrize("route,body,words", [
    ("scan", {}, "'workflow' is missing"),
    ("scan", {"workflow": []}, "'workflow' must be a workflow JSON object"),
    ("scan", {"workflow": {}, "name": 7}, "'name' must be a string"),
    ("fix", {"workflow": {}, "items": "x.safetensors"}, "'items' must be a list"),
    ("retry", {}, "'name' is missing"),
    ("retry", {"name": ""}, "'name' is empty"),
    ("retry", {"name": "../../x.safetensors"}, "'name' '../../x.safetensors' is refused"),
    ("cancel", {"name": "/abs/x.safetensors"}, "'name' '/abs/x.safetensors' is refused"),
    ("relink", {"name": "x.safetensors", "folder": "loras", "path": "/m/x"}, "'workflow' is missing"),
    ("relink", {"workflow": {}, "name": "x.safetensors", "folder": "loras"}, "'path' is missing"),
    ("relink", {"workflow": {}, "name": "C:\\x.safetensors", "folder": "loras", "path": "/m/x"}, "'name'"),
    ("relink", {"workflow": {}, "name": "x.safetensors", "folder": "../loras", "path": "/m/x"}, "'folder'"),
    ("settings", {"max_concurrent": "many"}, "'max_concurrent'"),
    ("portable", {"workflow": "x"}, "'workflow'"),
    ("install_pack", {"pack_id": "../evil"}, "'pack_id'"),
])
async def test_bad_bodies_are_refused_naming_the_field(refusing_client, route, body, words):
    r = await refusing_client.post(f"/comfyfixer/{route}", json=body)
    assert r.status == 400
    assert words in (await r.json())["error"]


async def test_huge_body_with_content_length_is_refused(aiohttp_client):
    routes = web.RouteTableDef()
    sr.add_routes(routes, untouchable_service)  # the default cap
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    big = b'{"workflow": {"x": "' + b"a" * (sr.MAX_BODY_BYTES + 1) + b'"}}'
    r = await client.post("/comfyfixer/scan", data=big, headers=JSON)
    assert r.status == 413
    assert "larger than" in (await r.json())["error"]


async def test_huge_chunked_body_is_refused(refusing_client):
    async def chunks():
        yield b'{"workflow": {"x": "'
        for _ in range(10):
            yield b"a" * 1024
        yield b'"}}'

    r = await refusing_client.post("/comfyfixer/scan", data=chunks(), headers=JSON)
    assert r.status == 413


class Offering:
    """A service whose last scan offered `ids` as installable (FixerService.check_offered_pack)."""

    def __init__(self, *ids: str):
        self.ids = set(ids)

    def check_offered_pack(self, pack_id: str) -> None:
        if pack_id not in self.ids:
            raise PackNotOffered(pack_id)


async def test_install_pack_queues_with_the_installer(aiohttp_client):
    queued = []

    async def installer(pack_id: str) -> str:
        queued.append(pack_id)
        return "restart ComfyUI"

    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: Offering("comfyui-foo"), install_pack=installer)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    r = await client.post("/comfyfixer/install_pack", json={"pack_id": "comfyui-foo"})
    assert r.status == 202
    assert await r.json() == {"ok": True, "message": "restart ComfyUI"}
    assert queued == ["comfyui-foo"]


# ---- through aiohttp, against the real FixerService over a temp ComfyUI tree --------------------

from types import SimpleNamespace  # noqa: E402

from conftest import make_workflow, node  # noqa: E402

from fixer.app.service import FixerService  # noqa: E402
from fixer.host.host import StandaloneHost  # noqa: E402

TINY_LORA = "fixture_tiny_lora.safetensors"  # Civitai version 9100101, payload "tiny-lora"
SENTINELS = {"hf_token": "hf_SENTINELxHFxTOKENx0123456789", "civitai_api_key": "SENTINELxCIVITAIxKEYx9876543210"}


@pytest.fixture
async def live(aiohttp_client, comfy_root, tmp_path, upstream, object_info):
    # Node definitions of a stock ComfyUI, so node types are checked as inside ComfyUI.
    host = StandaloneHost.from_root(comfy_root).with_object_info(object_info, "host")
    svc = FixerService(host, tmp_path / "state", comfyui_root=comfy_root)
    events: list[tuple[str, dict]] = []
    svc.on_event(lambda event, payload: events.append((event, payload)))
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: svc, install_pack=no_manager)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    return SimpleNamespace(client=client, svc=svc, events=events, root=comfy_root, up=upstream, tmp=tmp_path)


def lora_workflow(up, name: str = TINY_LORA) -> dict:
    hint = {"name": name, "url": f"{up.base}/api/download/models/9100101", "directory": "loras"}
    return make_workflow([node(1, "CheckpointLoaderSimple", ["present.safetensors"]),
                          node(2, "LoraLoader", [name, 1.0, 1.0], models=[hint]),
                          node(3, "NoSuchCustomNode", [])])


async def wait_for_run(client, seconds: float = 30.0) -> dict:
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = await (await client.get("/comfyfixer/status")).json()
        if status["phase"] in ("complete", "error"):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run did not finish in {seconds} s: {status}")


async def test_scan_of_a_workflow_with_missing_models_has_the_contract_shape(live):
    (live.root / "models/checkpoints/present.safetensors").write_bytes(b"x")
    r = await live.client.post("/comfyfixer/scan", json={"workflow": lora_workflow(live.up), "name": "wf.json"})
    assert r.status == 200
    report = await r.json()
    assert report["workflow"] == "wf.json"
    assert set(report) >= {"workflow", "node_check", "summary", "models", "missing_nodes", "packs"}
    assert {k: report["summary"][k] for k in ("models", "present", "missing", "missing_nodes")} == \
        {"models": 2, "present": 1, "missing": 1, "missing_nodes": 1}
    assert set(report["summary"]) >= {"models", "present", "elsewhere", "missing", "unsafe", "unused", "missing_nodes"}
    lora = next(m for m in report["models"] if m["state"] == "missing")
    assert set(lora) >= {"filename", "expected_type", "folder_source", "state", "optional", "nodes", "hints",
                         "elsewhere", "unsafe_reason", "pickle", "dest"}
    assert not set(lora) & {"name", "folder"}  # one key each: the file contract's missing_models.json names
    assert (lora["filename"], lora["expected_type"], lora["optional"], lora["pickle"]) == (TINY_LORA, "loras", False,
                                                                                        False)
    usage = lora["nodes"][0]
    assert {k: usage[k] for k in ("node_id", "node_type", "input_name", "subgraph_path")} == \
        {"node_id": "2", "node_type": "LoraLoader", "input_name": "lora_name", "subgraph_path": []}
    assert lora["hints"]["url"].endswith("/api/download/models/9100101")
    assert [n["node_type"] for n in report["missing_nodes"]] == ["NoSuchCustomNode"]
    assert set(report["missing_nodes"][0]) >= {"node_type", "nodes", "cnr_id", "aux_id", "ver"}


async def test_fix_run_puts_the_file_in_its_folder_and_announces_it(live):
    import hashlib

    r = await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up), "name": "wf.json"})
    assert r.status == 202, await r.text()
    status = await wait_for_run(live.client)
    assert status["phase"] == "complete", status
    target = live.root / "models" / "loras" / TINY_LORA
    assert hashlib.sha256(target.read_bytes()).hexdigest() == live.up.payloads["tiny-lora"]["hashes"]["SHA256"].lower()
    row = next(m for m in status["data"]["models"] if m["name"] == TINY_LORA)
    assert (row["folder"], row["state"]) == ("loras", "done")
    done = [p for e, p in live.events if e == "comfyfixer.done"]
    assert done and {"folder": "loras", "name": TINY_LORA, "saved_as": None} in done[-1]["files"]


async def test_second_fix_while_one_runs_is_409(live):
    from fake_upstream import Fault

    live.up.add_fault(Fault(path=r"/api/download/models/9100101", delay=3.0, times=None))
    first = await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    assert first.status == 202
    second = await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    assert second.status == 409
    refused = await second.json()
    assert "already running" in refused["error"] and refused["code"] == "run_busy"  # the page words the code
    cancelled = await live.client.post("/comfyfixer/cancel", json={})
    assert cancelled.status == 200


async def test_settings_and_status_never_carry_token_values(live):
    r = await live.client.post("/comfyfixer/settings", json={**SENTINELS, "max_concurrent": 2})
    assert r.status == 200
    answers = [await r.text(), await (await live.client.get("/comfyfixer/settings")).text(),
               await (await live.client.get("/comfyfixer/status")).text()]
    for text in answers:
        for secret in SENTINELS.values():
            assert secret not in text
    settings = (await (await live.client.get("/comfyfixer/settings")).json())["values"]
    assert settings["hf_token_set"] is True and settings["civitai_api_key_set"] is True
    assert settings["max_concurrent"] == 2


async def test_setting_out_of_range_is_400_naming_it(live):
    r = await live.client.post("/comfyfixer/settings", json={"max_concurrent": 1000})
    assert r.status == 400
    assert "max_concurrent" in (await r.json())["error"]


def lora_user(name: str, sha256: str | None = None) -> dict:
    """A workflow whose LoRA loader asks for `name`, stating its sha256 in models[] when given."""
    hints = [{"name": name, "directory": "loras", "hash": sha256, "hash_type": "sha256"}] if sha256 else []
    return make_workflow([node(1, "LoraLoader", [name, 1.0, 1.0], **({"models": hints} if hints else {}))])


async def relink(live, name: str, src, workflow: dict):
    return await live.client.post("/comfyfixer/relink", json={"workflow": workflow, "workflow_name": "wf.json",
                                                              "name": name, "folder": "loras", "path": str(src)})


async def test_relink_of_a_file_outside_the_model_folders_is_refused(live):
    outside = live.tmp / "elsewhere" / "x.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    r = await relink(live, "x.safetensors", outside, lora_user("x.safetensors"))
    assert r.status == 400
    assert "model folders" in (await r.json())["error"]
    assert not (live.root / "models" / "loras" / "x.safetensors").exists()


async def test_relink_puts_a_copy_from_another_model_folder_in_place(live):
    # The workflow states no sha256: the file of the name is linked as it is, as before.
    src = live.root / "models" / "checkpoints" / "x.safetensors"
    src.write_bytes(b"weights")
    r = await relink(live, "sub/x.safetensors", src, lora_user("sub/x.safetensors"))
    assert r.status == 200, await r.text()
    answer = await r.json()
    assert (answer["ok"], answer["folder"], answer["relpath"]) == (True, "loras", "sub/x.safetensors")
    assert (live.root / "models" / "loras" / "sub" / "x.safetensors").read_bytes() == b"weights"


async def test_relink_of_a_same_named_file_with_other_bytes_than_the_workflow_states_is_refused(live):
    """Fails on a941c31: "Use this file" linked any file of the name, whatever sha256 the workflow states."""
    import hashlib

    right, other = hashlib.sha256(b"the workflow's lora").hexdigest(), hashlib.sha256(b"another lora").hexdigest()
    src = live.root / "models" / "checkpoints" / "x.safetensors"
    src.write_bytes(b"another lora")
    r = await relink(live, "x.safetensors", src, lora_user("x.safetensors", right))
    refused = await r.json()
    assert (r.status, refused["code"]) == (400, "sha256_differs"), refused
    # Names the file, both hashes (short) and what to do.
    assert str(src) in refused["error"] and right[:12] in refused["error"] and other[:12] in refused["error"]
    assert "Download the workflow's own file" in refused["error"]
    assert not (live.root / "models" / "loras" / "x.safetensors").exists()  # nothing linked
    assert not [e for e, _ in live.events if e == "comfyfixer.done"]
    log = (live.tmp / "state" / "log" / "comfyfixer.log").read_text()  # the service's ACTION lines go there
    decisions = [line for line in log.splitlines() if "ACTION:" in line and '"relink_refused"' in line]
    assert decisions and '"sha256_differs"' in decisions[0] and right in decisions[0] and other in decisions[0]


async def test_relink_of_the_bytes_the_workflow_states_links_them(live):
    import hashlib
    import os

    src = live.root / "models" / "checkpoints" / "x.safetensors"
    src.write_bytes(b"the workflow's lora")
    stated = hashlib.sha256(b"the workflow's lora").hexdigest()
    r = await relink(live, "x.safetensors", src, lora_user("x.safetensors", stated))
    assert r.status == 200, await r.text()
    assert os.path.samefile(live.root / "models" / "loras" / "x.safetensors", src)


async def test_relink_of_a_name_the_workflow_does_not_use_is_refused(live):
    src = live.root / "models" / "checkpoints" / "x.safetensors"
    src.write_bytes(b"weights")
    r = await relink(live, "x.safetensors", src, lora_user("y.safetensors"))
    assert (r.status, (await r.json())["code"]) == (400, "request_invalid")
    assert not (live.root / "models" / "loras" / "x.safetensors").exists()


async def test_an_elsewhere_row_says_where_use_this_file_puts_it(live):
    """Fails on a941c31: only missing rows carried their destination; the panel could not say where the link goes."""
    (live.root / "models" / "checkpoints" / "x.safetensors").write_bytes(b"weights")
    r = await live.client.post("/comfyfixer/scan", json={"workflow": lora_user("x.safetensors"), "name": "wf.json"})
    (row,) = (await r.json())["models"]
    assert row["state"] == "elsewhere"
    assert row["dest"] == str(live.root / "models" / "loras" / "x.safetensors")


async def test_status_document_has_the_contract_shape_after_a_run(live):
    await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    status = await wait_for_run(live.client)
    assert set(status) >= {"timestamp", "phase", "progress", "data", "errors"}
    assert set(status["progress"]) >= {"current", "total", "percent"}
    assert set(status["data"]) >= {"run_id", "workflow", "models", "overall", "summary"}
    row = status["data"]["models"][0]
    assert set(row) >= {"name", "folder", "state", "source", "url", "reason", "confidence", "size", "sha256",
                        "warnings", "candidates", "bytes_done", "total", "speed", "eta", "error"}
    assert set(status["data"]["overall"]) >= {"bytes_done", "total", "speed", "eta"}


async def test_retry_after_a_failed_download_fetches_it(live):
    from fake_upstream import Fault

    live.up.add_fault(Fault(path=r"/api/download/models/9100101", status=404, times=None))
    await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    failed = await wait_for_run(live.client)
    row = next(m for m in failed["data"]["models"] if m["name"] == TINY_LORA)
    assert row["state"] == "failed" and row["error"]
    live.up.clear()
    r = await live.client.post("/comfyfixer/retry", json={"name": TINY_LORA})
    assert r.status == 200, await r.text()
    await wait_for_run(live.client)
    assert (live.root / "models" / "loras" / TINY_LORA).is_file()


async def test_portable_answers_the_workflow_with_its_models(live):
    await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    await wait_for_run(live.client)
    r = await live.client.post("/comfyfixer/portable", json={"workflow": lora_workflow(live.up)})
    assert r.status == 200, await r.text()
    workflow = (await r.json())["workflow"]
    assert workflow["nodes"] and any(m.get("name") == TINY_LORA for m in workflow.get("models", []))


# ---- install_pack inside ComfyUI: Manager found by its routes on our own server -----------------

async def test_install_pack_is_queued_with_the_manager_comfyui_runs(monkeypatch, comfy_root, aiohttp_server,
                                                                   aiohttp_client):
    from fake_comfy import install_comfy

    received: list[dict] = []

    async def queue_task(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    async def queue_start(request: web.Request) -> web.Response:
        return web.Response()

    server = install_comfy(monkeypatch, comfy_root)
    ps = server.PromptServer.instance
    monkeypatch.setattr(sr.comfy_runtime, "_links", sr.comfy_links(ps))  # as __init__.py attaches it
    ps.app.router.add_post("/v2/manager/queue/task", queue_task)  # what comfyui-manager 4.x registers
    ps.app.router.add_post("/v2/manager/queue/start", queue_start)
    comfy = await aiohttp_server(ps.app)
    ps.port = comfy.port
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: Offering("comfyui-gguf"))  # the default installer: ComfyUI's Manager
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    r = await client.post("/comfyfixer/install_pack", json={"pack_id": "comfyui-gguf"})
    assert r.status == 202, await r.text()
    assert "restart ComfyUI" in (await r.json())["message"]
    assert [(t["kind"], t["params"]["id"], t["params"]["selected_version"]) for t in received] == \
        [("install", "comfyui-gguf", "latest")]


async def test_install_pack_of_an_unlisted_repository_is_409_and_manager_is_not_asked(monkeypatch, comfy_root,
                                                                                     aiohttp_client):
    from fake_comfy import install_comfy

    asked: list[str] = []

    async def queue_task(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response()

    server = install_comfy(monkeypatch, comfy_root)
    ps = server.PromptServer.instance
    monkeypatch.setattr(sr.comfy_runtime, "_links", sr.comfy_links(ps))
    ps.app.router.add_post("/v2/manager/queue/task", queue_task)
    routes = web.RouteTableDef()
    # Even an id the state dir claims was offered (a forged or stale file) must be in Manager's list.
    sr.add_routes(routes, lambda: Offering("attacker/evil-nodes"))
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    r = await client.post("/comfyfixer/install_pack", json={"pack_id": "attacker/evil-nodes"})
    assert r.status == 409
    assert "unlisted repository" in (await r.json())["error"]
    assert asked == []


async def test_install_pack_without_manager_routes_is_409(monkeypatch, comfy_root, aiohttp_client):
    from fake_comfy import install_comfy

    server = install_comfy(monkeypatch, comfy_root)
    monkeypatch.setattr(sr.comfy_runtime, "_links", sr.comfy_links(server.PromptServer.instance))
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: Offering("comfyui-foo"))
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    r = await client.post("/comfyfixer/install_pack", json={"pack_id": "comfyui-foo"})
    assert r.status == 409
    assert "ComfyUI-Manager is not running" in (await r.json())["error"]


async def test_install_pack_accepts_only_what_the_last_scan_offered(aiohttp_client, comfy_root, tmp_path):
    # A shared workflow claims a typosquatted registry id for a type Manager's map knows.
    svc = FixerService(StandaloneHost.from_root(comfy_root).with_object_info({}, "host"), tmp_path / "state",
                       comfyui_root=comfy_root)
    queued: list[str] = []

    async def installer(pack_id: str) -> str:
        queued.append(pack_id)
        return "queued"

    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: svc, install_pack=installer)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    spoofed = make_workflow([node(1, "ImpactWildcardProcessor", [], cnr_id="comfyui-impact-pack-evil")])
    before = await client.post("/comfyfixer/install_pack", json={"pack_id": "comfyui-impact-pack"})
    assert (before.status, (await before.json())["code"]) == (409, "pack_not_offered")  # no scan yet
    report = await (await client.post("/comfyfixer/scan", json={"workflow": spoofed})).json()
    [pack] = report["packs"]
    assert pack["id"] == "ltdrdata/ComfyUI-Impact-Pack" and pack["manager_installable"]
    assert pack["workflow_says"] == "registry pack 'comfyui-impact-pack-evil'"
    for pack_id in ("comfyui-impact-pack-evil", "any-registry-id", "attacker/ComfyUI-Impact-Pack"):
        r = await client.post("/comfyfixer/install_pack", json={"pack_id": pack_id})
        body = await r.json()
        assert (r.status, body["code"]) == (409, "pack_not_offered"), body
        assert "last scan" in body["error"]
    assert queued == []
    r = await client.post("/comfyfixer/install_pack", json={"pack_id": "ltdrdata/ComfyUI-Impact-Pack"})
    assert r.status == 202 and queued == ["ltdrdata/ComfyUI-Impact-Pack"]
    # A later scan that offers nothing withdraws the offer.
    await client.post("/comfyfixer/scan", json={"workflow": make_workflow([])})
    r = await client.post("/comfyfixer/install_pack", json={"pack_id": "ltdrdata/ComfyUI-Impact-Pack"})
    assert r.status == 409 and queued == ["ltdrdata/ComfyUI-Impact-Pack"]


async def test_retry_with_a_picked_source_downloads_from_it(live):
    from fake_upstream import Fault

    live.up.add_fault(Fault(path=r"/api/download/models/9100101", status=404, times=None))
    await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    failed = await wait_for_run(live.client)
    row = next(m for m in failed["data"]["models"] if m["name"] == TINY_LORA)
    assert row["state"] == "failed"
    live.up.clear()
    r = await live.client.post("/comfyfixer/retry", json={"name": TINY_LORA, "url": row["url"]})
    assert r.status == 200, await r.text()
    await wait_for_run(live.client)
    assert (live.root / "models" / "loras" / TINY_LORA).is_file()


async def test_retry_with_a_source_that_was_never_offered_is_refused(live):
    await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    await wait_for_run(live.client)
    r = await live.client.post("/comfyfixer/retry", json={"name": TINY_LORA, "url": "https://example.com/evil.safetensors"})
    assert 400 <= r.status < 500
    assert "not one of the sources found" in (await r.json())["error"]


def test_a_throttled_status_event_is_still_sent_when_the_interval_ends(tmp_path, comfy_root):
    import time as _time

    from fixer.app.service import SEND_INTERVAL
    from fixer.events import Progress

    svc = FixerService(StandaloneHost.from_root(comfy_root), tmp_path / "state", comfyui_root=comfy_root)
    sent: list[dict] = []
    svc.on_event(lambda event, payload: sent.append(payload) if event == "comfyfixer.status" else None)
    svc.bus.emit(Progress(1, 3))  # sent at once
    svc.bus.emit(Progress(2, 3))  # inside the interval: held back, not dropped
    assert [p["progress"]["current"] for p in sent] == [1]
    _time.sleep(SEND_INTERVAL + 0.2)
    assert [p["progress"]["current"] for p in sent] == [1, 2]


def test_a_burst_of_status_events_is_two_sends_to_the_page_and_a_phase_change_goes_at_once(tmp_path, comfy_root):
    from fixer.app.service import SEND_INTERVAL
    from fixer.events import PhaseChanged, Progress
    from fixer.throttle import WriteThrottle
    from tests.test_throttle import FakeTime

    svc = FixerService(StandaloneHost.from_root(comfy_root), tmp_path / "state", comfyui_root=comfy_root)
    fake = FakeTime()
    svc._sender = WriteThrottle(svc._send, SEND_INTERVAL, clock=fake.clock, later=fake.later)
    sent: list[dict] = []
    svc.on_event(lambda event, payload: sent.append(payload) if event == "comfyfixer.status" else None)
    for i in range(30):
        svc.bus.emit(Progress(i + 1, 30))
    assert [p["progress"]["current"] for p in sent] == [1]
    fake.advance(SEND_INTERVAL)
    assert [p["progress"]["current"] for p in sent] == [1, 30]  # the newest, once, with no event after it
    svc.bus.emit(Progress(1, 2))
    svc.bus.emit(PhaseChanged("complete"))  # at once, inside the interval, carrying the progress before it
    assert [(p["phase"], p["progress"]["current"]) for p in sent[2:]] == [("complete", 1)]
    fake.advance(5)
    assert len(sent) == 3


async def test_fix_while_a_cli_run_holds_the_state_lock_is_409_naming_it(live):
    from fixer.state import StateLock

    with StateLock(live.tmp / "state", "comfy-fixer --auto"):
        r = await live.client.post("/comfyfixer/fix", json={"workflow": lora_workflow(live.up)})
    assert r.status == 409
    assert "comfy-fixer --auto" in (await r.json())["error"]


async def test_a_body_whose_parse_would_multiply_in_memory_is_refused_unparsed(aiohttp_client):
    routes = web.RouteTableDef()
    sr.add_routes(routes, untouchable_service, install_pack=no_manager, max_body_bytes=16 * 2**20)
    app = web.Application(client_max_size=16 * 2**20)
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    body = b'{"workflow": {"nodes": [' + b"{}," * (4 * 2**20) + b'{}]}}'  # 12 MiB, 4 million objects
    r = await client.post("/comfyfixer/portable", data=body, headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert "4000000 values" in (await r.json())["error"]


async def test_portable_answer_never_echoes_a_token_pasted_into_a_nodes_model_link(live):
    hint = {"name": TINY_LORA, "directory": "loras",
            "url": f"{live.up.base}/api/download/models/9100101?token=SECRET"}
    wf = make_workflow([node(1, "LoraLoader", [TINY_LORA, 1.0, 1.0], models=[hint])])
    r = await live.client.post("/comfyfixer/portable", json={"workflow": wf})
    assert r.status == 200, await r.text()
    answer = await r.text()
    assert "SECRET" not in answer and "9100101" in answer


async def test_the_panel_saves_a_lockfile_and_fixes_duplicates(live):
    from tests.test_schema import check

    body = b"checkpoint bytes" * 500
    (live.root / "models/checkpoints/present.safetensors").write_bytes(body)
    (live.root / "models/loras/copy of present.safetensors").write_bytes(body)
    r = await live.client.post("/comfyfixer/lockfile", json={"workflow": lora_workflow(live.up)})
    assert r.status == 200
    lock = await r.json()
    check("models.lock.json", lock)
    import hashlib
    assert [(m["folder"], m["name"], m["sha256"]) for m in lock["models"]] == [
        ("checkpoints", "present.safetensors", hashlib.sha256(body).hexdigest())]
    assert lock["unresolved"] == [f"loras/{TINY_LORA}"]
    r = await live.client.get("/comfyfixer/duplicates")
    assert r.status == 405  # hashing every model file is work a GET (an <img> of any page) must never start
    r = await live.client.post("/comfyfixer/duplicates", json={})
    answer = await r.json()
    assert answer["report"]["wasted_bytes"] == len(body)
    r = await live.client.post("/comfyfixer/duplicates/fix", json={})
    answer = await r.json()
    check("duplicates", answer["report"])
    assert answer["report"]["wasted_bytes"] == 0 and answer["report"]["linked"] == 1
    assert (live.root / "models/loras/copy of present.safetensors").read_bytes() == body
    assert (live.root / "models/checkpoints/present.safetensors").stat().st_nlink == 2

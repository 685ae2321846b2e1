"""Talking to ComfyUI-Manager: detection and queueing one install, against fake Manager servers.

The fake new-API server validates the queued task with the real `QueueTaskItem` model from the
installed comfyui-manager package, and refuses form content types as Manager does.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from fixer.models import NodeRef, Usage
from fixer.nodepacks.lookup import PackIndex, match_missing_nodes
from fixer.nodepacks.manager import (
    InstallTarget,
    ManagerError,
    detect_from_routes,
    install_requests,
    installed_location,
    listed_target,
    probe,
    queue_install,
    registry_id_from_mappings,
)

RUNNING = "0.3.64"


def manager_models():
    """comfyui_manager/data_models/generated_models.py, loaded alone (the package itself needs ComfyUI)."""
    spec = importlib.util.find_spec("comfyui_manager")
    path = Path(list(spec.submodule_search_locations)[0]) / "data_models" / "generated_models.py"
    mod_spec = importlib.util.spec_from_file_location("cm_generated_models", path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module  # pydantic resolves the postponed annotations through it
    mod_spec.loader.exec_module(module)
    return module


MODELS = manager_models()


def make_fake_manager(api: str | None, *, mappings: dict | None = None, install_status: int = 200,
                      batch_failed: list[str] | None = None) -> tuple[web.Application, list]:
    """A ComfyUI server with the routes of one Manager API (None: no Manager). Logs every request."""
    log: list[tuple[str, str, object]] = []

    @web.middleware
    async def record(request, handler):
        body = await request.text()
        log.append((request.method, request.path, json.loads(body) if body else None))
        if request.method == "POST" and request.content_type in (
                "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"):
            return web.Response(status=400, text="Invalid Content-Type for this endpoint.")
        return await handler(request)

    app = web.Application(middlewares=[record])
    routes = web.RouteTableDef()

    @routes.get("/object_info")
    async def object_info(request):
        return web.json_response({})

    if api in ("v2_task", "v2_batch"):
        @routes.get("/v2/manager/version")
        async def version(request):
            return web.Response(text="V4.3")

        @routes.get("/v2/manager/is_legacy_manager_ui")
        async def legacy_flag(request):
            return web.json_response({"is_legacy_manager_ui": api == "v2_batch"})

        @routes.get("/v2/customnode/getmappings")
        async def getmappings(request):
            assert request.query["mode"] == "cache"
            return web.json_response(mappings or {})

    if api == "v2_task":
        @routes.post("/v2/manager/queue/task")
        async def task(request):
            try:
                item = MODELS.QueueTaskItem.model_validate(await request.json())
            except Exception as e:  # pydantic's ValidationError, as Manager answers it
                return web.Response(status=400, text=f"Invalid task data: {e}")
            # params is a Union; Manager's do_install needs it parsed as InstallPackParams.
            if not isinstance(item.params, MODELS.InstallPackParams):
                return web.Response(status=400, text=f"params parsed as {type(item.params).__name__}")
            return web.Response(status=install_status)

        @routes.post("/v2/manager/queue/start")
        async def start(request):
            return web.Response(status=200)

    if api == "v2_batch":
        @routes.post("/v2/manager/queue/batch")
        async def batch(request):
            return web.json_response({"failed": batch_failed or []}, status=install_status)

    if api == "legacy":
        @routes.get("/manager/version")
        async def old_version(request):
            return web.Response(text="V3.31.1")

        @routes.get("/customnode/getmappings")
        async def old_mappings(request):
            return web.json_response(mappings or {})

        @routes.post("/manager/queue/install")
        async def old_install(request):
            return web.Response(status=install_status)

        @routes.get("/manager/queue/start")
        async def old_start(request):
            return web.Response(status=200)

    app.add_routes(routes)
    return app, log


async def start_fake(aiohttp_server, api, **kw):
    app, log = make_fake_manager(api, **kw)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), log


@pytest.fixture(scope="module")
def real() -> PackIndex:
    return PackIndex.load(None)


def match_for(real, node_type, **hints):
    [m] = match_missing_nodes([NodeRef(node_type, [Usage("wf.json", "1", node_type)], **hints)], real, RUNNING)
    return m


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize("paths,api", [
    (["/prompt", "/v2/manager/queue/task", "/v2/manager/queue/start"], "v2_task"),
    (["/api/v2/manager/queue/batch", "/v2/manager/version"], "v2_batch"),
    (["/manager/queue/install", "/customnode/getmappings"], "legacy"),
    (["/prompt", "/object_info"], None),
])
def test_detect_from_routes_names_the_install_api(paths, api):
    assert detect_from_routes(paths) == api


async def test_probe_finds_new_manager_api_with_gets_only(aiohttp_server):
    url, log = await start_fake(aiohttp_server, "v2_task")
    status = await probe(url)
    assert (status.running, status.api, status.version, status.can_install) == (True, "v2_task", "V4.3", True)
    assert {m for m, _, _ in log} == {"GET"}


async def test_probe_finds_manager_running_its_legacy_ui(aiohttp_server):
    url, _ = await start_fake(aiohttp_server, "v2_batch")
    assert (await probe(url)).api == "v2_batch"


async def test_probe_finds_manager_3x_from_custom_nodes(aiohttp_server):
    url, _ = await start_fake(aiohttp_server, "legacy")
    status = await probe(url)
    assert (status.api, status.version) == ("legacy", "V3.31.1")


async def test_probe_without_manager_routes_reports_not_running_but_installed_package(aiohttp_server):
    url, _ = await start_fake(aiohttp_server, None)
    status = await probe(url)
    assert (status.running, status.api, status.can_install) == (False, None, False)
    assert status.installed and status.location.endswith("comfyui_manager")
    assert "--enable-manager" in status.message()


async def test_probe_unreachable_server_says_what_to_check(unused_tcp_port):
    with pytest.raises(ManagerError, match="did not answer.*Check that ComfyUI is running"):
        await probe(f"http://127.0.0.1:{unused_tcp_port}")


def test_installed_location_prefers_custom_nodes_folder(tmp_path):
    pack = tmp_path / "custom_nodes" / "ComfyUI-Manager"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text("")
    assert installed_location(tmp_path) == str(pack)
    assert installed_location(tmp_path / "elsewhere", search_package=False) is None


# ---------------------------------------------------------------- request bodies


def test_registry_pack_task_body_is_a_valid_manager_queue_task(real):
    target = InstallTarget.of(match_for(real, "UnetLoaderGGUF", cnr_id="comfyui-gguf"))
    [task, start] = install_requests(target, "v2_task", client_id="c1", ui_id="u1")
    item = MODELS.QueueTaskItem.model_validate(task.body)
    assert isinstance(item.params, MODELS.InstallPackParams)
    assert (item.kind.value, item.params.id, item.params.selected_version) == ("install", "comfyui-gguf", "latest")
    assert (start.method, start.path) == ("POST", "/v2/manager/queue/start")


def test_git_pack_batch_item_carries_the_files_manager_checks(real):
    target = InstallTarget.of(match_for(real, "CR Seed to Int"))
    [batch] = install_requests(target, "v2_batch", client_id="c1", ui_id="u1")
    item = batch.body["install"][0]
    assert (item["id"], item["version"], item["selected_version"]) == (
        "ComfyUI_Comfyroll_CustomNodes", "unknown", "unknown")
    assert item["files"] == ["https://github.com/Suzie1/ComfyUI_Comfyroll_CustomNodes"]


def test_candidate_json_from_the_panel_is_an_install_target(real):
    m = match_for(real, "ShowText")
    cand = json.loads(json.dumps(m.candidates[0].__dict__))
    target = InstallTarget.of(cand)
    assert target.repository == m.candidates[0].repository and target.cnr_id is None


def test_core_nodes_and_unknown_types_are_not_install_targets(real):
    with pytest.raises(ManagerError, match="update ComfyUI"):
        InstallTarget.of(match_for(real, "Future", cnr_id="comfy-core", ver="9.0.0"))
    with pytest.raises(ManagerError, match="no pack is known"):
        InstallTarget.of(match_for(real, "Zq9 Nobody Ships This"))


def test_registry_id_found_by_node_list_in_running_managers_mappings(real):
    pack = real.pack("https://github.com/Suzie1/ComfyUI_Comfyroll_CustomNodes")
    mappings = {"https://github.com/other/x": [["A"], {}],
                "comfyroll": [list(pack.node_types), {"title_aux": "Comfyroll Studio"}]}
    assert registry_id_from_mappings(mappings, pack.repository, pack.node_types) == "comfyroll"
    kept_url = {pack.repository: [list(pack.node_types), {}]}
    assert registry_id_from_mappings(kept_url, pack.repository, pack.node_types) is None


def test_registry_id_tolerates_pattern_appended_types_but_not_indistinguishable_forks():
    repo, types = "https://github.com/me/Nodes", ["A (me)", "B (me)"]
    appended = {"me-nodes": [types + ["C (me)"], {"nodename_pattern": r" \(me\)$"}]}
    assert registry_id_from_mappings(appended, repo, types) == "me-nodes"
    forks = {"fork-one": [types, {}], "fork-two": [types, {}]}
    assert registry_id_from_mappings(forks, repo, types) is None
    forks["nodes"] = [types, {}]  # the registry id that is the repository's own name wins
    assert registry_id_from_mappings(forks, repo, types) == "nodes"


# ---------------------------------------------------------------- queueing


async def test_queue_install_registry_pack_with_new_api(aiohttp_server, real):
    url, log = await start_fake(aiohttp_server, "v2_task")
    queued = await queue_install(url, match_for(real, "UnetLoaderGGUF", cnr_id="comfyui-gguf"), "v2_task",
                                 client_id="panel")
    assert [(m, p) for m, p, _ in log] == [("POST", "/v2/manager/queue/task"), ("POST", "/v2/manager/queue/start")]
    assert log[0][2]["params"]["id"] == "comfyui-gguf" and log[0][2]["client_id"] == "panel"
    assert queued.id == "comfyui-gguf" and "restart ComfyUI" in queued.message


async def test_queue_install_git_pack_uses_registry_id_the_running_manager_knows(aiohttp_server, real):
    pack = real.pack("https://github.com/Suzie1/ComfyUI_Comfyroll_CustomNodes")
    url, log = await start_fake(aiohttp_server, "v2_task", mappings={"comfyroll": [list(pack.node_types), {}]})
    queued = await queue_install(url, match_for(real, "CR Seed to Int"), "v2_task", index=real)
    assert queued.id == "comfyroll"
    assert log[1][2]["params"]["selected_version"] == "latest"


async def test_queue_install_git_pack_outside_registry_clones_by_repo_name(aiohttp_server, real):
    pack = real.pack("https://github.com/Suzie1/ComfyUI_Comfyroll_CustomNodes")
    url, log = await start_fake(aiohttp_server, "v2_task", mappings={pack.repository: [list(pack.node_types), {}]})
    queued = await queue_install(url, match_for(real, "CR Seed to Int"), "v2_task", index=real)
    params = log[1][2]["params"]
    assert (queued.id, params["selected_version"], params["repository"]) == (
        "ComfyUI_Comfyroll_CustomNodes", "unknown", pack.repository)


async def test_queue_install_with_legacy_ui_posts_one_batch(aiohttp_server, real):
    url, log = await start_fake(aiohttp_server, "v2_batch")
    await queue_install(url, match_for(real, "CR Seed to Int"), "v2_batch")
    assert [(m, p) for m, p, _ in log] == [("POST", "/v2/manager/queue/batch")]
    assert log[0][2]["install"][0]["files"] == ["https://github.com/Suzie1/ComfyUI_Comfyroll_CustomNodes"]


async def test_queue_install_with_manager_3x_posts_install_then_starts_queue(aiohttp_server, real):
    url, log = await start_fake(aiohttp_server, "legacy")
    await queue_install(url, match_for(real, "UnetLoaderGGUF", cnr_id="comfyui-gguf"), "legacy")
    assert [(m, p) for m, p, _ in log] == [("POST", "/manager/queue/install"), ("GET", "/manager/queue/start")]
    assert log[0][2]["id"] == "comfyui-gguf" and log[0][2]["version"] == "latest"


async def test_security_refusal_says_how_to_proceed(aiohttp_server, real):
    url, log = await start_fake(aiohttp_server, "v2_task", install_status=403)
    with pytest.raises(ManagerError, match="security_level forbids it.*install by hand"):
        await queue_install(url, match_for(real, "UnetLoaderGGUF", cnr_id="comfyui-gguf"), "v2_task")
    assert [p for _, p, _ in log] == ["/v2/manager/queue/task"]  # the queue was not started


async def test_batch_reporting_failure_is_an_error(aiohttp_server, real):
    url, _ = await start_fake(aiohttp_server, "v2_batch", batch_failed=["ComfyUI_Comfyroll_CustomNodes"])
    with pytest.raises(ManagerError, match="refused to queue Comfyroll Studio"):
        await queue_install(url, match_for(real, "CR Seed to Int"), "v2_batch")


async def test_wrong_api_guess_names_the_missing_route(aiohttp_server, real):
    url, _ = await start_fake(aiohttp_server, "legacy")
    with pytest.raises(ManagerError, match="no /v2/manager/queue/task route"):
        await queue_install(url, match_for(real, "UnetLoaderGGUF", cnr_id="comfyui-gguf"), "v2_task")


# ---------------------------------------------------------------- what the install route may ask for


def test_a_repository_in_managers_list_is_an_install_target(real):
    target = listed_target(real, "cubiq/ComfyUI_IPAdapter_plus")
    assert (target.repository, target.cnr_id) == ("https://github.com/cubiq/ComfyUI_IPAdapter_plus", None)


def test_a_registry_id_is_installed_by_that_id(real):
    target = listed_target(real, "comfyui-gguf")
    assert (target.cnr_id, target.repository) == ("comfyui-gguf", None)


def test_an_unlisted_repository_is_never_an_install_target(real):
    with pytest.raises(ManagerError, match="unlisted repository") as e:
        listed_target(real, "attacker/ComfyUI_IPAdapter_plus")
    assert "https://github.com/attacker/ComfyUI_IPAdapter_plus" in str(e.value)



def test_a_registry_id_no_list_knows_is_never_an_install_target(real):
    with pytest.raises(ManagerError, match="not a pack in ComfyUI-Manager's list"):
        listed_target(real, "comfyui-impact-pack-evil")

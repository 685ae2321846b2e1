"""__init__.py: harmless outside ComfyUI, routes registered exactly once inside it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from aiohttp import web
from fake_comfy import PACK_DIR, install_comfy, load_pack, unload_pack

from tests.conftest import PAGE_HEADERS

CONTRACT_ROUTES = sorted([("GET", f"/comfyfixer/{p}") for p in ("status", "settings", "folder_map")]
                         + [("POST", f"/comfyfixer/{p}") for p in ("scan", "fix", "cancel", "unqueue", "retry",
                                                                    "relink", "settings", "portable", "install_pack",
                                                                    "approve", "discard_partial", "paste_link",
                                                                    "folder_map", "lockfile", "duplicates",
                                                                    "duplicates/fix")])
COMFY_NAME = str(PACK_DIR).replace(".", "_x_")  # the sys.modules key ComfyUI's loader uses
HEAVY = ("aiohttp", "requests", "huggingface_hub", "safetensors", "server_routes", "fixer.app.service",
         "fixer.transfer", "PIL")


def test_import_outside_comfyui_only_defines_the_exports(tmp_path):
    code = textwrap.dedent(f"""
        import importlib.util, json, os, sys
        before = set(sys.modules)
        spec = importlib.util.spec_from_file_location({COMFY_NAME!r}, {str(PACK_DIR / "__init__.py")!r})
        pack = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = pack
        spec.loader.exec_module(pack)
        new = sorted(set(sys.modules) - before)
        print(json.dumps({{"nodes": sorted(pack.NODE_CLASS_MAPPINGS), "names": pack.NODE_DISPLAY_NAME_MAPPINGS,
                          "web": pack.WEB_DIRECTORY, "new": new, "files": sorted(os.listdir("."))}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["nodes"] == ["ComfyFixerDownloadModel", "ComfyFixerReport"]
    assert got["names"] == {"ComfyFixerDownloadModel": "ComfyFixer Download Model",
                            "ComfyFixerReport": "ComfyFixer Report"}
    assert got["web"] == "./web"
    assert got["files"] == [] and out.stderr == ""
    assert "server" not in got["new"] and "folder_paths" not in got["new"]
    heavy = [m for m in got["new"] if any(m == h or m.startswith(h + ".") or m.endswith("." + h) for h in HEAVY)]
    assert heavy == []


@pytest.fixture
def comfy(monkeypatch, comfy_root):
    server = install_comfy(monkeypatch, comfy_root)
    yield server
    unload_pack(COMFY_NAME)
    unload_pack("custom_nodes.ComfyFixerSmart")


def test_routes_register_once_when_the_pack_is_imported_under_two_names(comfy):
    first = load_pack(COMFY_NAME)
    second = load_pack("custom_nodes.ComfyFixerSmart")
    assert first is not second
    got = sorted((r.method, r.path) for r in comfy.PromptServer.instance.routes)
    assert got == CONTRACT_ROUTES


async def test_registered_routes_survive_comfyuis_add_routes_and_serve_under_api(comfy, aiohttp_client, comfy_root):
    load_pack(COMFY_NAME)
    load_pack("custom_nodes.ComfyFixerSmart")
    app = web.Application()
    # As ComfyUI server.py add_routes: /api copies of every RouteDef, then the plain routes.
    routes = comfy.PromptServer.instance.routes
    app.add_routes([web.RouteDef(r.method, "/api" + r.path, r.handler, r.kwargs) for r in routes])
    app.add_routes(routes)
    client = await aiohttp_client(app, headers=PAGE_HEADERS)
    r = await client.get("/api/comfyfixer/status")
    assert r.status == 200, await r.text()
    assert (await r.json())["phase"] == "idle"
    assert (comfy_root / "user" / "comfyfixer").is_dir()  # the state dir of the lazily built service


async def test_done_event_refreshes_comfyuis_file_list_then_reaches_the_page(comfy):
    import folder_paths

    from fixer.comfy import runtime as comfy_runtime

    folder_paths.filename_list_cache.update({"loras": (["old.safetensors"], {}, 0.0), "vae": ([], {}, 0.0)})
    forward = comfy_runtime.event_forwarder(comfy.PromptServer.instance.send_sync, folder_paths)
    payload = {"run_id": "r1", "summary": {"done": 1}, "files": [{"folder": "loras", "name": "new.safetensors"}]}
    forward("comfyfixer.done", payload)
    assert "loras" not in folder_paths.filename_list_cache and "vae" in folder_paths.filename_list_cache
    assert comfy.PromptServer.instance.sent == [("comfyfixer.done", payload)]


async def test_relink_through_the_comfy_service_refreshes_the_list_and_tells_the_page(comfy, comfy_root):
    import folder_paths

    import server_routes

    src = comfy_root / "models" / "checkpoints" / "x.safetensors"
    src.write_bytes(b"weights")
    folder_paths.filename_list_cache["loras"] = ([], {}, 0.0)
    svc = server_routes.comfy_runtime.build_service(server_routes.comfy_links(comfy.PromptServer.instance))
    workflow = {"nodes": [{"id": 1, "type": "LoraLoader", "widgets_values": ["x.safetensors", 1.0, 1.0]}]}
    await svc.relink(workflow, "wf.json", "x.safetensors", "loras", str(src))
    done = [data for event, data in comfy.PromptServer.instance.sent if event == "comfyfixer.done"]
    assert done and done[-1]["files"] == [{"folder": "loras", "name": "x.safetensors", "saved_as": None}]
    assert "loras" not in folder_paths.filename_list_cache
    assert (comfy_root / "models" / "loras" / "x.safetensors").read_bytes() == b"weights"


def test_both_imports_share_one_engine_and_one_service(comfy):
    # The second import registers no routes; both copies of the adapters reach the one engine, `fixer`.
    first, second = load_pack(COMFY_NAME), load_pack("custom_nodes.ComfyFixerSmart")
    routes_side = sys.modules[first.__name__ + ".server_routes"].comfy_runtime
    nodes_side = sys.modules[second.__name__ + ".nodes"].comfy_runtime
    assert routes_side is nodes_side is sys.modules["fixer.comfy.runtime"]
    assert not [m for m in sys.modules if m.endswith(".fixer")]
    assert routes_side.service() is nodes_side.service()

"""Every refusal a /comfyfixer route answers carries a stable code, and the page words each code.

The contract (like tests/test_error_codes.py for the engine's errors): each way a route refuses a
request is played through aiohttp (another site's page, a missing panel header, a rebound host name,
a body of the wrong type, size or shape, a busy server, a bug, ComfyUI-Manager absent, a queued fix
that is no longer queued), its answer's `code` is the one named here, and web/lib/words.js, run with
node, gives that code words of its own: never the generic code, never the raw English message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import server_routes as sr
from fixer.app.service import FixerService, NotQueued
from fixer.comfy import web_guard
from fixer.errors import all_codes
from fixer.host.host import StandaloneHost
from tests.conftest import PAGE_HEADERS, ROOT, make_workflow, node
from tests.test_error_codes import needs_node, page
from tests.test_routes import routes_client

JSON = {"Content-Type": "application/json"}
# Codes whose message is itself written for the person at the page (it names the setting, the field, the
# step to take): words.js shows the message for them. Every other code a route answers has its own words.
MESSAGE_IS_THE_WORDS = {"error", "config_invalid", "request_invalid", "download_failed"}


class Refuses:
    """A service standing in for FixerService: each method raises what the real one raises."""

    def status(self) -> dict[str, Any]:
        raise RuntimeError("a bug in the service")

    def unqueue(self, name: str) -> dict[str, Any]:
        raise NotQueued(name)

    def check_offered_pack(self, pack_id: str) -> None:
        return None


@pytest.fixture
async def client(aiohttp_client):
    return await routes_client(aiohttp_client, Refuses)


# (what the caller did, method, route, request kwargs, status, code)
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("no panel header (an old cached panel, a proxy)", "GET", "settings", {}, 403, "client_header_missing"),
    ("another site's page (Sec-Fetch-Site)", "POST", "fix",
     {"json": {}, "headers": {**PAGE_HEADERS, "Sec-Fetch-Site": "cross-site"}}, 403, "cross_site"),
    ("another site's page (Origin)", "POST", "scan",
     {"json": {}, "headers": {**PAGE_HEADERS, "Origin": "http://evil.example", "Host": "127.0.0.1:8188"}},
     403, "cross_site"),
    ("a rebound host name", "GET", "status",
     {"headers": {**PAGE_HEADERS, "Host": "rebind.attacker.test:8188"}}, 403, "host_untrusted"),
    ("a body that is not JSON", "POST", "scan", {"data": b"{oops", "headers": {**PAGE_HEADERS, **JSON}},
     400, "body_invalid"),
    ("a form post", "POST", "fix", {"data": b"{}", "headers": {**PAGE_HEADERS, "Content-Type": "text/plain"}},
     415, "body_invalid"),
    ("a field of the wrong type", "POST", "retry", {"json": {"name": 7}, "headers": PAGE_HEADERS},
     400, "body_invalid"),
    ("a body over the cap", "POST", "scan",
     {"data": b'{"workflow": {"x": "' + b"a" * 8000 + b'"}}', "headers": {**PAGE_HEADERS, **JSON}},
     413, "body_too_large"),
    ("a bug behind the route", "GET", "status", {"headers": PAGE_HEADERS}, 500, "unexpected"),
    ("a fix that is not queued", "POST", "unqueue", {"json": {"workflow": "B"}, "headers": PAGE_HEADERS},
     409, "not_queued"),
    ("install without ComfyUI-Manager", "POST", "install_pack",
     {"json": {"pack_id": "comfyui-foo"}, "headers": PAGE_HEADERS}, 409, "manager_missing"),
]


@pytest.mark.parametrize("what,method,route,kwargs,status,code", CASES, ids=[c[0] for c in CASES])
async def test_each_refusal_of_a_route_answers_its_own_code(client, what, method, route, kwargs, status, code,
                                                            monkeypatch):
    """Fails on 9ea2fee: the 403s and the body refusals all answered the generic `request_invalid`."""
    monkeypatch.delenv(web_guard.ALLOWED_HOSTS_ENV, raising=False)
    r = await client.request(method, f"/comfyfixer/{route}", **kwargs)
    body = await r.json()
    assert (r.status, body["code"]) == (status, code), body


def test_a_busy_server_and_a_slow_body_have_their_codes():
    assert web_guard.RequestRefused(503, "busy").code == "service_busy"
    assert web_guard.RequestRefused(408, "slow").code == "body_timeout"


def codes_the_routes_name() -> set[str]:
    """Every code the route layer can answer: named at a refusal, by status, and the service's raise sites."""
    named: set[str] = set(web_guard.STATUS_CODES.values()) | {"request_invalid"}
    for path in [ROOT / "server_routes.py", *(ROOT / "fixer" / "comfy").glob("*.py"),
                 ROOT / "fixer" / "app" / "service.py", ROOT / "fixer" / "app" / "settings.py"]:
        text = path.read_text(encoding="utf-8")
        named |= set(re.findall(r'\b(?:code="|default_code(?:: ClassVar\[ErrorCode\])? = ")([a-z_0-9]+)"', text))
        named |= set(re.findall(r'\(\s*"([a-z_]+)",\s*lambda', text))  # caller_refusal's (code, check) pairs
    return named


def test_the_route_codes_are_known_codes():
    named = codes_the_routes_name()
    assert {c[5] for c in CASES} <= named <= set(all_codes()), named - set(all_codes())


@needs_node
def test_every_code_a_route_answers_has_words_of_its_own_on_the_page():
    """Fails on 9ea2fee: words.js had no entry for the route refusals (a 403 showed its raw English)."""
    message = "Request refused: the raw English of the server"
    for code in sorted(codes_the_routes_name()):
        said = page("requestErrorWords", {"code": code, "message": message, "status": 403})
        assert said and said["words"], code
        if code not in MESSAGE_IS_THE_WORDS:
            assert said["words"] != message and "Request refused" not in said["words"], code
            assert said["details"] == message, code  # the server's own words stay behind the toggle


@needs_node
def test_the_403s_say_what_the_user_can_do():
    def words(code: str) -> str:
        return page("requestErrorWords", {"code": code, "message": "…", "status": 403})["words"]

    assert "Reload the page" in words("client_header_missing") and "proxy" in words("client_header_missing")
    assert "COMFYFIXER_ALLOWED_HOSTS" in words("host_untrusted")
    assert "another site" in words("cross_site")
    # Without a code (a 404 of an older pack, no answer at all) the client's own message is the words.
    assert page("requestErrorWords", {"code": None, "message": "ComfyUI did not answer", "status": 0}) == {
        "words": "ComfyUI did not answer", "details": None}


async def test_unqueue_through_the_route_takes_the_fix_off_the_queue(aiohttp_client, comfy_root: Path,
                                                                     tmp_path: Path, upstream):
    svc = FixerService(StandaloneHost.from_root(comfy_root), tmp_path / "state", comfyui_root=comfy_root)
    routes = web.RouteTableDef()
    sr.add_routes(routes, lambda: svc)
    app = web.Application()
    app.add_routes(routes)
    http = await aiohttp_client(app, headers=PAGE_HEADERS)
    lora = "fixture_tiny_lora.safetensors"
    r = await http.post("/comfyfixer/fix", json={"workflow": make_workflow([node(1, "LoraLoader", [lora, 1, 1])]),
                                                 "name": "A", "review": True})
    assert r.status == 202
    r = await http.post("/comfyfixer/fix", json={"workflow": make_workflow([node(1, "LoraLoader", [lora, 1, 1])]),
                                                 "name": "B"})
    assert (await r.json())["queued"] == ["B"]
    r = await http.post("/comfyfixer/unqueue", json={"workflow": "B"})
    assert r.status == 200 and (await r.json())["queued"] == []
    r = await http.post("/comfyfixer/unqueue", json={})
    assert (r.status, (await r.json())["code"]) == (400, "body_invalid")
    svc.cancel()
    await svc._task

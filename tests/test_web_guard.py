"""Who may call the routes and what a body must hold: the pure checks of fixer/comfy/web_guard.py."""

from __future__ import annotations

import pytest

from fixer.comfy import web_guard as wg
from fixer.comfy.web_guard import RequestRefused

# ---- DNS rebinding: only IP literals, localhost and configured names reach the routes ----------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8188", "192.168.1.20:8188", "0.0.0.0:8188", "[::1]:8188",
                                  "[::1]", "::1", "[fe80::1]:80", "localhost", "localhost:8188", "LOCALHOST:8188",
                                  "localhost.:8188", None])
def test_ip_literal_or_localhost_host_is_allowed(host):
    assert wg.host_reason(host) is None


@pytest.mark.parametrize("host", ["rebind.attacker.test:8188", "attacker.test", "127.0.0.1.nip.io:8188",
                                  "localhost.attacker.test", "comfy.lan:8188"])
def test_a_domain_name_host_is_refused_saying_how_to_allow_it(host):
    reason = wg.host_reason(host)
    assert "DNS rebinding" in reason and wg.ALLOWED_HOSTS_ENV in reason
    assert f"={host.split(':')[0].lower()}" in reason


@pytest.mark.parametrize("host", ["evil.example@127.0.0.1:8188", "127.0.0.1:80/x", "127.0.0.1:notaport",
                                  "[::1", "[::1]x", "127.0.0.1:99999", "a b", ""])
def test_a_host_header_that_is_not_a_host_is_refused(host):
    assert "not a host name" in wg.host_reason(host)


def test_host_names_the_user_configured_are_allowed():
    names = wg.configured_host_names({wg.ALLOWED_HOSTS_ENV: " Comfy.LAN , gpu-box. ,"})
    assert names == {"comfy.lan", "gpu-box"}
    assert wg.host_reason("comfy.lan:8188", names) is None and wg.host_reason("GPU-BOX", names) is None
    assert wg.host_reason("other.lan", names) is not None


def test_caller_refusal_is_403_for_rebinding_and_for_cross_origin():
    env = {wg.ALLOWED_HOSTS_ENV: "comfy.lan"}
    rebinding = wg.caller_refusal("http://rebind.test:8188", "rebind.test:8188", environ={})
    assert rebinding.status == 403 and "DNS rebinding" in rebinding.message
    cross = wg.caller_refusal("http://evil.example", "comfy.lan:8188", environ=env)
    assert cross.status == 403 and "Cross-origin" in cross.message
    assert wg.caller_refusal("http://comfy.lan:8188", "comfy.lan:8188", environ=env, client_header="panel") is None


# ---- cross-origin, content type, fields ----------------------------------------------------------

@pytest.mark.parametrize("origin,host", [
    (None, "127.0.0.1:8188"),
    ("http://127.0.0.1:8188", "127.0.0.1:8188"),
    ("http://192.168.1.20:8188", "192.168.1.20:8188"),
    ("https://comfy.example.org", "comfy.example.org:443"),
    ("http://LOCALHOST:8188", "localhost:8188"),
])
def test_same_origin_or_no_origin_is_allowed(origin, host):
    scheme = "https" if origin and origin.startswith("https") else "http"
    assert wg.cross_origin_reason(origin, host, scheme) is None


@pytest.mark.parametrize("origin,host", [
    ("http://evil.example", "127.0.0.1:8188"),
    ("http://evil.example", "0.0.0.0:8188"),
    ("http://evil.example:8188", "192.168.1.20:8188"),
    ("http://192.168.1.20:9999", "192.168.1.20:8188"),
    ("http://127.0.0.1", "127.0.0.1:8188"),
    ("null", "127.0.0.1:8188"),
    ("file://", "127.0.0.1:8188"),
    ("http://127.0.0.1:8188", None),
])
def test_cross_origin_is_refused(origin, host):
    assert "Cross-origin request refused" in wg.cross_origin_reason(origin, host, "http")


@pytest.mark.parametrize("ct", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_content_types_are_accepted(ct):
    assert wg.json_content_type_reason(ct) is None


@pytest.mark.parametrize("ct", [None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_non_json_content_types_are_refused(ct):
    assert "Content-Type: application/json" in wg.json_content_type_reason(ct)


@pytest.mark.parametrize("raw,words", [(b"", "empty"), (b"{not json", "not valid JSON"),
                                        (b"[1, 2]", "must be a JSON object"), (b"\xff\xfe", "not valid JSON"),
                                        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply")])
def test_decode_body_refuses_what_is_not_a_json_object(raw, words):
    with pytest.raises(RequestRefused, match=words) as e:
        wg.decode_body(raw)
    assert e.value.status == 400


@pytest.mark.parametrize("name", ["../x.safetensors", "a/../../x.safetensors", "/etc/passwd", "C:/x.safetensors",
                                  "c:\\models\\x.safetensors", "\\\\server\\share\\x.safetensors", "a\x00b",
                                  "a\nb.safetensors"])
def test_model_names_that_leave_the_folder_are_refused(name):
    with pytest.raises(RequestRefused) as e:
        wg.field_model_name({"name": name})
    assert e.value.status == 400 and "'name'" in e.value.message


def test_model_name_with_subfolder_is_accepted():
    assert wg.field_model_name({"name": "SDXL/x.safetensors"}) == "SDXL/x.safetensors"


def test_items_must_be_a_list_of_safe_names():
    assert wg.field_items({"items": ["a.safetensors", "sub/b.pt"]}) == ["a.safetensors", "sub/b.pt"]
    with pytest.raises(RequestRefused, match=r"'items\[1\]' must be a string"):
        wg.field_items({"items": ["a.safetensors", 3]})
    with pytest.raises(RequestRefused, match=r"'items\[0\]'"):
        wg.field_items({"items": ["../a.safetensors"]})
    with pytest.raises(RequestRefused, match="'items' must be a list"):
        wg.field_items({"items": "a.safetensors"})


@pytest.mark.parametrize("folder", ["../loras", "loras/x", "/abs", "..", ""])
def test_folder_must_be_a_plain_key(folder):
    with pytest.raises(RequestRefused, match="'folder'"):
        wg.field_folder({"folder": folder})


@pytest.mark.parametrize("path", ["relative/x.safetensors", "x.safetensors", "C:x"])
def test_relink_path_must_be_absolute(path):
    with pytest.raises(RequestRefused, match="'path' must be an absolute path"):
        wg.field_abs_path({"path": path})


@pytest.mark.parametrize("pack_id", ["comfyui-foo", "github-user/repo.name", "rgthree-comfy"])
def test_pack_ids_in_manager_form_are_accepted(pack_id):
    assert wg.field_pack_id({"pack_id": pack_id}) == pack_id


@pytest.mark.parametrize("pack_id", ["../x", "a/b/c", "https://github.com/a/b", "a b", "-rf"])
def test_pack_ids_that_are_not_ids_are_refused(pack_id):
    with pytest.raises(RequestRefused, match="'pack_id'"):
        wg.field_pack_id({"pack_id": pack_id})


@pytest.mark.parametrize("fetch_site,header,refused", [
    ("same-origin", "panel", False), (None, "cli", False), ("none", "panel", False),
    ("cross-site", "panel", True), ("same-site", "panel", True), ("same-origin", None, True), (None, "  ", True),
])
def test_cross_site_reason_needs_the_clients_header_and_no_other_site(fetch_site, header, refused):
    assert (wg.cross_site_reason(fetch_site, header) is not None) is refused


def test_errors_map_to_http_statuses_by_type():
    from fixer.app.service import PackNotOffered, RunBusy
    from fixer.errors import ConfigError, RunLocked
    from fixer.nodepacks.manager import ManagerError

    assert wg.status_for(RunBusy("w")) == 409 and wg.status_for(RunLocked("/s", "pid 1")) == 409
    assert wg.status_for(PackNotOffered("x")) == 409
    assert wg.status_for(ManagerError("down")) == 409 and wg.status_for(ConfigError("bad")) == 400

    class RunBusyLookalike(ConfigError):  # a class name alone no longer decides
        pass

    RunBusyLookalike.__name__ = "RunBusy"
    assert wg.status_for(RunBusyLookalike("x")) == 400

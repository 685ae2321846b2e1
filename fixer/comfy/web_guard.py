"""What a request to the ComfyUI routes must be before it reaches the service: pure checks.

Who may ask (`host_reason` against DNS rebinding, `cross_origin_reason` and `cross_site_reason`
against other sites' pages), in which form (`json_content_type_reason`, `decode_body`), and the field
validators (`field_*`) that turn a decoded body into typed arguments or refuse it by name (the settings
are checked by their schema, fixer.app.settings). No aiohttp here: the adapter (server_routes.py) reads
the request and answers `RequestRefused.status` with its message.
"""

from __future__ import annotations

import ipaddress
import json
import os
import unicodedata
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from ..constants import CLIENT_HEADER
from ..errors import ErrorCode, FixerError, RunLocked
from ..read.names import unsafe_reason
from ..read.readers import json_cost_reason

# Host names the user reaches ComfyUI by, besides IP literals and localhost (comma-separated).
ALLOWED_HOSTS_ENV = "COMFYFIXER_ALLOWED_HOSTS"
MAX_TEXT_CHARS = 1024
MAX_ITEMS = 10_000
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


# The code of a refusal that names none, by its HTTP status: each is worded by the page (web/lib/words.js).
STATUS_CODES: dict[int, ErrorCode] = {400: "body_invalid", 408: "body_timeout", 413: "body_too_large",
                                      415: "body_invalid", 500: "unexpected", 503: "service_busy"}


class RequestRefused(Exception):
    """A request answered with `status` and {"error": message, "code": code} (and Retry-After, when set)."""

    def __init__(self, status: int, message: str, *, code: ErrorCode | None = None, retry_after: int | None = None):
        self.status = status
        self.message = message
        # One of fixer/errors.py's stable codes: the page words it (tests/test_route_codes.py).
        self.code: ErrorCode = code or STATUS_CODES.get(status, "request_invalid")
        self.retry_after = retry_after
        super().__init__(message)


# ---------------------------------------------------------------- who may ask


def split_host(host: str) -> tuple[str, int | None] | None:
    """A Host header as (name, port), or None when it is not one: "[::1]:8188" -> ("::1", 8188).

    Parsed by hand: urlsplit would read "evil.example@127.0.0.1" as the address after the "@".
    """
    host = host.strip()
    if not host or any(c in host for c in "@/\\?#") or any(c.isspace() for c in host):
        return None
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    elif host.count(":") == 1:
        name, _, port_text = host.partition(":")
    else:  # a bare name, or an IPv6 literal some clients send without brackets
        name, port_text = host, None
    if port_text is not None and not (port_text.isdigit() and int(port_text) <= 65535):
        return None
    return name.lower(), int(port_text) if port_text else None


def configured_host_names(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The host names the user allowed in COMFYFIXER_ALLOWED_HOSTS ("comfy.lan,gpu-box")."""
    raw = (os.environ if environ is None else environ).get(ALLOWED_HOSTS_ENV, "")
    return frozenset(n.strip().lower().rstrip(".") for n in raw.split(",") if n.strip())


def host_reason(host: str | None, allowed_names: Iterable[str] = ()) -> str | None:
    """Why the Host header is refused (a DNS-rebinding page), or None.

    A page of another site that re-points its own domain name at this machine passes every origin
    check (its Origin and Host agree), but its Host is always that domain name. So only IP
    literals, localhost and names the user configured may reach the routes. No Host header at all
    comes from tools (curl, scripts), never from a browser.
    """
    if host is None:
        return None
    parsed = split_host(host)
    if parsed is None:
        return f"Request refused: the Host header {host!r} is not a host name."
    name = parsed[0].rstrip(".")
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if name == "localhost" or name in set(allowed_names):
        return None
    return (f"Request refused: this server was reached under the name {name!r}, and a web page can make "
            "its own domain name point at your machine (DNS rebinding). If you open ComfyUI under that "
            f"name yourself, allow it: start ComfyUI with the environment variable {ALLOWED_HOSTS_ENV}={name} "
            "(comma-separated for several names). IP addresses and localhost always work.")


def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    parsed = split_host(netloc)
    if parsed is None:
        return ("", None)
    name, port = parsed
    return (name, port if port is not None else _DEFAULT_PORTS.get(scheme))


def cross_origin_reason(origin: str | None, host: str | None, scheme: str = "http") -> str | None:
    """Why a request is cross-origin (refuse it), or None.

    No Origin header means a same-origin fetch or a tool such as curl, which ComfyUI also lets
    through. Otherwise Origin's host:port must equal the Host header's, whatever address ComfyUI
    listens on (ComfyUI's own check only covers loopback hosts).
    """
    if origin is None:
        return None
    o = urlsplit(origin.strip())
    if o.scheme not in ("http", "https") or not o.hostname:
        return f"Cross-origin request refused (Origin {origin!r}). Use the ComfyUI page itself."
    o_host, o_port = _host_port(o.netloc, o.scheme)
    h_host, h_port = _host_port(host or "", scheme)
    if not h_host or (o_host, o_port) != (h_host, h_port):
        return (f"Cross-origin request refused: Origin {origin} does not match Host {host}. "
                "Use the ComfyUI page itself.")
    return None


# Sec-Fetch-Site values of requests a page of this origin (or a person at the address bar) makes.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def cross_site_reason(fetch_site: str | None, client_header: str | None) -> str | None:
    """Why a request may come from another site's page (refuse it), or None.

    `<img src>`, a link or a form send no Origin header on a GET, so `cross_origin_reason` alone lets
    them through. Browsers name the requesting site in Sec-Fetch-Site; older ones do not, so the panel
    also sends CLIENT_HEADER on every call: a page of another site cannot add a custom header without
    a CORS preflight, which ComfyUI does not grant for it. Tools (the CLI's --server, curl) send it too.
    """
    return cross_site_page_reason(fetch_site) or client_header_reason(client_header)


def cross_site_page_reason(fetch_site: str | None) -> str | None:
    """Why Sec-Fetch-Site names a page of another site, or None."""
    site = (fetch_site or "").strip().lower()
    if site and site not in _OWN_FETCH_SITES:
        return (f"Request refused: the browser says it comes from a page of another site (Sec-Fetch-Site: {site}). "
                "Use the ComfyUI page itself.")
    return None


def client_header_reason(client_header: str | None) -> str | None:
    """Why a request without CLIENT_HEADER is refused, or None."""
    if not (client_header or "").strip():
        return (f"Request refused: it lacks the {CLIENT_HEADER} header that the ComfyFixerSmart panel and CLI send "
                f"(a page of another site cannot add it). From a script, send the header {CLIENT_HEADER}: 1.")
    return None


def caller_refusal(origin: str | None, host: str | None, scheme: str = "http",
                   environ: dict[str, str] | None = None, *, fetch_site: str | None = None,
                   client_header: str | None = None) -> RequestRefused | None:
    """The 403 for a caller that may not use the routes (rebinding or another site's page), or None."""
    checks: tuple[tuple[ErrorCode, Callable[[], str | None]], ...] = (
        ("host_untrusted", lambda: host_reason(host, configured_host_names(environ))),
        ("cross_site", lambda: cross_origin_reason(origin, host, scheme)),
        ("cross_site", lambda: cross_site_page_reason(fetch_site)),
        ("client_header_missing", lambda: client_header_reason(client_header)))
    for code, check in checks:
        reason = check()
        if reason:
            return RequestRefused(403, reason, code=code)
    return None


# ---------------------------------------------------------------- body


def json_content_type_reason(content_type: str | None) -> str | None:
    """Only JSON bodies: a browser cannot send them cross-site without a CORS preflight."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return "Send the request body as JSON with the header Content-Type: application/json."
    return None


def _each_object(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def decode_body(raw: bytes, *, share_gil: bool = True) -> dict[str, Any]:
    if not raw.strip():
        raise RequestRefused(400, "The request body is empty; send a JSON object.")
    too_costly = json_cost_reason(raw)
    if too_costly:
        raise RequestRefused(413, f"The request body was not read: {too_costly}.")
    try:
        # Plain json.loads is one C call that holds the GIL for the whole parse (165 ms for a 13 MiB
        # workflow), so decoding in a thread would still stall the loop. A Python-level hook, called
        # for every object, lets the interpreter hand the GIL to the loop every few milliseconds
        # (`share_gil`; a process with no loop to serve, the scan worker, decodes at full speed).
        body = json.loads(raw, object_hook=_each_object if share_gil else None)
    except (UnicodeDecodeError, ValueError) as e:
        raise RequestRefused(400, f"The request body is not valid JSON: {e}") from None
    except RecursionError:
        raise RequestRefused(400, "The request body is nested too deeply to be a workflow.") from None
    if not isinstance(body, dict):
        raise RequestRefused(400, f"The request body must be a JSON object, got {type(body).__name__}.")
    return body


# ---------------------------------------------------------------- fields


def _plain_text_reason(value: str, max_chars: int) -> str | None:
    if len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "contains control characters"
    return None


def field_workflow(body: dict[str, Any], field: str = "workflow") -> dict[str, Any]:
    value = body.get(field)
    if value is None:
        raise RequestRefused(400, f"'{field}' is missing: send the workflow JSON object.")
    if not isinstance(value, dict):
        raise RequestRefused(400, f"'{field}' must be a workflow JSON object, got {type(value).__name__}.")
    return value


def scan_fields(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """POST /scan's (workflow, name), checked the same in ComfyUI's process and in the scan worker."""
    return field_workflow(body), field_text(body, "name", default="workflow") or "workflow"


def field_text(body: dict[str, Any], field: str, *, default: str | None = None,
               required: bool = False, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise RequestRefused(400, f"'{field}' is missing.")
        return default
    if not isinstance(value, str):
        raise RequestRefused(400, f"'{field}' must be a string, got {type(value).__name__}.")
    if required and not value.strip():
        raise RequestRefused(400, f"'{field}' is empty.")
    reason = _plain_text_reason(value, max_chars)
    if reason:
        raise RequestRefused(400, f"'{field}' {reason}.")
    return value


def field_model_name(body: dict[str, Any], field: str = "name", *, required: bool = True) -> str | None:
    """A model name as the workflow writes it; never absolute, never climbing out with '..'."""
    value = field_text(body, field, required=required)
    if value is None:
        return None
    reason = unsafe_reason(value)
    if reason:
        raise RequestRefused(400, f"'{field}' {value!r} is refused: {reason}.")
    return value


def _field_list(body: dict[str, Any], field: str, what: str,
                check: Callable[[dict[str, Any], str], object]) -> list[str] | None:
    """A bounded list whose entries each pass `check` (which refuses one entry by its indexed name)."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list):
        raise RequestRefused(400, f"'{field}' must be a list of {what}, got {type(value).__name__}.")
    if len(value) > MAX_ITEMS:
        raise RequestRefused(400, f"'{field}' has more than {MAX_ITEMS} entries.")
    for i, item in enumerate(value):
        check({f"{field}[{i}]": item}, f"{field}[{i}]")
    return list(value)


def _model_name_entry(body: dict[str, Any], field: str) -> object:
    if not isinstance(body[field], str):
        raise RequestRefused(400, f"'{field}' must be a string, got {type(body[field]).__name__}.")
    return field_model_name(body, field)


def field_items(body: dict[str, Any], field: str = "items") -> list[str] | None:
    return _field_list(body, field, "model names", _model_name_entry)


def field_types(body: dict[str, Any], field: str = "types") -> list[str] | None:
    """Node type names, as a workflow's nodes write them; None (absent): every type."""
    return _field_list(body, field, "node type names", lambda b, f: field_text(b, f, required=True))


def field_folder(body: dict[str, Any], field: str = "folder") -> str:
    """A ComfyUI folder key such as "loras": one plain word, never a path."""
    value = field_text(body, field, required=True, max_chars=128)
    assert value is not None
    if not all(c.isalnum() or c in "_-." for c in value) or value.strip(".") == "":
        raise RequestRefused(400, f"'{field}' {value!r} is not a model folder name such as 'loras'.")
    return value


def field_abs_path(body: dict[str, Any], field: str = "path") -> str:
    value = field_text(body, field, required=True, max_chars=4096)
    assert value is not None
    if not (value.startswith("/") or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")):
        raise RequestRefused(400, f"'{field}' must be an absolute path of a file in a model folder.")
    return value


def field_pack_id(body: dict[str, Any], field: str = "pack_id") -> str:
    """A registry id ("comfyui-foo") or "github-user/repo", as ComfyUI-Manager takes them."""
    value = field_text(body, field, required=True, max_chars=200)
    assert value is not None
    parts = value.split("/")
    ok = len(parts) <= 2 and all(p and p[0].isalnum() and all(c.isalnum() or c in "_-." for c in p)
                                 for p in parts)
    if not ok:
        raise RequestRefused(400, f"'{field}' {value!r} is not a node pack id such as 'comfyui-foo' "
                                  "or 'github-user/repo'.")
    return value


def status_for(error: FixerError) -> int:
    """409 when the request was right but something else holds what it needs, else 400."""
    # Imported when an error is answered: the service and the Manager client are loaded by then.
    from ..app.service import NotQueued, PackNotOffered, RunBusy
    from ..nodepacks.manager import ManagerError

    return 409 if isinstance(error, (RunBusy, RunLocked, ManagerError, PackNotOffered, NotQueued)) else 400

"""Who may be downloaded from, and which token goes where. Pure functions over URLs.

Rules (issue 4, Safety): a download starts only at an allowed host (huggingface.co, civitai.com,
the hosts of HF_ENDPOINT / CIVITAI_BASE_URL, and hosts the user adds); https only, except
loopback. Redirects may leave the allowed hosts (both services answer with a signed CDN URL) but
never to plain http, unless the whole exchange already runs on loopback (tests, a local mirror).
A token goes only to the origin it belongs to and never across a redirect to another origin.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..constants import civitai_base_url, hf_endpoint
from ..errors import HostNotAllowed

DEFAULT_HOSTS = ("huggingface.co", "civitai.com")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
# Query parameters that carry credentials; they are cut out of anything shown to a person.
SECRET_QUERY_KEYS = frozenset({"token", "api_key", "apikey", "access_token"})
_SIGNED_QUERY = re.compile(r"^(x-amz-|x-goog-|signature$|policy$|key-pair-id$|expires$)", re.I)


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> "Origin":
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, (parts.hostname or "").lower(), port)


def is_loopback(host: str) -> bool:
    host = host.lower().strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """Host names a download may start from; endpoints are read from the environment each call."""
    hosts = set(DEFAULT_HOSTS)
    for base in (hf_endpoint(), civitai_base_url()):
        host = urlsplit(base).hostname
        if host:
            hosts.add(host.lower())
    hosts.update(h.strip().lower() for h in extra if h.strip())
    return frozenset(hosts)


def check_start_url(url: str, extra_hosts: list[str] | tuple[str, ...] = ()) -> None:
    """HostNotAllowed unless `url` may start a download."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    shown = redact(url)
    if parts.scheme not in ("http", "https") or not host:
        raise HostNotAllowed(shown, "only http(s) URLs with a host can be downloaded")
    if parts.username or parts.password:
        raise HostNotAllowed(shown, "URLs with embedded credentials are not accepted; set HF_TOKEN or CIVITAI_API_KEY")
    if parts.scheme != "https" and not is_loopback(host):
        raise HostNotAllowed(shown, "plain http is only allowed to this machine (loopback); use https")
    hosts = allowed_hosts(extra_hosts)
    if host not in hosts:
        raise HostNotAllowed(
            shown, f"{host} is not an allowed download host ({', '.join(sorted(hosts))}); "
            "add it to download.extra_allowed_hosts in config.json if you trust it")


def check_redirect(from_url: str, to_url: str) -> None:
    """HostNotAllowed if a redirect would downgrade to plain http off loopback, or leave loopback for http."""
    parts = urlsplit(to_url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise HostNotAllowed(redact(to_url), f"redirected from {redact(from_url)} to a non-http(s) address")
    from_loopback = is_loopback(Origin.of(from_url).host)
    if is_loopback(host) and not from_loopback:
        raise HostNotAllowed(redact(to_url), f"redirected from {redact(from_url)} to this machine; refused")
    if parts.scheme == "https":
        return
    if not (is_loopback(host) and from_loopback):
        raise HostNotAllowed(redact(to_url), f"redirected from {redact(from_url)} to plain http; only https is followed")


def token_name_for(url: str, source_hint: str = "") -> str | None:
    """Which secret (HF_TOKEN / CIVITAI_API_KEY) belongs to the origin of `url`, if any.

    When both endpoints share one origin (a local mirror, the tests' fake), the path tells them
    apart: Civitai downloads live under /api/download/, everything else on that origin is HF.
    """
    origin = Origin.of(url)
    owners = []
    if origin in (Origin.of(hf_endpoint()), Origin.of("https://huggingface.co")):
        owners.append("HF_TOKEN")
    if origin in (Origin.of(civitai_base_url()), Origin.of("https://civitai.com")):
        owners.append("CIVITAI_API_KEY")
    if len(owners) < 2:
        return owners[0] if owners else None
    if source_hint in ("civitai", "huggingface"):
        return "CIVITAI_API_KEY" if source_hint == "civitai" else "HF_TOKEN"
    return "CIVITAI_API_KEY" if urlsplit(url).path.startswith("/api/") else "HF_TOKEN"


def auth_headers(url: str, secrets: dict[str, str], start_url: str, source_hint: str = "") -> dict[str, str]:
    """The Authorization header for one request hop: only on the start origin, only its own token."""
    if Origin.of(url) != Origin.of(start_url):
        return {}  # a redirect to another origin (CDN, signed storage) never gets a token
    name = token_name_for(start_url, source_hint)
    token = secrets.get(name) if name else None
    return {"Authorization": f"Bearer {token}"} if token else {}


def redact(url: str) -> str:
    """The URL without credentials or signatures, for messages, logs and scripts' comments."""
    parts = urlsplit(url)
    if not parts.query and not parts.username:
        return url
    query = [(k, "***" if k.lower() in SECRET_QUERY_KEYS or _SIGNED_QUERY.match(k) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def strip_secret_query(url: str) -> str:
    """`url` without ?token= style credentials (the token goes in a header instead)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_QUERY_KEYS]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))

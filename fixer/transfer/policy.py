"""Who may be downloaded from, and which token goes where. Pure functions over URLs and addresses.

Rules:
- a download starts only at an allowed origin: https on a public host name of Hugging Face or Civitai
  (fixer.upstream.services: huggingface.co, hf.co, civitai.com, ...), the
  origins (scheme, host, port) of HF_ENDPOINT / CIVITAI_BASE_URL -- not every port of their hosts --
  and what the user adds in download.extra_allowed_hosts (a host: any port; host:port or a URL:
  that origin); https only, except loopback;
- redirects may leave the allowed origins (both services answer with a signed CDN URL) but never to
  plain http, unless the whole exchange already runs on loopback (tests, a local mirror), and never
  to an address that is not public: private, link-local, unspecified, loopback or IPv4-mapped forms
  of those. Names are resolved and each address checked when a connection is made (`check_address`,
  every hop); loopback stays allowed only when a configured endpoint is itself loopback, and a host
  the user configured may be on their own network;
- a token goes only to the origin it belongs to and never across a redirect to another origin.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..config import is_loopback_host as is_loopback
from ..constants import civitai_base_url, hf_endpoint
from ..errors import HostNotAllowed
from ..upstream.services import CIVITAI, HUGGINGFACE, SERVICES

DEFAULT_HOSTS = tuple(sorted(h for s in SERVICES.values() for h in s.hosts))
# Query parameters that carry credentials; they are cut out of anything shown to a person.
SECRET_QUERY_KEYS = frozenset({"token", "api_key", "apikey", "access_token"})
_SIGNED_QUERY = re.compile(r"^(x-amz-|x-goog-|signature$|policy$|key-pair-id$|expires$)", re.I)


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a URL: what a redirect may keep or change."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> "Origin":
        return _origin_of(url)


@functools.lru_cache(maxsize=4096)
def _origin_of(url: str) -> Origin:
    """Cached: status.json's counters ask which service each chosen link belongs to at every write (token_name_for
    parses the link and both endpoints), ~12 ms a write for 300 models; an Origin is immutable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return Origin(scheme, (parts.hostname or "").lower(), port)


def is_public_address(ip: str) -> bool:
    """A globally routable unicast address; an IPv4-mapped IPv6 address is judged by its IPv4 form."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def endpoint_origins() -> tuple[Origin, ...]:
    """The origins of the two services, as configured (read from the environment each call)."""
    return (Origin.of(hf_endpoint()), Origin.of(civitai_base_url()))


def allowed_origins(extra: list[str] | tuple[str, ...] = ()) -> tuple[frozenset[Origin], frozenset[str]]:
    """(origins, host names on any port) a download may start from."""
    origins = {Origin.of(f"https://{h}") for h in DEFAULT_HOSTS} | set(endpoint_origins())
    any_port: set[str] = set()
    for entry in (e.strip().lower() for e in extra):
        if not entry:
            continue
        if "://" in entry:
            origins.add(Origin.of(entry))
        elif urlsplit(f"//{entry}").port:
            origins.add(Origin.of(f"https://{entry}"))
            origins.add(Origin.of(f"http://{entry}"))  # plain http is refused off loopback anyway
        else:
            any_port.add(entry.strip("[]"))
    return frozenset(origins), frozenset(any_port)


def trusted_hosts(extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """Hosts the user configured (endpoints, extra_allowed_hosts): they may live on the user's own network."""
    origins, any_port = allowed_origins(extra)
    return frozenset({o.host for o in origins if o.host not in DEFAULT_HOSTS} | any_port)


def check_address(host: str, ip: str, extra: list[str] | tuple[str, ...] = ()) -> None:
    """HostNotAllowed unless a connection to `host` may go to address `ip` (every hop, every connection)."""
    if is_public_address(ip):
        return
    if is_loopback(ip) and any(is_loopback(o.host) for o in endpoint_origins()):
        return  # the configured endpoint itself is this machine (a local mirror, the tests' fake)
    if host.lower().strip("[]") in trusted_hosts(extra):
        return
    where = "this machine" if is_loopback(ip) else "a private or reserved network address"
    raise HostNotAllowed(host, f"it resolves to {ip}, {where}; downloads are only fetched from public addresses")


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
    origins, any_port = allowed_origins(extra_hosts)
    if Origin.of(url) not in origins and host not in any_port:
        allowed = sorted({_shown(o) for o in origins} | any_port)
        raise HostNotAllowed(
            shown, f"{_shown(Origin.of(url))} is not an allowed download host ({', '.join(allowed)}); "
            "add it to download.extra_allowed_hosts in config.json if you trust it")


def _shown(o: Origin) -> str:
    default = 443 if o.scheme == "https" else 80
    return f"{o.scheme}://{o.host}" + (f":{o.port}" if o.port != default else "")


def check_redirect(from_url: str, to_url: str, extra_hosts: list[str] | tuple[str, ...] = ()) -> None:
    """HostNotAllowed if a redirect would downgrade to plain http off loopback, leave loopback for http,
    or name an address that is not public (names are checked as they resolve, `check_address`)."""
    parts = urlsplit(to_url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise HostNotAllowed(redact(to_url), f"redirected from {redact(from_url)} to a non-http(s) address")
    from_loopback = is_loopback(Origin.of(from_url).host)
    if is_loopback(host) and not from_loopback:
        raise HostNotAllowed(redact(to_url), f"redirected from {redact(from_url)} to this machine; refused")
    if _is_ip(host) and host != Origin.of(from_url).host:
        try:
            check_address(host, host, extra_hosts)
        except HostNotAllowed as e:
            raise HostNotAllowed(redact(to_url), f"redirected from {redact(from_url)}: {e.reason}") from None
    if parts.scheme == "https":
        return
    if not (is_loopback(host) and from_loopback):
        raise HostNotAllowed(redact(to_url),
                             f"redirected from {redact(from_url)} to plain http; only https is followed")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        return True
    except ValueError:
        return False


def token_name_for(url: str, source_hint: str = "") -> str | None:
    """Which secret (the service table's token names) belongs to the origin of `url`, if any.

    When both endpoints share one origin (a local mirror, the tests' fake), the path tells them
    apart: Civitai downloads live under /api/download/, everything else on that origin is HF.
    """
    origin = Origin.of(url)
    owners = [s.token for s, endpoint in ((HUGGINGFACE, hf_endpoint()), (CIVITAI, civitai_base_url()))
              if origin == Origin.of(endpoint) or (origin.scheme == "https" and origin.port == 443
                                                   and s.owns_host(origin.host))]
    if len(owners) < 2:
        return owners[0] if owners else None
    if source_hint in SERVICES:
        return SERVICES[source_hint].token
    return CIVITAI.token if urlsplit(url).path.startswith("/api/") else HUGGINGFACE.token


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


def with_url_token(url: str, secrets: dict[str, str], source: str = "") -> dict[str, str]:
    """A Civitai link pasted with ?token=KEY: use KEY (as a header, never in the URL) when none is configured."""
    name = token_name_for(strip_secret_query(url), source)
    token = next((v for k, v in parse_qsl(urlsplit(url).query) if k.lower() == "token" and v), None)
    if name == CIVITAI.token and token and not secrets.get(name):
        return {**secrets, name: token}
    return secrets

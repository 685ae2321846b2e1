"""The upstream services in one table: their public host names, the variable holding each one's token,
and their label in messages. Every module that recognises a service's link, allows a download from it,
or picks the token for a request reads this table, so the three can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import ServiceKey, TokenName

HF_TOKEN: Final = "HF_TOKEN"
CIVITAI_TOKEN: Final = "CIVITAI_API_KEY"
# The optional LLM helper's key: one variable of its own, so a config file can never point the helper
# at another secret (HF_TOKEN, cloud keys) and have it sent to the endpoint.
LLM_TOKEN = "COMFYFIXER_LLM_API_KEY"


@dataclass(frozen=True)
class Service:
    """A model host the product talks to: its name, the token it takes and the hosts its links use."""

    key: ServiceKey
    label: str
    token: TokenName  # the environment variable (and ~/.secrets name) of its token
    hosts: frozenset[str]  # the public host names its links use; all served over https
    default_origin: str  # where its API and files are unless an environment variable points elsewhere

    def owns_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts


HUGGINGFACE = Service("huggingface", "Hugging Face", HF_TOKEN,
                      frozenset({"huggingface.co", "www.huggingface.co", "hf.co"}), "https://huggingface.co")
CIVITAI = Service("civitai", "Civitai", CIVITAI_TOKEN, frozenset({"civitai.com", "www.civitai.com", "api.civitai.com"}),
                  "https://civitai.com")
SERVICES: dict[str, Service] = {s.key: s for s in (HUGGINGFACE, CIVITAI)}
# Every secret the product reads, from the environment, ~/.secrets or the page's secret store.
TOKEN_NAMES = (HF_TOKEN, CIVITAI_TOKEN, LLM_TOKEN)


def service_of_token(token: str | None) -> Service | None:
    return next((s for s in SERVICES.values() if s.token == token), None)

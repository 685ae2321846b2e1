"""One host table: a link recognised as a service's is one a download may start from, with its token."""

from __future__ import annotations

import pytest

from fixer.transfer.policy import check_start_url, token_name_for
from fixer.upstream.services import CIVITAI, HUGGINGFACE, SERVICES
from fixer.upstream.source_spec import is_hf_host, parse_source


@pytest.mark.parametrize("host", sorted(HUGGINGFACE.hosts))
def test_every_hugging_face_host_parsed_as_such_may_start_a_download_with_its_token(host):
    # hf.co was parsed as Hugging Face but refused as a download host before the table.
    url = f"https://{host}/org/repo/resolve/main/model.safetensors"
    assert is_hf_host(host, "https://huggingface.co")
    check_start_url(url)
    assert token_name_for(url) == HUGGINGFACE.token


def test_a_pasted_short_host_link_becomes_the_endpoints_url():
    spec = parse_source("https://hf.co/org/repo/resolve/main/model.safetensors", "https://huggingface.co")
    assert spec.url == "https://huggingface.co/org/repo/resolve/main/model.safetensors"


def test_civitai_hosts_carry_the_civitai_token_and_no_host_is_shared():
    for host in CIVITAI.hosts:
        assert token_name_for(f"https://{host}/api/download/models/1") == CIVITAI.token
    hosts = [h for s in SERVICES.values() for h in s.hosts]
    assert len(hosts) == len(set(hosts))


def test_a_lookalike_host_is_neither_service():
    assert token_name_for("https://hf.co.evil.example/org/repo/resolve/main/x") is None
    assert not is_hf_host("evilhf.co", "https://huggingface.co")

"""The shared HTTP helper: Retry-After in both forms, jittered backoff, retries on 429/503 and connection errors."""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket

import aiohttp
import pytest

from fixer.errors import AuthRequired, NotFoundUpstream, RateLimited
from fixer.upstream.http import (
    HttpClient,
    backoff_delay,
    http_error,
    next_link,
    ratelimit_reset_seconds,
    retry_after_seconds,
    server_message,
)
from tests.fake_upstream import Fault


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(email.utils.formatdate(1000 + 30, usegmt=True), now=1000) == pytest.approx(30, abs=1)
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None


def test_hub_ratelimit_header_gives_the_reset():
    assert ratelimit_reset_seconds('"api";r=0;t=120') == 120.0
    assert ratelimit_reset_seconds(None) is None


async def test_429_without_retry_after_waits_for_the_ratelimit_reset(upstream):
    upstream.add_fault(Fault(path=r"^/api/models", status=429, headers={"RateLimit": '"api";r=0;t=0.3'}, times=1))
    async with HttpClient(retries=2, backoff_base=0.0) as http:
        t0 = asyncio.get_running_loop().time()
        reply = await http.get("huggingface", f"{upstream.base}/api/models")
        waited = asyncio.get_running_loop().time() - t0
    assert reply.status == 200 and waited >= 0.3


def test_backoff_grows_and_is_capped():
    rng = random.Random(1)
    assert all(0 <= backoff_delay(a, 0.25, 8.0, rng) <= min(8.0, 0.25 * 2**a) for a in range(10))


async def test_retries_until_the_service_answers(upstream):
    upstream.add_fault(Fault(path=r"^/api/models\?", status=503, times=2))
    async with HttpClient(retries=3, backoff_base=0.01) as http:
        reply = await http.get("huggingface", f"{upstream.base}/api/models", params={"search": "flux"})
    assert reply.status == 200 and len([r for r in upstream.requests if r.path_qs.startswith("/api/models")]) == 3


async def test_gives_back_the_last_answer_when_retries_run_out(upstream):
    upstream.add_fault(Fault(path=r"^/api/models", status=429, headers={"Retry-After": "0"}, times=None))
    async with HttpClient(retries=1) as http:
        reply = await http.get("huggingface", f"{upstream.base}/api/models")
    assert reply.status == 429


async def test_404_is_not_retried(upstream):
    async with HttpClient(retries=3) as http:
        reply = await http.get("civitai", f"{upstream.base}/api/v1/model-versions/1")
    assert reply.status == 404 and reply.error_text() == "Model not found" and len(upstream.requests) == 1


async def test_unreachable_service_raises_after_retries():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    async with HttpClient(retries=1, backoff_base=0.01) as http:
        with pytest.raises(aiohttp.ClientError):
            await http.get("civitai", f"http://127.0.0.1:{port}/x")


async def test_slow_answer_times_out(upstream):
    upstream.add_fault(Fault(path=r"^/api/models", delay=2.0, times=None))
    async with HttpClient(retries=0, timeout=0.3) as http:
        with pytest.raises(TimeoutError):
            await http.get("huggingface", f"{upstream.base}/api/models")


async def test_a_service_that_cannot_be_reached_is_not_asked_again_in_the_same_run():
    import socket as _socket

    import aiohttp

    from fixer.upstream.http import HttpClient

    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens: connection refused
    async with HttpClient(retries=2, backoff_base=0.01) as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get("civitai", f"http://127.0.0.1:{port}/api/v1/models")
        with pytest.raises(aiohttp.ClientConnectionError, match="could not be reached a moment ago"):
            await http.get("civitai", f"http://127.0.0.1:{port}/api/v1/models?query=x")


async def test_retry_after_beyond_the_cap_is_answered_at_once_not_slept_through(upstream):
    rule = upstream.add_fault(Fault(path=r"^/api/models", status=429, headers={"Retry-After": "600"}, times=None))
    async with HttpClient(retries=3) as http:
        reply = await http.get("huggingface", f"{upstream.base}/api/models")
    assert reply.status == 429 and rule.hits == 1


def test_rate_limit_beyond_the_cap_says_how_long_and_what_to_do():
    err = http_error(429, {"Retry-After": "600"}, b"", what="Model version 5", service="huggingface",
                     has_token=False)
    assert isinstance(err, RateLimited)
    assert str(err) == ("Hugging Face asks to wait 600 s (rate limit) for Model version 5; try again later or add a "
                        "token (HF_TOKEN)")


def test_anonymous_401_from_the_hub_means_private_or_missing_and_names_the_token():
    err = http_error(401, {}, b"", what="x.safetensors in org/repo", service="huggingface", has_token=False,
                     repo="org/repo")
    assert isinstance(err, AuthRequired) and "org/repo is private or does not exist" in str(err)
    assert "HF_TOKEN" in str(err)


def test_gated_repo_points_to_its_page_to_accept_the_license():
    err = http_error(403, {"X-Error-Code": "GatedRepo"}, b"", what="x in org/repo", service="huggingface",
                     has_token=True, repo="org/repo", repo_page="https://huggingface.co/org/repo")
    assert isinstance(err, AuthRequired) and "accept its license at https://huggingface.co/org/repo" in str(err)


def test_not_found_is_its_own_error_naming_the_thing():
    err = http_error(404, {}, b'{"error": "Model not found"}', what="Model version 7", service="civitai",
                     has_token=False)
    assert isinstance(err, NotFoundUpstream) and str(err) == "Model version 7 was not found at Civitai"


def test_an_html_error_page_never_reaches_a_message():
    page = b"<!DOCTYPE html><html><head><title>502</title></head><body><h1>Bad gateway</h1>" + b"x" * 5000
    err = http_error(418, {}, page, what="m.bin", service=None, has_token=False, host="cdn.example")
    assert "<" not in str(err) and "xxxx" not in str(err)
    assert server_message({}, page) == ""


def test_a_long_server_message_is_cut_to_one_short_line():
    said = server_message({}, b"line one\nline two " + b"y" * 1000)
    assert "\n" not in said and len(said) <= 200 and said.startswith("line one line two")


def test_link_header_next_page_is_found():
    assert next_link('<https://hf.co/api/models?cursor=abc>; rel="next"') == "https://hf.co/api/models?cursor=abc"
    assert next_link('<https://hf.co/x>; rel="prev"') is None and next_link(None) is None


async def test_pages_follow_link_headers_until_the_last(upstream):
    from tests.fake_upstream.api_routes import add_hf_repo

    for i in range(3):
        add_hf_repo(upstream, f"pagesorg/r{i}", {"a.safetensors": (1, "c" * 64)})
    async with HttpClient() as http:
        replies = [r async for r in http.pages("huggingface", f"{upstream.base}/api/models",
                                               params={"author": "pagesorg", "limit": "1"})]
    assert [r.status for r in replies] == [200, 200, 200]
    assert sorted(item["id"] for r in replies for item in r.json()) == ["pagesorg/r0", "pagesorg/r1", "pagesorg/r2"]


async def test_hf_hub_offline_sends_no_request_to_the_hub_and_says_so(upstream, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    async with HttpClient() as http:
        with pytest.raises(aiohttp.ClientConnectionError, match="HF_HUB_OFFLINE"):
            await http.get("huggingface", f"{upstream.base}/api/models")
        assert (await http.get("civitai", f"{upstream.base}/api/v1/model-versions/1")).status == 404
    assert [r.path_qs for r in upstream.requests] == ["/api/v1/model-versions/1"]

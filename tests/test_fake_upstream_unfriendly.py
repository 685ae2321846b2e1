"""The fake upstream is as unfriendly as the real services (docs/upstream.md "What a search can find",
A.2, A.8, B.3, B.7): a resolver that passes only against a friendly fake proves nothing."""

from __future__ import annotations

import aiohttp

from tests.fake_upstream.api_routes import add_civitai_model, add_hf_repo, crowd_searches


def civitai_model(mid: int, name: str, file_name: str, nsfw: bool = False) -> dict:
    return {"id": mid, "name": name, "type": "LORA", "nsfw": nsfw, "creator": {"username": "someone"},
            "stats": {"downloadCount": 5},
            "modelVersions": [{"id": mid * 10, "name": "v1", "baseModel": "SD 1.5", "trainedWords": [],
                               "files": [{"id": mid, "name": file_name, "sizeKB": 1.0, "type": "Model",
                                          "metadata": {"format": "SafeTensor"}, "primary": True,
                                          "hashes": {"SHA256": "AB" * 32}}]}]}


async def get(url: str, headers: dict | None = None, **params: str) -> tuple[int, dict, object]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, params=params, headers=headers or {}) as r:
            body = await r.json(content_type=None) if "json" in r.content_type else await r.text()
            return r.status, dict(r.headers), body


async def test_hf_missing_repo_is_a_bare_401_for_an_anonymous_caller(upstream):
    status, headers, _ = await get(f"{upstream.base}/api/models/nobody/nothing")
    assert status == 401 and "X-Error-Code" not in headers and "WWW-Authenticate" in headers
    status, headers, _ = await get(f"{upstream.base}/api/models/nobody/nothing", {"Authorization": "Bearer hf_x"})
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"


async def test_civitai_hides_nsfw_models_unless_nsfw_true_is_sent(upstream):
    add_civitai_model(upstream, civitai_model(4401, "Velvet Boudoir", "velvet_boudoir.safetensors", nsfw=True))
    _, _, hidden = await get(f"{upstream.base}/api/v1/models", query="velvet boudoir")
    _, _, shown = await get(f"{upstream.base}/api/v1/models", query="velvet boudoir", nsfw="true")
    assert [m["id"] for m in hidden["items"]] == [] and [m["id"] for m in shown["items"]] == [4401]


async def test_civitai_answers_a_query_that_is_exactly_a_file_name_but_not_its_words(upstream):
    add_civitai_model(upstream, civitai_model(4402, "Detail Slider", "ds_addon_xq.safetensors"))
    _, _, exact = await get(f"{upstream.base}/api/v1/models", query="ds_addon_xq.safetensors")
    _, _, words = await get(f"{upstream.base}/api/v1/models", query="ds addon xq")
    assert [m["id"] for m in exact["items"]] == [4402] and words["items"] == []


async def test_civitai_query_with_page_is_refused(upstream):
    status, _, body = await get(f"{upstream.base}/api/v1/models", query="x", page="1")
    assert status == 400 and "cursor" in body["error"]


async def test_popular_words_fill_civitai_pages_and_the_cursor_gives_the_rest(upstream):
    crowd_searches(upstream, civitai_words=["pony"], per_word=30)
    _, _, first = await get(f"{upstream.base}/api/v1/models", query="pony", limit="20", nsfw="true")
    _, _, second = await get(f"{upstream.base}/api/v1/models", query="pony", limit="20", nsfw="true",
                             cursor=first["metadata"]["nextCursor"])
    assert len(first["items"]) == 20 and len(second["items"]) == 10


async def test_hf_search_pages_hold_50_repos_with_a_link_to_the_next(upstream):
    crowd_searches(upstream, hf_words=["wan"], per_word=60)
    status, headers, page = await get(f"{upstream.base}/api/models", search="wan", limit="1000")
    assert status == 200 and len(page) == 50 and 'rel="next"' in headers["Link"]


async def test_hf_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(upstream):
    add_hf_repo(upstream, "someorg/somerepo", {"a.safetensors": (10, "cd" * 32)})
    rule = upstream.rate_limit("huggingface", every=2, retry_after=0.1)
    first = await get(f"{upstream.base}/api/models", search="somerepo")
    second = await get(f"{upstream.base}/api/models", search="somerepo")
    assert first[0] == 200 and second[0] == 429 and rule.hits == 1
    assert second[1]["Retry-After"] == "0.1" and "r=0" in second[1]["RateLimit"]


async def test_civitai_rate_limit_is_an_html_page_with_retry_after(upstream):
    upstream.rate_limit("civitai", every=1, retry_after=2)
    hf_status = (await get(f"{upstream.base}/api/models", search="x"))[0]
    status, headers, body = await get(f"{upstream.base}/api/v1/models", query="x")
    assert hf_status == 200 and status == 429 and headers["Retry-After"] == "2" and "<html>" in body

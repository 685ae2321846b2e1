"""A link the user pastes for one model (sources.pasted.check_link)."""

from __future__ import annotations

import pytest

from fixer.errors import UpstreamError
from fixer.models import ModelRef
from fixer.sources.pasted import check_link
from tests.fake_upstream.api_routes import add_hf_repo


async def test_hf_link_is_not_checked_under_hf_hub_offline_and_the_reason_is_said(upstream, monkeypatch):
    add_hf_repo(upstream, "someone/repo", {"a.safetensors": (10, "cd" * 32)})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UpstreamError, match="HF_HUB_OFFLINE is set, so the link was not checked; unset it"):
        await check_link("hf:someone/repo/a.safetensors", ModelRef("a.safetensors", "loras"),
                         hf_endpoint=upstream.base, civitai_base=upstream.base)
    assert not any("someone/repo" in q.path_qs for q in upstream.requests)

"""A developer's `hf auth login` token never reaches the tests (tests/conftest.py, the fake upstream's env)."""

from __future__ import annotations

from fixer.upstream.tokens import load_secrets


def test_a_token_saved_by_hf_auth_login_is_not_used_in_tests(tmp_path, monkeypatch):
    from huggingface_hub import constants
    saved = tmp_path / "hf_token"
    saved.write_text("hf_developers_own\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(saved))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert "HF_TOKEN" not in load_secrets(secrets_file=str(tmp_path / "none"))


def test_processes_started_against_the_fake_upstream_leave_the_saved_token_unused(upstream):
    assert upstream.env()["HF_HUB_DISABLE_IMPLICIT_TOKEN"] == "1"

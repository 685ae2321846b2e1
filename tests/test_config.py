"""config.json and secrets: unknown keys are named, the token `hf auth login` saved is used."""

from __future__ import annotations

import json
import logging

import pytest

from fixer.config import load_config
from fixer.upstream.tokens import load_secrets


def write(tmp_path, data: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_an_unknown_key_is_named_with_the_closest_known_one(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fixer.config"):
        config = load_config(write(tmp_path, {"download": {"max_concurent": 9}}))
    assert config.download.max_concurrent == 3  # ignored, the default stays
    assert "unknown key 'max_concurent'" in caplog.text and "did you mean 'max_concurrent'" in caplog.text
    assert ".download" in caplog.text


def test_an_unknown_key_like_nothing_known_lists_the_known_keys(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fixer.config"):
        load_config(write(tmp_path, {"zzz": 1}))
    assert "unknown key 'zzz'" in caplog.text and "comfyui_root" in caplog.text


def test_known_keys_load_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fixer.config"):
        config = load_config(write(tmp_path, {"download": {"retries": 2}, "search": {"llm": {"enabled": True}}}))
    assert config.download.retries == 2 and config.search.llm.enabled and not caplog.text


@pytest.fixture
def saved_token(tmp_path, monkeypatch):
    from huggingface_hub import constants
    path = tmp_path / "hf_token"
    path.write_text("hf_saved_by_login\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(path))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return constants


def test_the_token_saved_by_hf_auth_login_is_used(saved_token, tmp_path):
    assert load_secrets(secrets_file=str(tmp_path / "none"))["HF_TOKEN"] == "hf_saved_by_login"


def test_hf_token_in_the_environment_wins_over_the_saved_one(saved_token, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert load_secrets(secrets_file=str(tmp_path / "none"))["HF_TOKEN"] == "hf_from_env"


def test_disable_implicit_token_keeps_the_saved_token_unused(saved_token, tmp_path, monkeypatch):
    monkeypatch.setattr(saved_token, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    assert "HF_TOKEN" not in load_secrets(secrets_file=str(tmp_path / "none"))

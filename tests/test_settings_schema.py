"""The settings schema: one owner and one limit per setting, served to the page, enforced by the service."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from fixer.app import settings as schema_mod
from fixer.app.service import FixerService
from fixer.config import Config, DownloadConfig
from fixer.errors import ConfigError
from fixer.host.host import StandaloneHost
from tests.conftest import ROOT, make_comfy_root

WEB = ROOT / "web" / "comfyfixer.js"


@pytest.fixture
def svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FixerService:
    for name in ("HF_TOKEN", "CIVITAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.secrets of the developer
    root = make_comfy_root(tmp_path)
    return FixerService(StandaloneHost.from_root(root), tmp_path / "state")


def test_a_patch_keeps_known_typed_fields() -> None:
    patch = schema_mod.parse_patch({"hf_token": " hf_abc ", "civitai_api_key": "", "max_concurrent": 2,
                                    "allow_pickle": False})
    assert patch.config == {"max_concurrent": 2, "allow_pickle": False}
    assert patch.tokens == {"HF_TOKEN": "hf_abc", "CIVITAI_API_KEY": ""}


@pytest.mark.parametrize("patch,field", [({"nope": 1}, "'nope' is not a setting"),
                                          ({"check_on_load": True}, "'check_on_load' is not a setting"),
                                          ({"max_concurrent": "3"}, "'max_concurrent' must be a whole number"),
                                          ({"max_concurrent": 0}, "'max_concurrent' must be a whole number"),
                                          ({"max_concurrent": 17}, "'max_concurrent' must be a whole number"),
                                          ({"connections_per_file": True}, "'connections_per_file'"),
                                          ({"allow_pickle": "yes"}, "'allow_pickle' must be true or false"),
                                          ({"hf_token": 5}, "'hf_token' must be a string"),
                                          ({"hf_token": "a b"}, "'hf_token' is not a token"),
                                          ({"hf_token": "x" * (schema_mod.MAX_TOKEN_CHARS + 1)},
                                           "'hf_token' is not a token")])
def test_a_patch_refuses_bad_fields_by_name(patch: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        schema_mod.parse_patch(patch)


def test_the_schema_defaults_are_the_engines_own() -> None:
    by_key = {e["key"]: e for e in schema_mod.schema()}
    d = DownloadConfig()
    assert by_key["max_concurrent"]["default"] == d.max_concurrent
    assert by_key["connections_per_file"]["default"] == d.connections_per_file
    assert by_key["allow_pickle"]["default"] is d.allow_pickle
    assert by_key["hf_token"]["max_chars"] == schema_mod.MAX_TOKEN_CHARS and "default" not in by_key["hf_token"]
    # config.json's values are the defaults the page shows
    custom = schema_mod.schema(Config(download=DownloadConfig(max_concurrent=5)))
    assert next(e for e in custom if e["key"] == "max_concurrent")["default"] == 5


def test_a_token_as_long_as_the_one_limit_is_stored_and_a_longer_one_refused(svc: FixerService) -> None:
    # Before the schema the route took 4096 characters and the service refused above 512.
    token = "hf_" + "a" * (schema_mod.MAX_TOKEN_CHARS - 3)
    values = svc.update_settings(schema_mod.parse_patch({"hf_token": token}))["values"]
    assert values["hf_token_set"] is True and svc.secrets()["HF_TOKEN"] == token
    with pytest.raises(ConfigError, match="at most"):
        schema_mod.parse_patch({"civitai_api_key": token + "b"})
    assert "CIVITAI_API_KEY" not in svc.secrets()


def test_the_secret_store_is_owner_only_and_written_whole(svc: FixerService) -> None:
    svc.update_settings(schema_mod.parse_patch({"hf_token": "hf_one", "civitai_api_key": "civ_two"}))
    path = svc.state_dir / "secrets.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert json.loads(path.read_text()) == {"HF_TOKEN": "hf_one", "CIVITAI_API_KEY": "civ_two"}
    svc.update_settings(schema_mod.parse_patch({"hf_token": ""}))  # forgets that one, keeps the other
    assert json.loads(path.read_text()) == {"CIVITAI_API_KEY": "civ_two"}
    assert not [p for p in os.listdir(svc.state_dir) if p.endswith(".tmp")]


def test_settings_persist_and_a_bad_saved_value_is_skipped(tmp_path: Path, svc: FixerService) -> None:
    svc.update_settings(schema_mod.parse_patch({"max_concurrent": 2, "allow_pickle": False}))
    again = FixerService(svc.host, svc.state_dir)
    assert again.config.download.max_concurrent == 2 and again.config.download.allow_pickle is False
    (svc.state_dir / "settings.json").write_text(json.dumps({"max_concurrent": 999, "allow_pickle": False}))
    third = FixerService(svc.host, svc.state_dir)
    assert third.config.download.max_concurrent == DownloadConfig().max_concurrent
    assert third.config.download.allow_pickle is False


def test_the_page_holds_no_copy_of_a_default_or_a_limit() -> None:
    """comfyfixer.js draws the server's settings from the schema: none of their limits or ids is written there."""
    page = WEB.read_text(encoding="utf-8")
    for entry in schema_mod.schema():
        assert entry["id"] not in page, entry["id"]
    for key in schema_mod.BY_KEY:
        assert not re.search(rf"serverSetting\(\"{key}\"\)", page)
    assert not re.search(r"\bmax:\s*(16|32)\b", page)

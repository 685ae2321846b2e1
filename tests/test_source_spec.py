"""Source specs of the download node: what is accepted, what is refused, and the request it becomes."""

from __future__ import annotations

import pytest

from fixer.errors import ConfigError, NotFoundUpstream, UnsafePath
from fixer.upstream.civitai import fetch_civitai_version
from fixer.upstream.source_spec import (
    parse_hf_url,
    parse_source,
    pick_civitai_file,
    transfer_request,
)

HF = "https://huggingface.co"
CIV = "https://civitai.com"


def parse(text: str):
    return parse_source(text, hf_base=HF, civitai_base=CIV)


def test_hf_short_form_names_repo_and_path():
    spec = parse("hf:Comfy-Org/flux2-dev/split_files/vae/flux2-vae.safetensors")
    assert (spec.source, spec.repo_id, spec.revision, spec.path) == \
        ("huggingface", "Comfy-Org/flux2-dev", "main", "split_files/vae/flux2-vae.safetensors")
    assert spec.url == f"{HF}/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors"
    assert spec.file_name == "flux2-vae.safetensors"


def test_hf_short_form_takes_a_revision():
    spec = parse("hf:stabilityai/sdxl-vae@abc123/sdxl_vae.safetensors")
    assert (spec.revision, spec.url) == ("abc123", f"{HF}/stabilityai/sdxl-vae/resolve/abc123/sdxl_vae.safetensors")


@pytest.mark.parametrize("url", [f"{HF}/Kijai/flux-fp8/resolve/main/flux1-dev-fp8.safetensors",
                                 f"{HF}/Kijai/flux-fp8/blob/main/flux1-dev-fp8.safetensors?download=true"])
def test_hf_file_links_become_resolve_urls(url):
    spec = parse(url)
    assert spec.url == f"{HF}/Kijai/flux-fp8/resolve/main/flux1-dev-fp8.safetensors"


def test_hf_endpoint_links_are_recognised():
    spec = parse_source("http://127.0.0.1:9/a/b/resolve/main/c.safetensors", hf_base="http://127.0.0.1:9",
                        civitai_base="http://127.0.0.1:9")
    assert (spec.source, spec.repo_id) == ("huggingface", "a/b")


@pytest.mark.parametrize("text,version,model", [("civitai:9100101", 9100101, None),
                                                ("civitai:58390@62833", 62833, 58390),
                                                (f"{CIV}/api/download/models/1292", 1292, None),
                                                (f"{CIV}/models/1102/synthwavepunk?modelVersionId=1292", 1292, 1102),
                                                (f"{CIV}/models/1102", None, 1102)])
def test_civitai_forms_name_a_version_or_a_model(text, version, model):
    spec = parse(text)
    assert (spec.source, spec.version_id, spec.model_id) == ("civitai", version, model)


def test_civitai_download_link_keeps_its_file_selection():
    assert parse(f"{CIV}/api/download/models/1292?type=Model&format=PickleTensor").file_query == \
        "type=Model&format=PickleTensor"


@pytest.mark.parametrize("text", ["", "   ", "civitai:abc", "hf:just-a-name", "ftp://huggingface.co/a/b/resolve/main/c",
                                  "https://example.com/x.safetensors", f"{HF}/Kijai/flux-fp8",
                                  f"{CIV}/images/123", "x.safetensors"])
def test_what_is_no_source_is_refused_saying_what_is_accepted(text):
    with pytest.raises(ConfigError, match="hf:|civitai|link"):
        parse(text)


@pytest.mark.parametrize("text", ["hf:org/repo/../../etc/passwd", f"{HF}/org/repo/resolve/main/a/../../x.safetensors"])
def test_hf_paths_that_climb_out_are_refused(text):
    with pytest.raises(UnsafePath):
        parse(text)


VERSION = {"id": 1292, "downloadUrl": f"{CIV}/api/download/models/1292", "files": [
    {"name": "synthwavepunk_v3Alpha.ckpt", "type": "Model", "primary": False, "metadata": {"format": "PickleTensor"},
     "downloadUrl": f"{CIV}/api/download/models/1292?type=Model&format=PickleTensor", "hashes": {"SHA256": "AA" * 32}},
    {"name": "synthwavepunk_v3Alpha.safetensors", "type": "Model", "primary": True,
     "metadata": {"format": "SafeTensor"}, "downloadUrl": f"{CIV}/api/download/models/1292",
     "hashes": {"SHA256": "BB" * 32}}]}


def test_civitai_file_choice_is_named_then_linked_then_primary():
    assert pick_civitai_file(VERSION)["name"] == "synthwavepunk_v3Alpha.safetensors"
    assert pick_civitai_file(VERSION, "sub/SynthwavePunk_v3Alpha.ckpt")["name"] == "synthwavepunk_v3Alpha.ckpt"
    assert pick_civitai_file(VERSION, file_query="type=Model&format=PickleTensor")["name"] == \
        "synthwavepunk_v3Alpha.ckpt"


def test_archived_civitai_version_has_nothing_to_fetch():
    with pytest.raises(NotFoundUpstream, match="archived"):
        pick_civitai_file({"id": 9100104, "files": []})


def test_civitai_request_carries_the_published_sha256():
    req = transfer_request(parse("civitai:1292"), "checkpoints", version=VERSION)
    assert (req.url, req.filename, req.sha256, req.source) == \
        (f"{CIV}/api/download/models/1292", "synthwavepunk_v3Alpha.safetensors", "bb" * 32, "civitai")


def test_given_name_and_sha256_win():
    req = transfer_request(parse("hf:a/b/c.safetensors"), "loras", "SDXL/mine.safetensors", "CC" * 32)
    assert (req.filename, req.sha256) == ("SDXL/mine.safetensors", "cc" * 32)


@pytest.mark.parametrize("name", ["../x.safetensors", "/abs.safetensors", "C:\\x.safetensors"])
def test_given_names_that_leave_the_folder_are_refused(name):
    with pytest.raises(UnsafePath):
        transfer_request(parse("hf:a/b/c.safetensors"), "loras", name)


def test_sha256_must_be_64_hex_characters():
    with pytest.raises(ConfigError, match="sha256"):
        transfer_request(parse("hf:a/b/c.safetensors"), "loras", "", "not-a-hash")


def test_civitai_version_is_read_from_civitai_base_url(upstream):
    version = fetch_civitai_version(parse_source("civitai:9100101"))
    assert pick_civitai_file(version)["name"] == "fixture_tiny_lora.safetensors"


def test_civitai_model_link_fetches_its_newest_version(upstream):
    version = fetch_civitai_version(parse_source(f"{upstream.base}/models/9000101"))
    assert version["id"] == 9100101


def test_unknown_civitai_version_says_not_found(upstream):
    with pytest.raises(NotFoundUpstream, match="Model version 424242"):
        fetch_civitai_version(parse_source("civitai:424242"))


def test_civitai_version_lookup_waits_out_a_429_then_succeeds(upstream):
    from tests.fake_upstream import Fault

    upstream.add_fault(Fault(path=r"/api/v1/model-versions/9100101", status=429, headers={"Retry-After": "0"},
                             body={"error": "slow down"}, times=2))
    version = fetch_civitai_version(parse_source("civitai:9100101"))
    assert version["id"] == 9100101
    assert sum(1 for r in upstream.requests if r.path_qs.startswith("/api/v1/model-versions/9100101")) == 3


@pytest.mark.parametrize("url, expected", [
    (f"{HF}/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors",
     ("Comfy-Org/flux2-dev", "main", "split_files/vae/flux2-vae.safetensors")),
    (f"{HF}/models/org/repo/blob/v1.0/a%20b.safetensors", ("org/repo", "v1.0", "a b.safetensors")),
    ("https://hf.co/org/repo/resolve/refs%2Fpr%2F1/x.gguf", ("org/repo", "refs/pr/1", "x.gguf")),
    ("http://127.0.0.1:9/org/repo/resolve/main/x.safetensors", ("org/repo", "main", "x.safetensors")),
])
def test_one_hf_url_parser_reads_repo_revision_and_path(url, expected):
    assert parse_hf_url(url, "http://127.0.0.1:9") == expected


@pytest.mark.parametrize("url", [f"{HF}/org/repo", f"{HF}/org/repo/tree/main", "https://example.com/o/r/resolve/main/x",
                                 "http://127.0.0.1:10/org/repo/resolve/main/x.safetensors"])
def test_hf_url_parser_refuses_pages_and_other_hosts(url):
    assert parse_hf_url(url, "http://127.0.0.1:9") is None


def test_civitai_version_lookup_asked_to_wait_beyond_the_cap_fails_at_once(upstream):
    from fixer.errors import RateLimited
    from tests.fake_upstream import Fault

    rule = upstream.add_fault(Fault(path=r"/api/v1/model-versions/9100101", status=429,
                                    headers={"Retry-After": "3600"}, times=None))
    with pytest.raises(RateLimited, match="Civitai asks to wait 3600 s .rate limit. for Model version 9100101; "
                                          "try again later or add a token .CIVITAI_API_KEY."):
        fetch_civitai_version(parse_source("civitai:9100101"))
    assert rule.hits == 1

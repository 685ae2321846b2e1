"""The fake's resolver-side API answers huggingface_hub's own client as the Hub does."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.hf_api import RepoFile, RepoFolder

from tests.fake_upstream.api_routes import add_hf_repo


def test_hfapi_list_models_canned_and_catalogue(upstream):
    api = HfApi(endpoint=upstream.base)
    assert [m.id for m in api.list_models(search="flux")][:2] == ["comfyanonymous/flux_text_encoders",
                                                                  "Comfy-Org/flux2-dev"]
    full = list(api.list_models(author="Comfy-Org", full=True))
    assert {m.id for m in full} == {"Comfy-Org/flux2-dev", "Comfy-Org/Lumina_Image_2.0_Repackaged"}
    assert any(s.rfilename == "split_files/vae/ae.safetensors" for m in full for s in m.siblings)


def test_hfapi_follows_link_pagination(upstream):
    for i in range(5):
        add_hf_repo(upstream, f"pagetest/r{i}", {"a.safetensors": (1, "c" * 64)})
    assert len(list(HfApi(endpoint=upstream.base).list_models(author="pagetest", limit=None))) == 5


def test_hfapi_model_info_with_and_without_blobs(upstream):
    api = HfApi(endpoint=upstream.base)
    plain = api.model_info("Kijai/flux-fp8")
    assert plain.siblings[1].size is None
    rich = api.model_info("Kijai/flux-fp8", files_metadata=True)
    f = next(s for s in rich.siblings if s.rfilename == "flux1-dev-fp8.safetensors")
    assert f.size == 11901525888 and f.lfs.sha256.startswith("1be96134")


def test_hfapi_tree_recursive_and_not(upstream):
    api = HfApi(endpoint=upstream.base)
    top = list(api.list_repo_tree("Comfy-Org/flux2-dev"))
    assert {(type(e), e.path) for e in top} == {(RepoFolder, "split_files"), (RepoFile, ".gitattributes"),
                                                 (RepoFile, "README.md")}
    vae = list(api.list_repo_tree("Comfy-Org/flux2-dev", path_in_repo="split_files/vae"))
    assert [e.path for e in vae] == ["split_files/vae/flux2-vae.safetensors"]
    everything = list(api.list_repo_tree("Comfy-Org/flux2-dev", recursive=True))
    assert sum(isinstance(e, RepoFile) for e in everything) == 7


def test_hfapi_paths_info_drops_unknown_paths(upstream):
    api = HfApi(endpoint=upstream.base)
    got = api.get_paths_info("Comfy-Org/flux2-dev", ["split_files/vae/flux2-vae.safetensors", "nope.bin"])
    assert [e.path for e in got] == ["split_files/vae/flux2-vae.safetensors"] and got[0].lfs.sha256


def test_hfapi_unknown_repo_is_a_bare_401_anonymous_and_repo_not_found_signed_in(upstream):
    # The live Hub answers an anonymous caller with a bare 401 (no X-Error-Code); over plain http
    # huggingface_hub cannot map that to RepositoryNotFoundError (its regex wants https).
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(endpoint=upstream.base).model_info("nobody/nothing")
    assert e.value.response.status_code == 401 and "X-Error-Code" not in e.value.response.headers
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=upstream.base, token="hf_fake").model_info("nobody/nothing")

"""A model whose workflow states a sha256 is only ever accepted with those bytes, whatever source brings it: a
search hit, the linked file when the Hub lists another sha256 for it, a file no source states a sha256 for, a
local copy under a near name. Refusals are said in the row and the ACTION log. Against the fake upstream."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fixer.app.run import FixRun
from fixer.app.service import FixerService
from fixer.config import Config
from fixer.events import EventBus
from fixer.host.host import StandaloneHost
from fixer.models import Candidate, ModelHint, ModelRef, Resolution
from tests.conftest import make_comfy_root, make_workflow, node
from tests.fake_upstream import payload_bytes
from tests.fake_upstream.api_routes import add_hf_repo
from tests.fake_upstream.file_routes import register_hf_file


def weights(seed: str, n: int = 20_000) -> bytes:
    return payload_bytes({"seed": seed, "recipe": "safetensors", "n_values": n})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hub_file(upstream: Any, repo: str, name: str, data: bytes, *, listed_sha: bool = True, downloads: int = 0) -> str:
    """A file on the fake Hub; `listed_sha` False: a plain git file, the Hub states no sha256 for it."""
    add_hf_repo(upstream, repo, {name: (len(data), sha(data) if listed_sha else None)}, downloads=downloads)
    register_hf_file(upstream, repo, name, data)
    return f"https://huggingface.co/{repo}/resolve/main/{name}"


def lora(name: str, stated: bytes | None = None, url: str | None = None) -> dict[str, Any]:
    """A LoraLoader naming `name`, its models[] entry stating the sha256 of `stated` (and a link, if any)."""
    entry: dict[str, Any] = {"name": name, "directory": "loras"}
    if stated is not None:
        entry |= {"hash": sha(stated), "hash_type": "sha256"}
    if url:
        entry["url"] = url
    return node(1, "LoraLoader", [name, 1, 1], models=[entry])


async def fix(root: Path, state: Path, nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    svc = FixerService(StandaloneHost.from_root(root), state, comfyui_root=root)
    await svc.start_fix(make_workflow(nodes), "wf")
    assert svc._task is not None
    await svc._task
    return {r["name"]: r for r in svc.status()["data"]["models"]}


def refusals(state: Path) -> list[dict[str, Any]]:
    lines = (state / "log" / "comfyfixer.log").read_text(encoding="utf-8").splitlines()
    acts = [json.loads(line.split("ACTION: ", 1)[1]) for line in lines if "ACTION: " in line]
    return [a for a in acts if a.get("action") == "candidate_refused" and a.get("reason") == "sha256_differs"]


async def test_when_the_hub_lists_another_sha256_for_the_linked_file_no_search_takes_it(tmp_path, upstream):
    name = "zorblax_style.safetensors"
    stated, served = weights("what the workflow was made with"), weights("what the repo holds today")
    link = hub_file(upstream, "alice/zorblax_style", name, served, downloads=10_000)
    root = make_comfy_root(tmp_path)
    row = (await fix(root, tmp_path / "state", [lora(name, stated, link)]))[name]
    assert row["state"] == "not_found", row
    assert "sha256 the workflow states" in row["reason"] and "other bytes" in row["reason"]
    assert not (root / "models/loras" / name).exists()
    refused = refusals(tmp_path / "state")
    assert {(r["sha256"], r["workflow_sha256"]) for r in refused} == {(sha(served), sha(stated))}


async def test_a_failed_link_never_falls_to_a_search_hit_with_other_bytes(tmp_path, upstream):
    tiny = upstream.payloads["tiny-lora"]  # Civitai lists it under this name, with its own sha256
    name, stated = tiny["filename"], weights("the lora the workflow was made with")
    dead = "https://huggingface.co/gone/tiny/resolve/main/" + name
    root = make_comfy_root(tmp_path)
    row = (await fix(root, tmp_path / "state", [lora(name, stated, dead)]))[name]
    assert row["state"] == "not_found" and "other bytes" in row["reason"], row
    assert not (root / "models/loras" / name).exists()
    refused = refusals(tmp_path / "state")
    assert [(r["source"], r["sha256"]) for r in refused] == [("civitai", tiny["hashes"]["SHA256"].lower())]
    assert any("refused: its sha256 is" in t for t in row["tried"]), row["tried"]


async def test_a_pick_no_source_states_a_sha256_for_is_verified_against_the_workflows(tmp_path, upstream):
    name = "zorblax_three.safetensors"
    stated = weights("the workflow's file", 500)
    # A plain git file: the Hub states no sha256 for it, so the search offers it only as a choice.
    hub_file(upstream, "plain/zorblax_three", name, weights("a small git file of the name", 500), listed_sha=False)
    root = make_comfy_root(tmp_path)
    svc = FixerService(StandaloneHost.from_root(root), tmp_path / "state", comfyui_root=root)
    await svc.start_fix(make_workflow([lora(name, stated)]), "wf")
    assert svc._task is not None
    await svc._task
    offered = {r["name"]: r for r in svc.status()["data"]["models"]}[name]
    assert offered["state"] == "needs_choice" and offered["candidates"], offered
    await svc.retry(name, offered["candidates"][0]["url"])  # the user picks it
    await svc._task
    row = {r["name"]: r for r in svc.status()["data"]["models"]}[name]
    assert row["state"] == "failed" and row["error"]["code"] == "sha256_mismatch", row
    assert sha(stated) in row["error"]["message"]
    loras = root / "models/loras"
    assert [p.name for p in loras.iterdir()] == []  # nothing under the name, no partial kept


async def test_a_local_copy_under_a_near_name_is_linked_only_with_the_stated_bytes(tmp_path, upstream):
    wanted, right = weights("the workflow's lora"), weights("the workflow's other lora")
    root = make_comfy_root(tmp_path, {"models/loras/Zorblax-Four.safetensors": weights("another lora, near name"),
                                      "models/loras/Zorblax-Five.safetensors": right})
    rows = await fix(root, tmp_path / "state", [lora("zorblax_four.safetensors", wanted),
                                               {**lora("zorblax_five.safetensors", right), "id": 2}])
    four, five = rows["zorblax_four.safetensors"], rows["zorblax_five.safetensors"]
    assert four["state"] != "done" and not (root / "models/loras/zorblax_four.safetensors").exists(), four
    assert [r["local_path"].rsplit("/", 1)[-1] for r in refusals(tmp_path / "state")] == ["Zorblax-Four.safetensors"]
    # The near name holding the stated bytes is the file: linked, not copied.
    assert five["state"] == "done", five
    linked = root / "models/loras/zorblax_five.safetensors"
    assert linked.read_bytes() == right and linked.stat().st_nlink == 2


async def test_a_choice_recorded_by_an_earlier_run_or_a_local_pick_with_other_bytes_is_refused_unfetched(
        tmp_path, upstream):
    """--resume takes resolutions.json's choices as they were (an older version may have chosen the Hub's other
    bytes; the file is untrusted input); a local copy picked for the model is checked before it is linked."""
    stated, served = weights("the file the workflow names"), weights("what the linked repo holds")
    link = hub_file(upstream, "carol/zorblax_six", "zorblax_six.safetensors", served)
    root = make_comfy_root(tmp_path, {"models/checkpoints/some_other.safetensors": weights("not it either")})
    refs = [ModelRef(n, "loras", hints=[ModelHint(hash=sha(stated), hash_type="sha256")])
            for n in ("zorblax_six.safetensors", "zorblax_seven.safetensors")]
    recorded = Candidate("huggingface", refs[0].name, "loras", 0.9, "chosen by the last run",
                         url=link.replace("https://huggingface.co", upstream.base), size=len(served),
                         sha256=sha(served))
    local = Candidate("local", refs[1].name, "loras", 1.0, "the user's pick",
                      local_path=str(root / "models/checkpoints/some_other.safetensors"))
    run = FixRun(refs, config=Config(), secrets={}, bus=EventBus(), folders=StandaloneHost.from_root(root).folders(),
                 inventory=None, state_dir=tmp_path / "state", chosen={refs[1].name: local},
                 recorded={refs[0].name: Resolution(refs[0].name, "loras", recorded)})
    rows = {r["name"]: r for r in (await run.run())["models"]}
    for row in rows.values():
        assert row["state"] == "failed" and row["error"]["code"] == "sha256_mismatch", row
        assert sha(stated) in row["error"]["message"]
    assert sha(served) in rows[refs[0].name]["error"]["message"]
    assert [r for r in upstream.requests if r.method == "GET" and "/carol/zorblax_six/resolve/" in r.path_qs] == []
    assert list((root / "models/loras").iterdir()) == []

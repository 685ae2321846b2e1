"""Hostile input: fuzzed workflows never crash or hang the scan; hostile names never write outside the model folders.

Property-based (hypothesis) with a fixed seed and modest example counts so CI is stable and fast.
The workflows are the official templates, mutated: subtrees replaced by random JSON, keys
dropped, node types and widget values swapped for hostile strings, bytes of the file flipped.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.resources
import json
import os
import random
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from fixer.app.run import place_local_copy
from fixer.config import DownloadConfig
from fixer.errors import UnsafePath
from fixer.host.host import StandaloneHost
from fixer.models import TransferRequest
from fixer.read.names import confine, unsafe_reason
from fixer.read.scan import scan_workflow_data
from fixer.transfer import TransferManager
from tests.conftest import make_comfy_root

TEMPLATES = importlib.resources.files("comfyui_workflow_templates_json") / "templates"
TEMPLATE_NAMES = sorted(p.name for p in TEMPLATES.iterdir() if p.name.endswith(".json"))
SCAN_BOUND_SECONDS = 2.0  # one fuzzed template; the largest real one scans in ~10 ms
PROFILE = settings(max_examples=40, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Names an attacker (or a careless workflow author) could put in a loader widget.
HOSTILE_NAMES = [
    "../../../etc/passwd", "..\\..\\Windows\\system32\\x.dll", "/etc/shadow", "C:\\models\\x.safetensors",
    "c:x.safetensors", "//server/share/x.safetensors", "\\\\server\\share\\x.ckpt", "ok\x00.safetensors",
    "a/../../x.safetensors", "./../x.safetensors", "a//b.safetensors", "\u2025/x.safetensors",
    "\uff0e\uff0e/\uff0e\uff0e/x.safetensors", "a\u2215..\u2215..\u2215x.safetensors", "\uff0fetc\uff0fx.safetensors",
    "x" * 300 + ".safetensors", ("d/" * 600) + "x.safetensors", "line\nbreak.safetensors", "tab\t.safetensors",
    "\u202egnp.safetensors", "CON.safetensors", "x.safetensors ", " ..", "..",
]
hostile_text = st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=80),
                         st.text(alphabet="./\\:\x00\u2025\uff0e\uff0f\u2215aZ", max_size=40)
                         .map(lambda s: s + ".safetensors"))
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), hostile_text)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> StandaloneHost:
    root = make_comfy_root(tmp_path_factory.mktemp("hostile"), {"models/loras/real.safetensors": "x"})
    return StandaloneHost.from_root(root)


def load_template(name: str) -> dict:
    return json.loads((TEMPLATES / name).read_text(encoding="utf-8"))


def mutate(doc, rng: random.Random, replacement) -> object:
    """Replace one random container entry of `doc` (in place) with `replacement`, or drop it."""
    containers = []
    stack = [doc]
    while stack:
        c = stack.pop()
        if isinstance(c, (dict, list)) and c:
            containers.append(c)
            stack.extend(c.values() if isinstance(c, dict) else c)
    if not containers:
        return replacement
    c = rng.choice(containers)
    key = rng.choice(list(c.keys())) if isinstance(c, dict) else rng.randrange(len(c))
    if rng.random() < 0.2:
        del c[key]
    else:
        c[key] = replacement
    return doc


def bounded_scan(data, host) -> None:
    began = time.monotonic()
    report = scan_workflow_data(data, "fuzz", host)
    assert time.monotonic() - began < SCAN_BOUND_SECONDS
    for s in report.models:  # anything the scan would hand to a downloader is a plain relative name
        assert s.ref.unsafe_reason or not (s.ref.name.startswith("/") or ".." in s.ref.name.split("/"))


@seed(20261121)
@PROFILE
@given(template=st.sampled_from(TEMPLATE_NAMES), mutations=st.lists(st.tuples(st.integers(0, 2**32), json_value),
                                                                     min_size=1, max_size=6))
def test_mutated_templates_scan_without_crash_in_bounded_time(host, template, mutations):
    doc = load_template(template)
    for rng_seed, replacement in mutations:
        doc = mutate(doc, random.Random(rng_seed), copy.deepcopy(replacement))
    bounded_scan(doc, host)


@seed(20261121)
@PROFILE
@given(template=st.sampled_from(TEMPLATE_NAMES), names=st.lists(hostile_text, min_size=1, max_size=8),
       rng_seed=st.integers(0, 2**32))
def test_hostile_names_in_loader_widgets_are_marked_unsafe_never_resolved_as_paths(host, template, names, rng_seed):
    doc = load_template(template)
    rng = random.Random(rng_seed)
    nodes = [n for n in doc.get("nodes", []) if isinstance(n, dict) and n.get("widgets_values")]
    for name in names:
        if nodes:
            n = rng.choice(nodes)
            wv = n["widgets_values"]
            if isinstance(wv, list):
                wv[rng.randrange(len(wv))] = name
    doc.setdefault("nodes", []).append({"id": 99999, "type": "LoraLoader", "widgets_values": [names[0], 1, 1]})
    report = scan_workflow_data(doc, "hostile", host)
    for s in report.models:
        if s.state != "unsafe":
            assert confine("/srv/models/loras", s.ref.name).is_relative_to("/srv/models/loras")


@seed(20261121)
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(template=st.sampled_from(TEMPLATE_NAMES), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                                 min_size=1, max_size=20),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_byte_mutated_template_files_are_read_or_refused_never_crash(tmp_path, host, template, flips, cut):
    raw = bytearray((TEMPLATES / template).read_bytes())
    for where, value in flips:
        raw[min(len(raw) - 1, int(where * len(raw)))] = value
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    path = tmp_path / "mutated.json"
    path.write_bytes(bytes(raw))
    from fixer.read.scan import scan_paths

    began = time.monotonic()
    report = scan_paths([str(path)], host)
    assert time.monotonic() - began < SCAN_BOUND_SECONDS
    assert report.problems or report.models is not None
    for p in report.problems:
        assert p.path.endswith("mutated.json") and p.error


def test_pathological_json_shapes_use_bounded_memory(tmp_path, host):
    """Wide, deep and repetitive documents: the scan's own allocations stay small against the input."""
    shapes = {
        "deep": "[" * 50_000 + "]" * 50_000,
        "wide_strings": json.dumps({"nodes": [{"id": i, "type": "LoraLoader",
                                               "widgets_values": ["a" * 2000 + ".safetensors"]}
                                              for i in range(5000)]}),
        "many_keys": json.dumps({"nodes": [], "extra": {str(i): i for i in range(200_000)}}),
    }
    for name, text in shapes.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        from fixer.read.scan import scan_paths

        tracemalloc.start()
        began = time.monotonic()
        scan_paths([str(path)], host)
        elapsed = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 10, name
        assert peak < 30 * len(text) + (16 << 20), f"{name}: peak {peak} bytes for a {len(text)}-byte file"


# --- writes stay inside the model folders ---------------------------------------------------------

@seed(20261121)
@settings(max_examples=200, deadline=None, derandomize=True)
@given(name=hostile_text)
def test_confine_never_returns_a_path_outside_the_root(name):
    root = Path("/srv/comfy/models/loras")
    try:
        p = confine(root, name)
    except UnsafePath:
        return
    assert p.is_relative_to(root) and ".." not in p.parts and "\x00" not in str(p)


def snapshot_outside(base: Path) -> set[str]:
    return {str(p) for p in base.rglob("*")}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_download_with_a_hostile_name_writes_nothing_outside_its_folder(tmp_path, upstream, name):
    """Names that climb out are refused before any request; odd but harmless ones land inside the folder."""
    from tests.fake_upstream.file_routes import register_hf_file

    root = make_comfy_root(tmp_path)
    folder = root / "models/loras"
    before = snapshot_outside(tmp_path)
    url = register_hf_file(upstream, "hostile/names", "x.safetensors", b"\0" * 64)

    async def go():
        mgr = TransferManager(DownloadConfig(min_free_margin_bytes=0), {})
        t = await mgr.submit(TransferRequest(url=url, folder="loras", filename=name, model_name=name), str(folder))
        await mgr.wait()
        return t

    t = asyncio.run(go())
    new = snapshot_outside(tmp_path) - before
    assert all(Path(p).is_relative_to(folder) for p in new), new
    if unsafe_reason(name):
        assert t.state == "failed" and t.error is not None, (name, t.state)
        assert "Refusing model name" in t.error.message, (name, t.error)
        assert not new and not [r for r in upstream.requests if "/resolve/" in r.path_qs]
    else:
        assert Path(t.target).parent == folder, t.target


def test_symlinked_subfolder_pointing_outside_is_refused_for_download_and_link(tmp_path, upstream):
    from tests.fake_upstream.file_routes import register_hf_file

    root = make_comfy_root(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "models/loras/escape").symlink_to(outside, target_is_directory=True)
    url = register_hf_file(upstream, "hostile/names", "y.safetensors", b"\0" * 64)

    async def go():
        mgr = TransferManager(DownloadConfig(min_free_margin_bytes=0), {})
        t = await mgr.submit(TransferRequest(url=url, folder="loras", filename="escape/y.safetensors"),
                             str(root / "models/loras"))
        await mgr.wait()
        return t

    t = asyncio.run(go())
    assert t.state == "failed" and "outside" in (t.error.message if t.error else "")
    src = root / "models/loras/real.safetensors"
    src.write_bytes(b"mine")
    with pytest.raises(UnsafePath):
        place_local_copy(str(src), str(root / "models/loras"), "escape/copy.safetensors")
    assert list(outside.iterdir()) == []


def test_symlinked_file_name_pointing_outside_is_not_overwritten(tmp_path, upstream):
    from tests.fake_upstream.file_routes import register_hf_file

    root = make_comfy_root(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / "models/loras/trap.safetensors").symlink_to(victim)
    url = register_hf_file(upstream, "hostile/names", "z.safetensors", b"\0" * 64)

    async def go():
        mgr = TransferManager(DownloadConfig(min_free_margin_bytes=0), {})
        t = await mgr.submit(TransferRequest(url=url, folder="loras", filename="trap.safetensors"),
                             str(root / "models/loras"))
        await mgr.wait()
        return t

    t = asyncio.run(go())
    assert t.state == "failed"
    assert victim.read_text() == "precious"
    assert os.path.islink(root / "models/loras/trap.safetensors")

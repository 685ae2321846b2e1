"""Real node packs' example workflows, on a fresh install: every reference found, in the folder its node reads.

Opt-in: needs COMFYUI_DIR with the packs of tests/data/real_packs/packs.json in its custom_nodes/ and
empty model folders. The truth (tests/data/real_packs/truth.json) was probed in that ComfyUI: a
marker file in every registered folder, then /object_info. Figures for the three ways of scanning
(and the CLI asking that ComfyUI with --server) are printed side by side (`-s`), as
benchmarks/custom_nodes_bench.py does. COMFY_CORPUS=tests/data/real_packs_2 (or _3) runs another corpus
against a ComfyUI with that corpus' packs installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.custom_nodes_bench import (
    DATA,
    MODES,
    NotReady,
    missing_workflows,
    print_agreement,
    print_table,
    run_all,
    workflow_files,
)

pytestmark = pytest.mark.e2e

INSIDE, CLI_ROOT, KEYWORDS, CLI_SERVER = MODES


@pytest.fixture(scope="module")
def scores():
    value = os.environ.get("COMFYUI_DIR")
    if not value:
        pytest.skip("COMFYUI_DIR is not set: the real node pack corpus needs a ComfyUI with the packs of "
                    "tests/data/real_packs/packs.json installed (scripts/setup_e2e.sh with COMFY_PACKS_FROM)")
    root = Path(value).expanduser().resolve()
    corpus = Path(os.environ.get("COMFY_CORPUS") or DATA).resolve()
    missing = missing_workflows(workflow_files(root, corpus))
    if missing:
        pytest.skip(missing)
    try:
        result, agreement = run_all(root, corpus=corpus)
    except NotReady as e:
        pytest.fail(str(e))
    print()
    print_table(result)
    print_agreement(agreement)
    return result


def detail(score, *kinds: str) -> str:
    lists = {"wrong": score.wrong, "missed": score.missed, "fp_self": score.fp_self, "fp_prompt": score.fp_prompt}
    return "\n".join(item for k in kinds for item in lists[k][:20])


def test_inside_comfyui_reports_every_reference(scores):
    s = scores[INSIDE]
    assert s.found / s.refs >= 0.99, detail(s, "missed")


def test_inside_comfyui_puts_references_in_the_folder_their_node_reads(scores):
    s = scores[INSIDE]
    assert s.right / s.refs >= 0.99, detail(s, "wrong", "missed")


@pytest.mark.parametrize("mode", [CLI_ROOT, CLI_SERVER])
def test_cli_with_the_comfyui_folder_puts_references_in_the_folder_their_node_reads(scores, mode):
    s = scores[mode]
    assert s.right / s.refs >= 0.95, detail(s, "wrong", "missed")


@pytest.mark.parametrize("mode", MODES)
def test_text_a_node_does_not_parse_is_never_a_reference(scores, mode):
    assert scores[mode].fp_prompt == []


@pytest.mark.parametrize("mode", [INSIDE, CLI_ROOT, CLI_SERVER])  # keyword-only knows no node's own choices
def test_a_model_the_node_downloads_itself_is_never_missing(scores, mode):
    assert scores[mode].fp_self == []


def test_asking_the_nodes_never_shows_in_what_object_info_lists(scores):
    s = scores[INSIDE]
    assert s.polls and s.polls > 1, "/object_info was not read while the scans ran"
    assert s.leaks == []

"""The one folder-arbitration rule every source follows (sources.base.settle_folder)."""

from __future__ import annotations

from fixer.models import ModelRef
from fixer.sources.base import CONFIDENCE, settle_folder

WORDS = {"took": "took", "clash": "clash", "unknown": "unknown"}


def test_a_guessed_folder_gives_way_to_the_sources_folder():
    ref = ModelRef("x.safetensors", "loras", folder_source="keyword")
    assert settle_folder(ref, "vae", 0.9, **WORDS) == ("vae", 0.9, "took")


def test_a_guessed_folder_stands_against_a_source_that_is_not_authoritative():
    ref = ModelRef("x.safetensors", "loras", folder_source="keyword")
    assert settle_folder(ref, "vae", 0.9, authoritative=False, **WORDS) == ("loras", CONFIDENCE["wrong_folder"],
                                                                            "clash")


def test_the_nodes_folder_stands_and_a_disagreeing_source_lowers_confidence():
    ref = ModelRef("x.safetensors", "loras", folder_source="node_table")
    assert settle_folder(ref, "vae", 0.9, **WORDS) == ("loras", CONFIDENCE["wrong_folder"], "clash")


def test_no_folder_on_either_side_leaves_the_choice_to_the_user():
    assert settle_folder(ModelRef("x.safetensors", None), None, 0.9, **WORDS) == (None, CONFIDENCE["contested"],
                                                                                  "unknown")
    assert settle_folder(ModelRef("x.safetensors", None), "vae", 0.9, **WORDS) == ("vae", 0.9, "")

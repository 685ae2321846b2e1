"""The design notes the code relies on are in docs/; nothing in the repository cites a document outside it."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT

# Names of the documents the project was started from, and ways of citing them, none of which a reader
# of this repository can open.
OUTSIDE = re.compile(r"design\.md|upstream-apis|host[- ]contract|comfyui-e2e\.md|style\.md|/work/shared|"
                     r"\bissues? \d+\b|\bthe seeds?\b|\bseeds?'s?\b|§", re.IGNORECASE)
SKIP = {"tests/test_docs_references.py",
        "README.md"}  # the lead edits the README; its wording is handed over in the engineers' notes
TEXT = (".py", ".js", ".mjs", ".md", ".toml", ".txt", ".json", ".yaml", ".css", ".html")
DOCS = ("architecture.md", "comfyui-facts.md", "upstream.md", "glossary.md")


def tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    data = ("tests/data/",)  # fixtures: captured upstream and ComfyUI data, not prose of ours
    return [p for p in out.splitlines() if p.endswith(TEXT) and p not in SKIP and "node_modules" not in p
            and (not p.startswith(data) or p.endswith("README.md"))]


def test_no_file_cites_a_document_outside_the_repository():
    hits = []
    for rel in tracked_text_files():
        path = ROOT / rel
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert hits == []


def test_the_design_notes_are_in_docs_and_their_links_resolve():
    for name in DOCS:
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert len(text) > 1500, name
        for target in re.findall(r"\]\(([^)#]+)", text):
            if "://" not in target:
                assert (ROOT / "docs" / target).is_file(), f"{name} links to {target}"

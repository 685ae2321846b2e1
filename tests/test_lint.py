"""The checkout passes ruff and mypy as configured in pyproject.toml (mypy strict on the engine package)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import ROOT

# Kept between runs (outside the checkout): a warm mypy run takes seconds, a cold one about a minute.
MYPY_CACHE = Path(tempfile.gettempdir()) / "comfyfixersmart-mypy-cache"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing() -> None:
    r = run("ruff", "check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_finds_nothing_in_the_engine() -> None:
    r = run("mypy", "--cache-dir", str(MYPY_CACHE))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout

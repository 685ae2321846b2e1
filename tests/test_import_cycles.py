"""scripts/check_import_cycles.py: CI fails on an import cycle among the project's modules, naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "check_import_cycles.py"


def run(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60)


def tree(base: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return base


def test_the_project_has_no_import_cycles():
    r = run(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_cycle_through_a_lazy_import_is_named_and_fails(tmp_path):
    root = tree(tmp_path, {"lib/__init__.py": "", "lib/a.py": "from .b import helper\n",
                           "lib/b.py": "def helper():\n    from lib import c\n", "lib/c.py": "import lib.a\n",
                           "lib/d.py": "from . import a\n"})
    r = run(root)
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["import cycle: lib.a -> lib.b -> lib.c -> lib.a"]


def test_a_package_face_imported_back_by_its_member_is_a_cycle(tmp_path):
    root = tree(tmp_path, {"lib/__init__.py": "from .member import Thing\n",
                           "lib/member.py": "from . import CONSTANT\n"})
    assert run(root).stdout.splitlines() == ["import cycle: lib -> lib.member -> lib"]


def test_the_pack_root_adapters_are_modules_too(tmp_path):
    root = tree(tmp_path, {"__init__.py": "from .nodes import X\n", "nodes.py": "from . import server_routes\n",
                           "server_routes.py": "from .nodes import X\n",
                           "tests/test_x.py": "import nodes\nimport server_routes\n"})
    assert run(root).stdout.splitlines() == ["import cycle: nodes -> server_routes -> nodes"]


def test_imports_without_a_cycle_pass(tmp_path):
    root = tree(tmp_path, {"lib/__init__.py": "from .a import f\n", "lib/a.py": "from .b import g\nimport json\n",
                           "lib/b.py": "import os\n", "tests/test_a.py": "from lib import a\n"})
    r = run(root)
    assert r.returncode == 0 and "no import cycles among 3 modules" in r.stdout

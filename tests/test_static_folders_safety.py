"""The static pack reader reads regular files of the pack only, under a size cap: a symlink to
/dev/zero (git stores such links), a FIFO, a link to a file outside the pack or an oversized file is never
read, and the rest of the pack still is.

Run in a child process with a memory ceiling and a time-out: the reader that followed /dev/zero read until
memory ran out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

NODE = """
import folder_paths

class {name}:
    @classmethod
    def INPUT_TYPES(s):
        return {{"required": {{"model": (folder_paths.get_filename_list("{folder}"),)}}}}

NODE_CLASS_MAPPINGS = {{"{name}": {name}}}
"""

CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pathlib import Path
from fixer.host.static_folders import read_pack
print(json.dumps(sorted(read_pack(Path(sys.argv[1])))))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX links and FIFOs")
def test_links_devices_fifos_and_big_files_are_never_read(tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "stranger.py").write_text(NODE.format(name="StrangerLoader", folder="loras"))
    pack = tmp_path / "custom_nodes" / "pack"
    pack.mkdir(parents=True)
    (pack / "good.py").write_text(NODE.format(name="GoodLoader", folder="vae"))
    (pack / "zero.py").symlink_to("/dev/zero")
    (pack / "stranger.py").symlink_to(outside / "stranger.py")
    os.mkfifo(pack / "pipe.py")
    (pack / "huge.py").write_text(NODE.format(name="HugeLoader", folder="vae") + "#" * 2_100_000 + "\n")
    (pack / "inside.py").symlink_to(pack / "good.py")  # a link that stays in the pack is fine
    run = subprocess.run([sys.executable, "-c", CHILD, str(pack)], check=False, capture_output=True, text=True,
                         timeout=60,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout) == ["GoodLoader"]


def test_read_source_keeps_to_the_pack_and_the_cap(tmp_path: Path):
    from fixer.host.static_folders import read_source

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "big.py").write_text("#" * 101)
    root = os.path.realpath(tmp_path)
    assert read_source(tmp_path / "a.py", root) == "x = 1\n"
    assert read_source(tmp_path / "big.py", root, limit=100) is None
    assert read_source(tmp_path / "a.py", os.path.realpath(tmp_path / "sub")) is None
    (tmp_path / "dev.py").symlink_to("/dev/null")
    assert read_source(tmp_path / "dev.py", root) is None

"""Kill tests: a CLI run and a ComfyUI-side run killed with SIGKILL, then run again, end with verified files.

Each run is a real process (`python -m fixer ...` or a FixerService script) against the fake upstream
in this test process. A watcher thread parses status.json and the output JSON files every few
milliseconds for the whole test: they must be valid JSON at every moment. Kill points:
- during search: the HF paths-info answer is held back, the process is killed while it waits;
- mid-download: the file is served slowly, the process is killed once ~1 MiB is on disk;
- during verification / at the final rename: a hook in the child SIGKILLs the process from inside
  the size check, or at the os.replace of the .part (before or just after it), so the point is exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json
from tests.fake_upstream import Fault, payload_bytes
from tests.fake_upstream.api_routes import add_hf_repo
from tests.fake_upstream.file_routes import faults, hf_key, register_hf_file

REPO = "kill/tests"
NAME = "big.safetensors"

# The child process: optional SIGKILL hooks at exact points, then the real CLI.
HOOKED_CLI = """
import os, signal, sys
import fixer.transfer.finish as finish
point = os.environ.get("KILL_AT")
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point == "verify":
    finish.check_size = die
elif point in ("rename", "after_rename"):
    real = os.replace
    def replace(src, dst, *a, **k):
        if str(src).endswith(".part") and point == "rename":
            die()
        out = real(src, dst, *a, **k)
        if str(src).endswith(".part"):
            die()
        return out
    os.replace = replace
from fixer.app.cli import main
sys.exit(main(sys.argv[1:]))
"""

SERVICE_RUN = """
import asyncio, json, sys
from pathlib import Path
from fixer.host.host import StandaloneHost
from fixer.app.service import FixerService

async def main():
    root, state = Path(sys.argv[1]), Path(sys.argv[2])
    svc = FixerService(StandaloneHost.from_root(root), state, comfyui_root=root)
    await svc.start_fix(json.loads(Path(sys.argv[3]).read_text()), "w")
    await svc._task
    print(json.dumps(svc.status()["data"]["summary"]))

asyncio.run(main())
"""


class JsonWatcher:
    """Parses every JSON file the run keeps (status, outputs) in a loop; records any half-written read."""

    def __init__(self, state: Path):
        self.paths = [state / "status.json", state / "output" / "downloaded_models.json",
                      state / "output" / "resolutions.json"]
        self.bad: list[str] = []
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.paths:
                try:
                    text = p.read_text(encoding="utf-8")
                except FileNotFoundError:
                    continue
                try:
                    json.loads(text)
                    self.reads += 1
                except ValueError as e:
                    self.bad.append(f"{p.name}: {e}: {text[:80]!r}")
            time.sleep(0.002)

    def __enter__(self) -> "JsonWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def world(tmp_path, upstream):
    """A ComfyUI tree whose workflow needs one 6 MiB LoRA that only the fake HF has."""
    data = payload_bytes({"seed": "kill-test", "recipe": "safetensors", "n_values": 3 << 20})
    sha = hashlib.sha256(data).hexdigest()
    add_hf_repo(upstream, REPO, {NAME: (len(data), sha)})
    register_hf_file(upstream, REPO, NAME, data)
    root = make_comfy_root(tmp_path)
    wf = make_workflow([node(1, "LoraLoader", [NAME, 1, 1], models=[{
        "name": NAME, "url": f"https://huggingface.co/{REPO}/resolve/main/{NAME}", "hash": sha,
        "hash_type": "sha256", "directory": "loras"}])])
    write_json(root / "user/default/workflows/w.json", wf)
    state = tmp_path / "state"
    env = {**os.environ, **upstream.env(), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    return {"up": upstream, "root": root, "state": state, "env": env, "data": data, "sha": sha, "wf": wf,
            "final": root / "models/loras" / NAME, "part": root / "models/loras" / (NAME + ".part")}


def cli(world, *args: str, kill_at: str | None = None) -> subprocess.Popen:
    env = {**world["env"], **({"KILL_AT": kill_at} if kill_at else {})}
    return subprocess.Popen([sys.executable, "-c", HOOKED_CLI, *args, "--comfyui-root", str(world["root"]),
                             "--state-dir", str(world["state"])], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def wait_for(cond, timeout: float = 30, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def recorded(part: Path) -> int:
    """Bytes the sidecar says are on disk (0 while absent or being replaced)."""
    try:
        ranges = json.loads(Path(f"{part}.json").read_text())["ranges"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(b - a for a, b in ranges)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def assert_verified(world) -> None:
    assert hashlib.sha256(world["final"].read_bytes()).hexdigest() == world["sha"]
    assert not world["part"].exists() and not Path(f"{world['part']}.json").exists()


def resumed_from(up) -> int:
    """Where the rerun's first ranged GET after its probe (always `bytes=0-`) started."""
    gets = [r for r in up.requests if r.path_qs.startswith("/cdn/")]
    assert len(gets) >= 2 and gets[0].headers.get("Range") == "bytes=0-", [g.headers.get("Range") for g in gets]
    return int(gets[1].headers["Range"].split("=")[1].split("-")[0])


def test_cli_killed_during_search_leaves_no_file_and_the_next_run_finishes(world):
    up = world["up"]
    hold = up.add_fault(Fault(path=r"/paths-info/", delay=3, times=1))  # killed long before it answers
    with JsonWatcher(world["state"]) as watch:
        proc = cli(world, "--auto", "--yes")
        wait_for(lambda: hold.hits, what="the search to reach the held paths-info request")
        kill(proc)
        assert not world["final"].exists() and not world["part"].exists()
        code, out = finish(cli(world, "--resume"))
        # --resume searches and downloads the model the killed run never finished searching.
        assert code == 0 and "Continuing the last run: 1 model(s) not searched yet" in out, out
        assert_verified(world)
        code, out = finish(cli(world, "--auto", "--yes"))
    assert code == 0 and "No model is missing." in out, out
    assert_verified(world)
    assert not watch.bad and watch.reads


def test_cli_killed_mid_download_resumes_from_the_bytes_on_disk(world):
    up = world["up"]
    faults(up, hf_key(REPO, NAME)).rate = 384 << 10  # per connection: 6 MiB in ~3 s on its 6 connections
    with JsonWatcher(world["state"]) as watch:
        proc = cli(world, "--auto", "--yes")
        wait_for(lambda: recorded(world["part"]) >= 1 << 20, what="1 MiB recorded in the .part sidecar")
        kill(proc)
        assert not world["final"].exists() and world["part"].exists()
        faults(up, hf_key(REPO, NAME)).rate = None
        up.requests.clear()
        code, out = finish(cli(world, "--resume"))
    assert code == 0, out
    assert_verified(world)
    assert resumed_from(up) > 0, "the resumed run continued from the kept bytes"
    assert not watch.bad and watch.reads


@pytest.mark.parametrize("point", ["verify", "rename"])
def test_cli_killed_at_verification_or_rename_never_leaves_a_bad_final_file(world, point):
    with JsonWatcher(world["state"]) as watch:
        code, out = finish(cli(world, "--auto", "--yes", kill_at=point))
        assert code == -signal.SIGKILL, out
        assert not world["final"].exists(), "the final name appears only after verification and rename"
        assert world["part"].exists()
        world["up"].requests.clear()
        code, out = finish(cli(world, "--resume"))
    assert code == 0, out
    assert_verified(world)
    assert not watch.bad and watch.reads


def test_cli_killed_just_after_the_rename_has_a_verified_file_and_nothing_to_resume(world):
    code, out = finish(cli(world, "--auto", "--yes", kill_at="after_rename"))
    assert code == -signal.SIGKILL, out
    assert hashlib.sha256(world["final"].read_bytes()).hexdigest() == world["sha"]
    code, out = finish(cli(world, "--resume"))
    assert code == 0 and "Nothing to resume" in out, out
    code, out = finish(cli(world, "--auto", "--yes"))
    assert code == 0 and "No model is missing." in out, out
    assert not list(world["final"].parent.glob("*.part"))


def test_comfyui_side_run_killed_mid_download_completes_after_restart(world):
    up = world["up"]
    faults(up, hf_key(REPO, NAME)).rate = 384 << 10  # per connection: 6 MiB in ~3 s on its 6 connections
    wf_path = write_json(world["state"].parent / "posted.json", world["wf"])
    args = [sys.executable, "-c", SERVICE_RUN, str(world["root"]), str(world["state"]), str(wf_path)]
    with JsonWatcher(world["state"]) as watch:
        proc = subprocess.Popen(args, env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: recorded(world["part"]) >= 1 << 20, what="1 MiB recorded in the .part sidecar")
        kill(proc)
        status = json.loads((world["state"] / "status.json").read_text())
        assert status["phase"] in ("resolving", "downloading"), status["phase"]
        faults(up, hf_key(REPO, NAME)).rate = None
        up.requests.clear()
        code, out = finish(subprocess.Popen(args, env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True))
    assert code == 0, out
    assert json.loads(out.splitlines()[0])["done"] == 1, out
    assert_verified(world)
    assert resumed_from(up) > 0, "the restarted run continued from the kept bytes"
    assert not watch.bad and watch.reads

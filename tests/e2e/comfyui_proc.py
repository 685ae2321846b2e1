"""Start and stop a real ComfyUI (CPU only, loopback) with this pack in its custom_nodes.

Used by the e2e conftest, and by hand while working on the page:

    COMFYUI_DIR=... python -m tests.e2e.comfyui_proc [--front-end-root DIR]

Everything ComfyUI writes goes under a throwaway base directory: models, user settings, the
database, and this pack's state (user/comfyfixer/). HOME points there too, so no ~/.secrets or
Hugging Face cache of the person running the tests is read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fixer.constants import CLIENT_HEADER

E2E = Path(__file__).resolve().parent
REPO = E2E.parents[1]
ARTIFACTS = E2E / "artifacts"  # screenshots, result.json, ComfyUI logs (gitignored)
PACK_NAME = "ComfyFixerSmart"
READY_LINE = "To see the GUI go to"


def comfy_python(comfyui_dir: Path) -> str:
    """COMFY_PYTHON, else the venv setup_e2e.sh makes beside the ComfyUI tree."""
    explicit = os.environ.get("COMFY_PYTHON")
    if explicit:
        return explicit
    return str(comfyui_dir.parent / "comfy-venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ComfyUI:
    base: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    start_seconds: float = 0.0  # process start -> "To see the GUI go to"
    label: str = ""  # which frontend (the e2e fixture sets it)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def models(self) -> Path:
        return self.base / "models"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get_json(self, route: str) -> object:
        req = urllib.request.Request(self.url + route, headers={CLIENT_HEADER: "e2e"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def post_json(self, route: str, body: object) -> tuple[int, object]:
        req = urllib.request.Request(self.url + route, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", CLIENT_HEADER: "e2e"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: ComfyUI and nothing else
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def prepare_base(base: Path, pack_dir: Path = REPO) -> None:
    # custom_nodes must exist or startup dies in the prestartup scan (runbook F4).
    for d in ("custom_nodes", "models/checkpoints", "models/loras", "input", "output", "temp", "user", "home"):
        (base / d).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_NAME
    if not link.exists():
        link.symlink_to(pack_dir, target_is_directory=True)


def start_comfyui(comfyui_dir: Path, base: Path, *, env: dict[str, str] | None = None,
                  front_end_root: str | None = None, python: str | None = None,
                  timeout: float = 120.0) -> ComfyUI:
    """Start ComfyUI on a free loopback port and wait until it serves; raise with the log tail if not."""
    prepare_base(base)
    port = free_port()
    cmd = [python or comfy_python(comfyui_dir), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base),
           # The database default ignores --base-directory (runbook F5).
           "--database-url", f"sqlite:///{base}/user/comfyui.db"]
    if front_end_root:
        cmd += ["--front-end-root", front_end_root]
    full_env = {**os.environ, "HOME": str(base / "home"), "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path = base / "comfyui.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=comfyui_dir, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    comfy = ComfyUI(base, port, proc, log_path)
    began = time.monotonic()
    deadline = began + timeout
    while READY_LINE not in comfy.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            comfy.stop()
            tail = "\n".join(comfy.log().splitlines()[-40:])
            raise RuntimeError(f"ComfyUI did not start (exit code {proc.poll()}); log tail:\n{tail}")
        time.sleep(0.2)
    comfy.start_seconds = round(time.monotonic() - began, 1)
    comfy.get_json("/system_stats")
    # A fresh user dir opens the template browser over the canvas; mark the tutorial as done.
    comfy.post_json("/api/settings/Comfy.TutorialCompleted", True)
    return comfy


def pack_import_line(log: str) -> str | None:
    """The pack's line in ComfyUI's "Import times for custom nodes" block, or None."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "Import times for custom nodes" in line:
            for entry in lines[i + 1:]:
                if not entry.strip():
                    break
                if entry.rstrip().endswith(f"custom_nodes/{PACK_NAME}") or f"/{PACK_NAME}" in entry:
                    return entry.strip()
    return None


if __name__ == "__main__":  # a ComfyUI for working on the page by hand; Ctrl+C stops it
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front-end-root")
    parser.add_argument("--base", help="base directory (default: a new temporary one)")
    parser.add_argument("--fake-upstream", action="store_true", help="serve the fake Civitai/HF and point at it")
    args = parser.parse_args()
    env = {}
    up = None
    if args.fake_upstream:
        import sys

        sys.path.insert(0, str(REPO))
        from tests.fake_upstream import FakeUpstream

        up = FakeUpstream().start()
        env = up.env()
    comfy = start_comfyui(Path(os.environ["COMFYUI_DIR"]), Path(args.base or tempfile.mkdtemp(prefix="comfy-e2e-")),
                          env=env, front_end_root=args.front_end_root)
    print(f"ComfyUI ready: {comfy.url} base={comfy.base} log={comfy.log_path}", flush=True)
    try:
        comfy.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        comfy.stop()
        if up:
            up.stop()

"""`comfy-fixer --auto`: scan -> resolve -> download -> verify in one command, against the fake upstream."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
from io import StringIO

from fixer.app.cli import review_prompt
from fixer.app.console import human_bytes
from tests.conftest import ROOT, make_comfy_root, make_workflow, node, write_json


def run_auto(root, state, env, *extra, stdin=subprocess.DEVNULL, input=None):
    return subprocess.run([sys.executable, "-m", "fixer", "--auto", "--comfyui-root", str(root),
                           "--state-dir", str(state), *extra],
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, stdin=stdin if input is None else None, input=input)


def test_auto_downloads_relinks_and_reports_what_it_could_not_find(tmp_path, upstream):
    root = make_comfy_root(tmp_path, {"models/checkpoints/wrongplace.safetensors": "mine"})
    lora = upstream.payloads["tiny-lora"]
    wf = make_workflow([
        node(1, "LoraLoader", [lora["filename"], 1, 1],
             models=[{"name": lora["filename"], "url": "https://civitai.com/api/download/models/9100101",
                      "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "loras"}]),
        node(2, "VAELoader", ["wrongplace.safetensors"]),
        node(3, "LoraLoader", ["zzz_no_such_thing_anywhere.safetensors", 1, 1]),
    ])
    write_json(root / "user/default/workflows/w.json", wf)
    r = run_auto(root, tmp_path / "state", upstream.env())
    assert r.returncode == 1, r.stderr  # one model stays not found
    landed = root / "models/loras" / lora["filename"]
    assert hashlib.sha256(landed.read_bytes()).hexdigest().upper() == lora["hashes"]["SHA256"]
    assert (root / "models/vae/wrongplace.safetensors").read_text() == "mine"
    assert (root / "models/checkpoints/wrongplace.safetensors").exists()  # the user's copy is left alone
    assert "=== Summary ===" in r.stdout and "Not found: loras/zzz_no_such_thing_anywhere.safetensors" in r.stdout
    resolutions = json.loads((tmp_path / "state/output/resolutions.json").read_text())
    assert {x["filename"]: (x["source"], x["found_by"]) for x in resolutions} == {
        lora["filename"]: ("civitai", "embedded"), "wrongplace.safetensors": ("local", "local"),
        "zzz_no_such_thing_anywhere.safetensors": ("not_found", None)}
    status = json.loads((tmp_path / "state/status.json").read_text())
    assert status["phase"] == "complete" and status["data"]["summary"]["done"] == 2
    assert not list((root / "models").rglob("*.part"))


def lora_workflow_root(tmp_path, upstream):
    """A ComfyUI missing the fake upstream's tiny LoRA (its workflow carries the download link)."""
    root = make_comfy_root(tmp_path)
    lora = upstream.payloads["tiny-lora"]
    write_json(root / "user/default/workflows/w.json", make_workflow([
        node(1, "LoraLoader", [lora["filename"], 1, 1],
             models=[{"name": lora["filename"], "url": "https://civitai.com/api/download/models/9100101",
                      "hash": lora["hashes"]["SHA256"].lower(), "hash_type": "sha256", "directory": "loras"}])]))
    return root, root / "models/loras" / lora["filename"]


def in_terminal(argv, env, answers, timeout=90):
    """Run argv with a pseudo-terminal as its stdin/stdout/stderr, typing one answer at each [y/n/v]
    prompt (None: pressing Ctrl-C); returns (everything the terminal showed, exit code)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT), "COLUMNS": "120"})
    os.close(slave)
    screen = b""

    def read() -> bool:
        nonlocal screen
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(f"the terminal went quiet; it showed:\n{screen.decode(errors='replace')}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the program ended and closed the terminal
            chunk = b""
        screen += chunk
        return bool(chunk)

    try:
        for i, answer in enumerate(answers, 1):
            while screen.count(b"[y/n/v]: ") < i:
                if not read():
                    raise AssertionError(f"no prompt #{i}; the terminal showed:\n{screen.decode(errors='replace')}")
            if answer is None:
                proc.send_signal(signal.SIGINT)
            else:
                os.write(master, answer.encode() + b"\n")
        while read():
            pass
        return screen.decode(errors="replace"), proc.wait(timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def auto_argv(root, state):
    return [sys.executable, "-m", "fixer", "--auto", "--comfyui-root", str(root), "--state-dir", str(state)]


def test_review_prompt_shows_count_size_destination_and_free_space_and_v_lists_each_path(tmp_path, capsys):
    from fixer.app.review import make_plan

    models = tmp_path / "models"
    plan = make_plan([("a.safetensors", "loras", 600_000), ("sub/b.safetensors", "loras", 1_100_000)],
                     lambda folder: str(models / folder))
    assert review_prompt(plan, tmp_path, StringIO("v\nn\n")) is False
    shown = capsys.readouterr().out
    prompt = "Download 2 models, 1.7 MB, into models/loras/ (free: "
    assert shown.count(prompt) == 2 and shown.count("Your choice [y/n/v]") == 2
    assert f"{models / 'loras' / 'a.safetensors'}  (600.0 KB)" in shown
    assert f"{models / 'loras' / 'sub' / 'b.safetensors'}  (1.1 MB)" in shown
    assert review_prompt(plan, tmp_path, StringIO("y\n")) is True
    assert review_prompt(plan, tmp_path, StringIO("")) is False  # end of input is a no


def test_auto_in_a_terminal_asks_with_the_totals_after_resolving_and_n_downloads_nothing(tmp_path, upstream):
    root, lora = lora_workflow_root(tmp_path, upstream)
    screen, code = in_terminal(auto_argv(root, tmp_path / "state"), upstream.env(), ["v", "n"])
    headline = re.search(r"Download 1 model, ([^,]+), into models/loras/ \(free: [\d.]+ [KMGT]?B\)\? "
                         r"Your choice \[y/n/v\]", screen)
    assert headline, screen
    size = human_bytes(len(upstream.payload("tiny-lora")))
    assert headline.group(1) == size, screen  # the size the source reported, known before any byte moved
    assert f"loras              {lora}  ({size}, from 127.0.0.1:{upstream.port})" in screen  # v: path, origin
    assert "Nothing downloaded." in screen and code == 1
    assert not lora.exists() and not list((root / "models").rglob("*.part"))
    resolutions = json.loads((tmp_path / "state/output/resolutions.json").read_text())
    assert [r["filename"] for r in resolutions] == [lora.name]  # what was found is kept for --download


def test_auto_in_a_terminal_v_says_a_copy_already_on_disk_is_linked_not_downloaded(tmp_path, upstream):
    root = make_comfy_root(tmp_path, {"models/checkpoints/wrongplace.safetensors": "mine"})
    write_json(root / "user/default/workflows/w.json", make_workflow([node(2, "VAELoader",
                                                                           ["wrongplace.safetensors"])]))
    screen, code = in_terminal(auto_argv(root, tmp_path / "state"), upstream.env(), ["v", "y"])
    assert f"linked from {root / 'models/checkpoints/wrongplace.safetensors'})" in screen, screen
    assert code == 0 and (root / "models/vae/wrongplace.safetensors").read_text() == "mine"


def test_auto_in_a_terminal_ctrl_c_at_the_prompt_is_a_no_and_the_run_ends_cleanly(tmp_path, upstream):
    root, lora = lora_workflow_root(tmp_path, upstream)
    screen, code = in_terminal(auto_argv(root, tmp_path / "state"), upstream.env(), [None])
    assert "Nothing downloaded." in screen and code == 1, screen
    assert not lora.exists() and not list((root / "models").rglob("*.part"))
    status = json.loads((tmp_path / "state/status.json").read_text())
    assert status["phase"] == "complete" and status["data"]["models"][0]["state"] == "cancelled"


def test_auto_in_a_terminal_with_yes_downloads_without_asking(tmp_path, upstream):
    root, lora = lora_workflow_root(tmp_path, upstream)
    screen, code = in_terminal([*auto_argv(root, tmp_path / "state"), "--yes"], upstream.env(), [])
    assert code == 0 and "[y/n/v]" not in screen, screen
    assert lora.stat().st_size == len(upstream.payload("tiny-lora"))


def test_auto_in_a_terminal_downloads_after_y_with_the_progress_display(tmp_path, upstream):
    root, lora = lora_workflow_root(tmp_path, upstream)
    screen, code = in_terminal(auto_argv(root, tmp_path / "state"), upstream.env(), ["y"])
    assert code == 0, screen
    digest = upstream.payloads["tiny-lora"]["hashes"]["SHA256"]
    assert hashlib.sha256(lora.read_bytes()).hexdigest().upper() == digest
    assert f"done      loras/{lora.name} ({human_bytes(len(upstream.payload('tiny-lora')))}, sha256 verified)" \
        in screen, screen
    assert screen.index("[y/n/v]") < screen.index("done      loras/") < screen.index("=== Summary ===")


def test_auto_with_nothing_missing_exits_0(tmp_path, upstream):
    root = make_comfy_root(tmp_path, {"models/vae/v.safetensors": ""})
    write_json(root / "user/default/workflows/w.json", make_workflow([node(1, "VAELoader", ["v.safetensors"])]))
    r = run_auto(root, tmp_path / "state", upstream.env())
    assert r.returncode == 0 and "No model is missing." in r.stdout

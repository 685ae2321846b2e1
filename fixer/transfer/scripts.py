"""File-contract outputs: one resumable curl script per download, numbered by a persistent counter.

`output/download_NNN_<name>.sh` lets a person redo a download by hand (or on another machine).
Tokens are never written into a script: it reads $HF_TOKEN / $CIVITAI_API_KEY from the
environment, and curl (7.58+) drops a custom Authorization header when a redirect leaves the
host. The script downloads to `<target>.curl.part` (not the engine's sparse `.part`, which curl's
`-C -` would misread), checks size and sha256 when known, and only then renames.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from ..models import TransferRequest
from .policy import strip_secret_query, token_name_for

COUNTER_FILE = "download_counter.txt"


def next_number(output_dir: Path) -> int:
    """Increment output/download_counter.txt under a file lock (several runs may share the folder)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / COUNTER_FILE
    with open(path, "a+", encoding="utf-8") as f:
        try:
            import fcntl  # not on Windows, where one run at a time is the norm
        except ImportError:
            pass
        else:
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read().strip()
        n = int(text) + 1 if text.isdigit() else 1
        f.seek(0)
        f.truncate()
        f.write(f"{n}\n")
    return n


def script_name(n: int, filename: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(filename)) or "model"
    return f"download_{n:03d}_{stem}.sh"


def render(req: TransferRequest, target: str, total: int | None) -> str:
    url = strip_secret_query(req.url)
    token = token_name_for(url, req.source)
    q = shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        f"# ComfyFixerSmart: download {req.model_name or req.filename} into {req.folder} ({req.source or 'direct'}).",
        "# Resumable: run it again after an interruption. Tokens come from the environment, never from this file.",
        "set -euo pipefail",
        f"url={q(url)}",
        f"target={q(target)}",
        'part="$target.curl.part"',
        'mkdir -p "$(dirname "$target")"',
        "auth=()",
    ]
    if token:
        lines.append(f'if [ -n "${{{token}:-}}" ]; then auth=(-H "Authorization: Bearer ${token}"); fi')
    lines.append('curl -fL --retry 5 --retry-delay 2 -C - ${auth[@]+"${auth[@]}"} -o "$part" "$url"')
    if total is not None:
        lines += [
            f"expected_size={total}",
            'actual_size=$(wc -c < "$part" | tr -d " ")',
            'if [ "$actual_size" != "$expected_size" ]; then',
            '  echo "size mismatch: expected $expected_size, got $actual_size; $part kept for resume" >&2; exit 1',
            "fi",
        ]
    if req.sha256:
        lines += [
            f"expected_sha256={q(req.sha256.lower())}",
            'actual_sha256=$(sha256sum "$part" | cut -d" " -f1)',
            'if [ "$actual_sha256" != "$expected_sha256" ]; then',
            '  echo "sha256 mismatch: expected $expected_sha256, got $actual_sha256" >&2; rm -f "$part"; exit 1',
            "fi",
        ]
    lines += ['mv -f "$part" "$target"', 'echo "done: $target"', ""]
    return "\n".join(lines)


def write_script(output_dir: Path, req: TransferRequest, target: str, total: int | None = None) -> Path:
    n = next_number(output_dir)
    path = output_dir / script_name(n, req.filename)
    path.write_text(render(req, target, total), encoding="utf-8")
    path.chmod(0o755)
    return path

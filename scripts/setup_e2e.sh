#!/usr/bin/env bash
# Prepare the opt-in end-to-end environment: a CPU-only Python venv for a real ComfyUI,
# Debian's Chromium, playwright-core for tests/e2e, and (optionally) a newer frontend build.
#
#   COMFYUI_DIR=/path/to/ComfyUI scripts/setup_e2e.sh
#
# Variables (all optional except COMFYUI_DIR):
#   COMFYUI_DIR            ComfyUI work tree. If it does not exist and COMFY_SOURCE is set, it is cloned from there.
#   COMFY_SOURCE           a git URL or local mirror of ComfyUI to clone when COMFYUI_DIR is missing.
#   COMFY_VENV             venv to create (default: $COMFYUI_DIR/../comfy-venv); tests use $COMFY_VENV/bin/python.
#   COMFY_FRONTEND_VERSION also unpack comfyui-frontend-package==VERSION under $COMFYUI_DIR/../frontend-VERSION
#                          (pass its static/ folder to the tests as COMFY_FRONTEND_ROOT).
#   SKIP_APT=1             do not apt-get chromium (already installed, or not root).
#   COMFY_PACKS_FROM       also install the node packs of tests/data/real_packs/packs.json (the corpus of
#                          tests/e2e/test_e2e_custom_nodes.py) into $COMFYUI_DIR/custom_nodes at their commits:
#                          a folder of git mirrors laid out <owner>+<name>/repo, or a git URL prefix
#                          (https://github.com). Their requirements go into the venv with torch pinned.
#
# Idempotent: every step checks whether it is already done. Nothing is written inside this repo except
# tests/e2e/node_modules (gitignored). ComfyUI's own source is never modified; two things are worked
# around in the venv instead (see the comments below).
set -euo pipefail

: "${COMFYUI_DIR:?set COMFYUI_DIR to the ComfyUI work tree}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
COMFY_VENV="${COMFY_VENV:-$(dirname "$COMFYUI_DIR")/comfy-venv}"
TORCH_PIN="torch==2.13.0"        # the CPU wheel; a plain `torch` could pull CUDA builds
TORCHVISION_PIN="torchvision==0.28.0"
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

if [ ! -f "$COMFYUI_DIR/main.py" ]; then
  : "${COMFY_SOURCE:?$COMFYUI_DIR has no ComfyUI checkout; set COMFY_SOURCE to a git URL or mirror to clone}"
  step "clone ComfyUI from $COMFY_SOURCE"
  git clone --no-checkout "$COMFY_SOURCE" "$COMFYUI_DIR"
  # Some snapshots lack the blob of one tokenizer file that only HunyuanVideo uses; check out the rest.
  git -C "$COMFYUI_DIR" checkout HEAD -- . 2>/dev/null \
    || git -C "$COMFYUI_DIR" checkout HEAD -- ':!comfy/text_encoders/llama_tokenizer/tokenizer.json'
fi

step "venv $COMFY_VENV"
[ -x "$COMFY_VENV/bin/python" ] || python3 -m venv "$COMFY_VENV"
PIP=("$COMFY_VENV/bin/python" -m pip install -q)

step "torch (CPU) first, so nothing below resolves a CUDA build"
"${PIP[@]}" "$TORCH_PIN"

step "ComfyUI requirements (without torch/torchvision/torchaudio) + requests"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
grep -vE '^(torch|torchvision|torchaudio)\s*$' "$COMFYUI_DIR/requirements.txt" > "$tmp/req.txt"
echo "$TORCH_PIN" > "$tmp/constraints.txt"
# requests: app/frontend_management.py imports it but requirements.txt does not list it.
"${PIP[@]}" -c "$tmp/constraints.txt" -r "$tmp/req.txt" requests

step "torchvision (pure-Python part only) + import patch"
"${PIP[@]}" --no-deps "$TORCHVISION_PIN"
# The PyPI torchvision links CUDA libs, so its C ops never load and two unguarded register_fake
# decorators make `import torchvision` itself fail. Guard them; ComfyUI only needs the import.
meta="$("$COMFY_VENV/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchvision")
print(pathlib.Path(spec.origin).parent / "_meta_registrations.py")
PY
)"
sed -i -E 's/^@torch\.library\.register_fake\("(torchvision::(nms|qnms))"\)$/@(torch.library.register_fake("\1") if torchvision.extension._has_ops() else (lambda f: f))/' "$meta"
"$COMFY_VENV/bin/python" -c "import torchvision" || { echo "torchvision still fails to import" >&2; exit 1; }

step "this pack's dependencies + ComfyUI-Manager's data (names the pack behind a missing node type)"
if [ -f "$REPO/requirements.txt" ]; then
  "${PIP[@]}" -c "$tmp/constraints.txt" -r "$REPO/requirements.txt"
else
  "${PIP[@]}" -c "$tmp/constraints.txt" aiohttp requests huggingface_hub safetensors Pillow PyYAML
fi
# This ComfyUI has no --enable-manager, so the package only provides extension-node-map.json.
"${PIP[@]}" -c "$tmp/constraints.txt" comfyui-manager==4.3

if [ -n "${COMFY_FRONTEND_VERSION:-}" ]; then
  fe="$(dirname "$COMFYUI_DIR")/frontend-$COMFY_FRONTEND_VERSION"
  step "frontend $COMFY_FRONTEND_VERSION -> $fe"
  if [ ! -d "$fe/comfyui_frontend_package/static" ]; then
    "$COMFY_VENV/bin/python" -m pip download -q --no-deps -d "$tmp/fe" "comfyui-frontend-package==$COMFY_FRONTEND_VERSION"
    mkdir -p "$fe" && "$COMFY_VENV/bin/python" -m zipfile -e "$tmp"/fe/*.whl "$fe"
  fi
  echo "COMFY_FRONTEND_ROOT=$fe/comfyui_frontend_package/static"
fi

if [ -n "${COMFY_PACKS_FROM:-}" ]; then
  step "node packs of tests/data/real_packs/packs.json from $COMFY_PACKS_FROM"
  "$COMFY_VENV/bin/python" - "$REPO/tests/data/real_packs/packs.json" "$COMFYUI_DIR/custom_nodes" \
      "$COMFY_PACKS_FROM" > "$tmp/pack-dirs.txt" <<'PY'
import json, os, subprocess, sys
packs_json, custom_nodes, source = sys.argv[1:]
data = json.load(open(packs_json))
def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
for p in data["packs"] + data["nested"]:
    dest = os.path.join(custom_nodes, p["dir"])
    url = (os.path.join(source, p["repo"].replace("/", "+", 1), "repo") if os.path.isdir(source)
           else f"{source.rstrip('/')}/{p['repo']}")
    if not os.path.isdir(os.path.join(dest, ".git")):
        if os.path.isdir(dest):
            os.rmdir(dest)  # an empty submodule folder
        git("clone", "--no-checkout", "-q", url, dest).check_returncode()
    if git("rev-parse", "HEAD", cwd=dest).stdout.strip() != p["commit"] or git("status", "--short", "--untracked-files=no", cwd=dest).stdout:
        # Snapshots may lack a few blobs (images, tokenizers), which makes a plain checkout fail:
        # point HEAD at the commit, then check out every file that is there.
        blobs = [line.split(None, 3) for line in git("ls-tree", "-r", p["commit"], cwd=dest).stdout.splitlines()]
        check = subprocess.run(["git", "cat-file", "--batch-check"], cwd=dest, capture_output=True, text=True,
                               input="".join(sha + "\n" for _, kind, sha, _ in blobs if kind == "blob"))
        absent = {line.split()[0] for line in check.stdout.splitlines() if line.endswith(" missing")}
        missing = [path for _, _, sha, path in blobs if sha in absent]
        git("update-ref", "--no-deref", "HEAD", p["commit"], cwd=dest).check_returncode()
        git("checkout", "HEAD", "--", ".", *[f":!{m}" for m in missing], cwd=dest).check_returncode()
        if missing:
            print(f"{p['dir']}: not in the snapshot, left out: {', '.join(missing)}", file=sys.stderr)
    print(dest)
PY
  # Requirements of all packs in one resolve. Left out: CUDA-only wheels (cupy, onnxruntime-gpu -> onnxruntime),
  # torch itself, and Impact-Pack's numpy<2 (ComfyUI's numpy stays; the nodes import with it).
  "$COMFY_VENV/bin/python" -c "import numpy; print('numpy==' + numpy.__version__)" >> "$tmp/constraints.txt"
  echo "$TORCHVISION_PIN" >> "$tmp/constraints.txt"
  while read -r dir; do
    for f in "$dir/requirements.txt" "$dir/requirements-no-cupy.txt"; do
      if [ -f "$f" ]; then grep -vE '^\s*(#|-r|$)' "$f" >> "$tmp/packs-req.txt" || true; fi  # may list nothing
    done
  done < "$tmp/pack-dirs.txt"
  sed -E -i -e '/^(torch|torchvision|torchaudio|cupy[-a-z]*)\s*([<>=!].*)?$/d' -e 's/^onnxruntime-gpu.*/onnxruntime/' \
      -e 's/^numpy\s*<\s*2.*/numpy/' -e 's/^opencv-python(-headless)?\b.*/opencv-python-headless/' "$tmp/packs-req.txt"
  "${PIP[@]}" -c "$tmp/constraints.txt" -r "$tmp/packs-req.txt"
  # The corpus is scanned inside that ComfyUI too: this pack goes beside the others.
  [ -e "$COMFYUI_DIR/custom_nodes/ComfyFixerSmart" ] || ln -s "$REPO" "$COMFYUI_DIR/custom_nodes/ComfyFixerSmart"
fi

if [ -z "${SKIP_APT:-}" ] && [ ! -x /usr/bin/chromium ]; then
  step "chromium (Debian)"
  apt-get update -q && apt-get install -y -q chromium chromium-driver
fi

step "playwright-core (driver only: the browser is Debian's /usr/bin/chromium, never downloaded)"
# npm ci empties node_modules first: only when playwright-core is not there yet (tests may be using it).
[ -d "$REPO/tests/e2e/node_modules/playwright-core" ] \
  || (cd "$REPO/tests/e2e" && npm ci --no-audit --no-fund --silent 2>/dev/null || npm install --no-audit --no-fund --silent)

step "done"
echo "COMFYUI_DIR=$COMFYUI_DIR"
echo "COMFY_PYTHON=$COMFY_VENV/bin/python"

"""ComfyFixerSmart engine: find, resolve, download and verify what ComfyUI workflows are missing.

Nothing in this package imports ComfyUI; the adapters at the repo root hand it a host.
"""

__version__ = "0.1.0"

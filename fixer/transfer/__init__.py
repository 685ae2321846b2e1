"""The transfer engine: fast, resumable, verified, safe downloads into the model folders.

    mgr = TransferManager(config.download, secrets, bus, output_dir)
    t = await mgr.submit(request, dest_root)   # returns at once
    done = await mgr.wait()
    t = await download_one(request, dest_root, config.download, secrets)

Modules: policy (hosts, tokens), engine (one file), resume (.part + sidecar), verify (checks and
the batch report), scripts (curl scripts + counter), progress (status.json figures), manager.
"""

from .engine import RetryPolicy
from .manager import TransferManager, download_one, record_download, transfer_record
from .progress import snapshot

__all__ = ["RetryPolicy", "TransferManager", "download_one", "record_download", "snapshot", "transfer_record"]

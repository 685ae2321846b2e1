"""The transfer engine: fast, resumable, verified, safe downloads into the model folders.

    mgr = TransferManager(config.download, secrets, bus, output_dir)
    t = await mgr.submit(request, dest_root)   # returns at once
    done = await mgr.wait()
    t = await download_one(request, dest_root, config.download, secrets)

Modules: policy (allowed hosts, https, which token goes where), engine (one file: probe, ranged
pieces, hashing, retries, verification, rename), resume (.part + sidecar), verify (checks and the
batch report), scripts (curl scripts + counter), progress (status.json figures), manager (the
queue, records, reports), commands (the CLI's get / --download / --resume).
"""

from .engine import RetryPolicy
from .manager import TransferManager, download_one, record_download, transfer_record
from .progress import snapshot

__all__ = ["RetryPolicy", "TransferManager", "download_one", "record_download", "snapshot", "transfer_record"]

"""The transfer engine: fast, resumable, verified, safe downloads into the model folders.

    mgr = TransferManager(config.download, secrets, bus, output_dir)
    t = await mgr.submit(request, dest_root)   # returns at once
    done = await mgr.wait()
    t = await download_one(request, dest_root, config.download, secrets)

Modules, in the order a file meets them:
- queue: the download queue (TransferManager): concurrency, one download per target, reports;
- policy: allowed origins and addresses, https, which token goes where (pure);
- engine: one file from probe to final name (FileJob);
- protocol: what the server's answers mean, retry/relink/restart signals, the guarded session;
- pieces: ranges cut into pieces, work stealing, positional writes, the prefix hasher;
- resume: the .part and its sidecar; finish: the verification hand-off (verify: the checks);
- records: downloaded_models.json; scripts: curl scripts + counter; progress: status.json figures;
- settings: the engine's tunables; commands: the CLI's get / --download / --resume.
This face only re-exports; no module of the package imports it back.
"""

from ..http import RetryPolicy
from .progress import snapshot
from .queue import TransferManager, download_one
from .records import record_download, transfer_record

__all__ = ["RetryPolicy", "TransferManager", "download_one", "record_download", "snapshot", "transfer_record"]

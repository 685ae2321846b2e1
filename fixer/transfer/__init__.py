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
This face only re-exports, on first use (PEP 562): importing one pure member (policy, verify) does
not load the HTTP stack, and no module of the package imports the face back.
"""

from importlib import import_module

_EXPORTS = {"RetryPolicy": "..upstream.http", "TransferManager": ".queue", "download_one": ".queue",
            "record_downloads": ".records", "transfer_record": ".records", "snapshot": ".progress"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value

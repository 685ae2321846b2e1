"""The verification hand-off: the last byte is in and hashed; check the .part, then give it its final name.

A .part that fails a check never takes the final name (the engine then discards it: its bytes are wrong);
the sidecar goes with the rename, so nothing of the download is left beside the model.
"""

from __future__ import annotations

import os

from ..models import TransferRequest
from .resume import discard
from .verify import check_safetensors, check_sha256, check_size, looks_safetensors


def check(part: str, req: TransferRequest, size: int, digest: str, expected_sha256: str | None, label: str) -> None:
    """Size, sha256 (when one is known) and, for safetensors, the structure; IntegrityError on a mismatch."""
    check_size(part, size, label)
    check_sha256(digest, expected_sha256, label)
    if looks_safetensors(req.filename):
        check_safetensors(part, label)


def place(part: str, target: str) -> None:
    """Rename the verified .part onto the final name and drop its resume record."""
    os.replace(part, target)
    discard(part)  # the sidecar; the .part itself is already renamed

"""Progress figures for status.json and the CLI: bytes, speed and ETA per file and overall."""

from __future__ import annotations

from ..models import Transfer
from .shapes import DownloadsData, DownloadsOverall, FileProgress


def eta_seconds(done: int, total: int | None, speed: float) -> float | None:
    if total is None or speed <= 0:
        return None
    return max(0.0, (total - done) / speed)


def snapshot(transfers: list[Transfer]) -> DownloadsData:
    """Files and overall figures, safe to show (no URLs, no tokens)."""
    files = [FileProgress(name=t.request.model_name or t.request.filename, folder=t.request.folder, target=t.target,
                          state=t.state, bytes_done=t.bytes_done, total=t.total, speed=round(t.speed, 1),
                          eta=_round(eta_seconds(t.bytes_done, t.total, t.speed)), error=t.error, warning=t.warning)
             for t in transfers]
    active = [t for t in transfers if t.state in ("queued", "downloading", "verifying")]
    done = sum(t.bytes_done for t in transfers)
    known = all(t.total is not None for t in transfers)
    total = sum(t.total or 0 for t in transfers) if known else None
    speed = sum(t.speed for t in active)
    left = sum((t.total or 0) - t.bytes_done for t in active) if known else None
    overall = DownloadsOverall(files=len(transfers), active=len(active),
                               done=sum(t.state == "done" for t in transfers),
                               failed=sum(t.state == "failed" for t in transfers),
                               bytes_done=done, total=total, speed=round(speed, 1),
                               eta=_round(left / speed) if left is not None and speed > 0 else None,
                               percent=round(100 * done / total, 1) if total else None)
    return DownloadsData(files=files, overall=overall)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)

"""log/search_history.log: one line per upstream query and its outcome, appended as they happen."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("fixer.search")


class SearchHistory:
    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, source: str, query: str, outcome: str, model: str = "") -> None:
        """Never raises: a full disk must not stop a search."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source": source, "model": model,
                 "query": query, "outcome": outcome}
        log.debug("search %s", entry)
        if self.path is None:
            return
        try:
            # backslashreplace: a name an upstream sent with a lone surrogate must not lose the line.
            with self.path.open("a", encoding="utf-8", errors="backslashreplace") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        except OSError as e:
            log.warning("Cannot write the search history %s: %s", self.path, e)

"""Where a missing model can be had: one module per source, all with the same small interface.

A source is an object with a `name` and `async def find(ref, run) -> Found`. It never raises for a
model: upstream trouble becomes words in `Found.tried`, so one failure never stops the rest.
`SearchRun` is what the sources of one resolve run share: the HTTP client with its per-service
limits, the search history log, and per-run memos so that two models in the same repo cost one
listing. Memos die with the run: every run searches afresh (no cached failures).
"""

from .base import CONFIDENCE, Found, SearchRun, SeenFile, Source, is_generic

__all__ = ["CONFIDENCE", "Found", "SearchRun", "SeenFile", "Source", "is_generic"]

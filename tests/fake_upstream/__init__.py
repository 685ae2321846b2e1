"""A local fake of civitai.com and huggingface.co that behaves like the real services.

`server.FakeUpstream` runs one aiohttp app on 127.0.0.1 (a background thread, so both async
tests and CLI subprocesses can use it). The same port answers as `localhost`, which plays the
CDN / signed-storage host: a *different hostname*, as huggingface_hub and the token-stripping
rules require.

Route modules, each owning one concern:
- `api_routes.py`: search, model info, tree, paths-info, model-versions, by-hash (resolver side).
- `file_routes.py`: HF `/resolve`, Civitai `/api/download/models`, the CDN with Range (transfer side).
Fault injection: `server.Fault` rules, matched in a middleware, plus per-file faults in file_routes.
"""

from .server import FakeUpstream, Fault, payload_bytes

__all__ = ["FakeUpstream", "Fault", "payload_bytes"]

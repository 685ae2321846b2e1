"""The transfer engine's tunables, in one place. What users change lives in config.json (DownloadConfig);
these are the engineering numbers behind it, each with the reason for its value."""

from __future__ import annotations

# Writing and hashing
WRITE_CHUNK = 512 << 10  # bytes gathered per pwritev
HASH_BLOCK = 4 << 20  # bytes read back per hash step
SYNC_EVERY = 16 << 20  # flush written data as the hash passes it: the final flush of a 256 MiB file took 0.47 s
READ_BUFSIZE = 512 << 10  # aiohttp's per-connection buffer; bounds memory per connection
WRITE_THREADS = 4

# Pieces and connections
MIN_PIECE = 1 << 20  # as aria2c's -k1M: a 16 MiB file still gets all its connections
MAX_PIECE = 64 << 20
SPREAD_PIECE = 4 << 20  # files up to connections x this: one piece per connection (fewer requests than 4 each)
PIECES_PER_CONNECTION = 4  # enough pieces that the hashed prefix keeps up with the download
MIN_SPLIT_SIZE = 2 << 20  # below this one connection is as fast as several (CDNs cap each connection near 25 MB/s)
STEAL_MIN = 2 << 20  # an idle connection takes half of a piece with at least this much left (stragglers)
REQUEST_SHARE = 8  # a piece cut small near the file's end lasts at least this many times its request's wait
FAST_CONNECTION = 100e6  # bytes/s one connection reached; no CDN limits a connection this high

# Failures
LOW_SPEED_BYTES_PER_S = 10 * 1024  # slower than this over timeout_seconds counts as stalled
UNREACHABLE_MEMO_SECONDS = 60.0  # a host that could not be reached fails the run's other files at once for this long
MAX_REDIRECTS = 10
MAX_RESTARTS = 2  # the remote file changed under us: start over at most this often

# Reporting
PROGRESS_INTERVAL = 0.25  # ~4 progress events per second per file
SIDECAR_INTERVAL = 1.0  # seconds between updates of the .part's resume record
USER_AGENT = "ComfyFixerSmart/0.1"

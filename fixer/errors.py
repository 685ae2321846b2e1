"""One error tree; every message is written once, for a person, and says what to do next."""

from __future__ import annotations


class FixerError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(FixerError):
    pass


class WorkflowError(FixerError):
    """A workflow file could not be read. Per file: never aborts a run."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnsafePath(FixerError):
    def __init__(self, name: str, reason: str = "it would point outside the model folders"):
        self.name = name
        super().__init__(f"Refusing model name {name!r}: {reason}. Fix the name in the workflow.")


class ResolveError(FixerError):
    pass


class UpstreamError(ResolveError):
    """An upstream service answered with an error or could not be reached."""

    def __init__(self, source: str, message: str, status: int | None = None):
        self.source = source
        self.status = status
        super().__init__(f"{source}: {message}")


class DownloadError(FixerError):
    pass


class AuthRequired(DownloadError):
    def __init__(self, source: str, remedy: str):
        self.source = source
        self.remedy = remedy
        super().__init__(f"{source} refused the download: {remedy}")


class NotFoundUpstream(DownloadError):
    def __init__(self, source: str, what: str):
        self.source = source
        super().__init__(f"{what} was not found at {source}")


class IntegrityError(DownloadError):
    def __init__(self, what: str, expected: object, actual: object, name: str = ""):
        self.what = what
        self.expected = expected
        self.actual = actual
        prefix = f"{name}: " if name else ""
        super().__init__(f"{prefix}{what} mismatch: expected {expected}, got {actual}; the file was not kept")


class RateLimited(UpstreamError, DownloadError):
    """The service asks to wait (429/503): longer than we wait unattended, or again after every retry."""

    def __init__(self, source: str, why: str, wait: float | None, what: str, remedy: str):
        self.wait = wait
        asked = f"asks to wait {wait:.0f} s ({why})" if wait is not None else f"kept refusing after retries ({why})"
        super().__init__(source, f"{asked}; {remedy}", 429 if why == "rate limit" else 503)
        self.args = (f"{source} {asked} for {what}; {remedy}",)


class NotEnoughSpace(DownloadError):
    def __init__(self, needed: int, free: int, where: str):
        self.needed = needed
        self.free = free
        super().__init__(
            f"Not enough disk space in {where}: need {needed / 2**30:.2f} GiB, "
            f"{free / 2**30:.2f} GiB free. Free some space and retry."
        )


class HostNotAllowed(DownloadError):
    def __init__(self, url: str, reason: str):
        self.reason = reason
        super().__init__(f"Refusing to download {url}: {reason}")


class RunLocked(FixerError):
    def __init__(self, path: str, holder: str):
        super().__init__(
            f"Another ComfyFixerSmart run holds {path} ({holder}). Wait for it to finish, or remove the lock "
            "file if that process is gone."
        )


class UnsafeFolder(UnsafePath):
    """A write location that is not one of ComfyUI's model folders: nothing is ever written there."""

    def __init__(self, folder: str, reason: str):
        super().__init__(folder, reason)
        self.args = (f"Refusing to write into {folder!r}: {reason}.",)

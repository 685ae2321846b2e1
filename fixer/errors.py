"""One error tree; every message is written once, for a person, and says what to do next.

Every error also carries a stable `code` (one of ERROR_CODES) and typed fields (how long a service asked
to wait, which token would let the download through, where the license is accepted, whether the bytes
already fetched were kept, ...). `ErrorInfo` is that pair as data: it is what rows, the status document
and the page's events carry, and the page words an error from its code and fields, never by reading
the English message (web/lib/words.js; tests/test_error_codes.py checks every code has its words).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, get_args

ErrorCode = Literal[
    "error", "unexpected", "config_invalid", "request_invalid", "workflow_unreadable", "unsafe_name",
    "unsafe_folder", "folder_unknown", "search_failed", "upstream_failed", "unreachable", "server_error",
    "interrupted", "rate_limited", "service_busy", "login_required", "license_required", "token_rejected",
    "no_access", "early_access", "private_or_missing", "not_found_upstream", "archived", "http_error",
    "download_failed", "already_exists", "file_changed", "link_broken", "hf_offline", "pickle_refused",
    "host_not_allowed", "sha256_mismatch", "size_mismatch", "not_safetensors", "file_missing", "disk_full",
    "target_busy", "bytes_missing", "run_locked", "run_busy", "unsafe_file_type", "download_too_large",
    "pack_not_offered", "lockfile_invalid", "file_differs", "cache_busy", "model_not_found", "needs_choice",
    "run_interrupted", "not_queued", "client_header_missing", "cross_site", "host_untrusted", "body_invalid",
    "body_too_large", "body_timeout", "manager_missing", "sha256_differs",
]
TokenName = Literal["HF_TOKEN", "CIVITAI_API_KEY"]
ServiceKey = Literal["huggingface", "civitai"]

# What each code means, for a developer (the page has its own words for a person).
ERROR_CODES: dict[ErrorCode, str] = {
    "error": "a refusal of the engine without a more specific code",
    "unexpected": "a bug: an exception the engine did not raise on purpose",
    "config_invalid": "a setting, config file or command-line value is wrong",
    "request_invalid": "the page asked for something this run cannot do (nothing to retry, review, discard)",
    "workflow_unreadable": "a workflow file could not be read",
    "unsafe_name": "a model name would point outside the model folders",
    "unsafe_folder": "a write location is not one of ComfyUI's model folders",
    "folder_unknown": "ComfyUI has no folder for this file (its node pack is not known): choose one",
    "search_failed": "looking for a source failed",
    "upstream_failed": "a service gave an answer that cannot be used",
    "unreachable": "the server could not be reached (no network, a dead name, a blocked address)",
    "server_error": "the server kept answering with errors (HTTP 5xx) until we gave up",
    "interrupted": "the transfer kept breaking off or stalling until we gave up",
    "rate_limited": "the service asks to wait (HTTP 429); `retry_after` says how long, when it did",
    "service_busy": "the service is unavailable (HTTP 503); `retry_after` says how long, when it did",
    "login_required": "the file needs a login: `needs_token` names the token to set",
    "license_required": "a gated repo: accept its license at `license_url`, then set `needs_token`",
    "token_rejected": "the token set for this service was refused (invalid or expired)",
    "no_access": "the account of the token has no access to this file",
    "early_access": "a Civitai version in Early Access: buy access or wait",
    "private_or_missing": "the repo is private or does not exist",
    "not_found_upstream": "the source does not have this file (any more)",
    "archived": "Civitai archived this version: it can no longer be downloaded",
    "http_error": "another HTTP error answer; `status` holds it",
    "download_failed": "a download failed for a reason without a more specific code",
    "already_exists": "the final file is already there: it is never overwritten",
    "file_changed": "the file on the server kept changing while it downloaded",
    "link_broken": "the download link is broken (redirect loop, refused signed link)",
    "hf_offline": "HF_HUB_OFFLINE is set: nothing is sent to Hugging Face",
    "pickle_refused": "a pickle-format file while download.allow_pickle is false",
    "host_not_allowed": "the address is not one downloads may be fetched from",
    "sha256_mismatch": "the downloaded bytes are not the expected file; they were deleted",
    "size_mismatch": "the file's size differs from the announced one; the bytes were deleted",
    "not_safetensors": "the file is not a valid safetensors file; it was deleted",
    "file_missing": "the file to verify is not there",
    "disk_full": "not enough free disk space; `folder` says where, `part_kept` whether bytes were kept",
    "target_busy": "another ComfyFixerSmart process is downloading the same file",
    "bytes_missing": "some bytes of the file never arrived",
    "run_locked": "another run holds the state directory",
    "run_busy": "a fix is already running in this ComfyUI",
    "unsafe_file_type": "a file type the target model folder does not list (a script, a program): never written",
    "download_too_large": "the server sent more than the declared size, or than the ceiling of an undeclared one; "
                          "the partial file was removed",
    "pack_not_offered": "install_pack asked for a pack id the last scan did not offer as installable",
    "lockfile_invalid": "a lockfile (models.lock.json) is unreadable or an entry of it is refused",
    "file_differs": "a different file is already where the lockfile puts one: it is never overwritten",
    "cache_busy": "another process or machine held the shared cache's lock on this file for too long",
    "model_not_found": "no source has this model (searched every way there is)",
    "needs_choice": "candidates were found, none sure enough to download without asking: choose one",
    "run_interrupted": "the run was stopped before its end (Ctrl-C, SIGTERM, a killed process): --resume continues",
    # Refusals of the ComfyUI routes (fixer/comfy/web_guard.py, server_routes.py, the service's queue).
    "not_queued": "unqueue named a workflow whose fix is not waiting (it started, ended, or was never queued)",
    "client_header_missing": "a route was called without the X-ComfyFixer-Client header (an old cached panel, "
                             "a proxy that drops it, a script, or another site's page): 403",
    "cross_site": "the browser says the request comes from a page of another site (Sec-Fetch-Site, Origin): 403",
    "host_untrusted": "ComfyUI was reached under a host name that is not allowed (DNS rebinding guard): 403",
    "body_invalid": "the request body or one of its fields is not what the route takes (400, 415)",
    "body_too_large": "the request body is larger than the routes accept (413)",
    "body_timeout": "the request body did not arrive in time (408)",
    "manager_missing": "install_pack without a ComfyUI-Manager running in this ComfyUI (409)",
    "sha256_differs": "relink of a local file whose sha256 is not the one the workflow states for the model: "
                      "another file of the same name, not linked",
}


@dataclass(frozen=True)
class ErrorInfo:
    """An error as data: its code, the message for a person, and the typed facts behind it.

    Only the fields that apply are set; the rest stay None. `message` is for display (and logs) only:
    nothing decides anything by reading it."""

    code: ErrorCode
    message: str
    retry_after: float | None = None  # seconds the service asked to wait (rate_limited, service_busy)
    needs_token: TokenName | None = None  # the token that would let it through (login_required, ...)
    token_helps: TokenName | None = None  # a token would raise the service's limits (rate_limited)
    license_url: str | None = None  # where the license is accepted (license_required)
    part_kept: bool | None = None  # a failed download: whether the bytes so far were kept for resuming
    folder: str | None = None  # the model folder (folder_unknown) or the disk location (disk_full)
    service: str | None = None  # "huggingface", "civitai", or the host name of another server
    status: int | None = None  # the HTTP status behind it, when one was answered
    needed: int | None = None  # bytes needed (disk_full)
    free: int | None = None  # bytes free (disk_full)


class FixerError(Exception):
    """Base of every error the engine raises on purpose. `code` and the typed fields travel as ErrorInfo."""

    default_code: ClassVar[ErrorCode] = "error"

    def __init__(self, message: str, *, code: ErrorCode | None = None, retry_after: float | None = None,
                 needs_token: TokenName | None = None, token_helps: TokenName | None = None,
                 license_url: str | None = None, part_kept: bool | None = None, folder: str | None = None,
                 service: str | None = None, status: int | None = None, needed: int | None = None,
                 free: int | None = None):
        super().__init__(message)
        self.code: ErrorCode = code or type(self).default_code
        self.facts: dict[str, object] = {
            "retry_after": retry_after, "needs_token": needs_token, "token_helps": token_helps,
            "license_url": license_url, "part_kept": part_kept, "folder": folder, "service": service,
            "status": status, "needed": needed, "free": free}

    def info(self) -> ErrorInfo:
        return ErrorInfo(self.code, str(self), **self.facts)  # type: ignore[arg-type]


def error_info(e: BaseException, message: str | None = None, **facts: Any) -> ErrorInfo:
    """The ErrorInfo of any exception: a FixerError's own, anything else as `unexpected` (a bug)."""
    info = e.info() if isinstance(e, FixerError) else ErrorInfo("unexpected",
                                                                 f"unexpected error {type(e).__name__}: {e}")
    changes: dict[str, Any] = {k: v for k, v in facts.items() if v is not None}
    if message is not None:
        changes["message"] = message
    return replace(info, **changes) if changes else info


def all_codes() -> tuple[ErrorCode, ...]:
    return get_args(ErrorCode)


class ConfigError(FixerError):
    default_code: ClassVar[ErrorCode] = "config_invalid"


class WorkflowError(FixerError):
    """A workflow file could not be read. Per file: never aborts a run."""

    default_code: ClassVar[ErrorCode] = "workflow_unreadable"

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnsafePath(FixerError):
    default_code: ClassVar[ErrorCode] = "unsafe_name"

    def __init__(self, name: str, reason: str = "it would point outside the model folders"):
        self.name = name
        super().__init__(f"Refusing model name {name!r}: {reason}. Fix the name in the workflow.")


class ResolveError(FixerError):
    pass


class UpstreamError(ResolveError):
    """An upstream service answered with an error or could not be reached."""

    default_code: ClassVar[ErrorCode] = "upstream_failed"

    def __init__(self, source: str, message: str, status: int | None = None, *, code: ErrorCode | None = None,
                 service: str | None = None):
        self.source = source
        self.status = status
        super().__init__(f"{source}: {message}", code=code, status=status, service=service or source)


class DownloadError(FixerError):
    default_code: ClassVar[ErrorCode] = "download_failed"


class AuthRequired(DownloadError):
    """The service refused without (or with the wrong) credentials. The code says which case."""

    default_code: ClassVar[ErrorCode] = "login_required"

    def __init__(self, source: str, remedy: str, *, code: ErrorCode | None = None,
                 needs_token: TokenName | None = None, license_url: str | None = None, service: str | None = None,
                 status: int | None = None):
        self.source = source
        self.remedy = remedy
        super().__init__(f"{source} refused the download: {remedy}", code=code, needs_token=needs_token,
                         license_url=license_url, service=service, status=status)


class NotFoundUpstream(DownloadError):
    default_code: ClassVar[ErrorCode] = "not_found_upstream"

    def __init__(self, source: str, what: str, *, service: str | None = None, status: int | None = None):
        self.source = source
        super().__init__(f"{what} was not found at {source}", service=service, status=status)


INTEGRITY_CODES: dict[str, ErrorCode] = {"sha256": "sha256_mismatch", "size": "size_mismatch", "file": "file_missing"}


class IntegrityError(DownloadError):
    """The bytes are not the file asked for: they are deleted, never kept for resuming."""

    def __init__(self, what: str, expected: object, actual: object, name: str = ""):
        self.what = what
        self.expected = expected
        self.actual = actual
        prefix = f"{name}: " if name else ""
        code = INTEGRITY_CODES.get(what, "not_safetensors" if what.startswith("safetensors") else "size_mismatch")
        super().__init__(f"{prefix}{what} mismatch: expected {expected}, got {actual}; the file was not kept",
                         code=code, part_kept=False)


class RateLimited(UpstreamError, DownloadError):
    """The service asks to wait (429/503): longer than we wait unattended, or again after every retry."""

    def __init__(self, source: str, why: str, wait: float | None, what: str, remedy: str, *,
                 service: str | None = None, token_helps: TokenName | None = None):
        self.wait = wait
        asked = f"asks to wait {wait:.0f} s ({why})" if wait is not None else f"kept refusing after retries ({why})"
        status = 429 if why == "rate limit" else 503
        super().__init__(source, f"{asked}; {remedy}", status, code="rate_limited" if status == 429 else "service_busy",
                         service=service)
        self.facts.update(retry_after=wait, token_helps=token_helps)
        self.args = (f"{source} {asked} for {what}; {remedy}",)


class NotEnoughSpace(DownloadError):
    default_code: ClassVar[ErrorCode] = "disk_full"

    def __init__(self, needed: int, free: int, where: str):
        self.needed = needed
        self.free = free
        super().__init__(
            f"Not enough disk space in {where}: need {needed / 2**30:.2f} GiB, "
            f"{free / 2**30:.2f} GiB free. Free some space and retry.", folder=where, needed=needed, free=free)


class DownloadTooLarge(DownloadError):
    """The server sent more than the file may have: its declared size, or the ceiling of an undeclared one.
    The partial file can never complete, so it is removed."""

    default_code = "download_too_large"

    def __init__(self, name: str, sent: int, ceiling: int, why: str):
        self.sent = sent
        self.ceiling = ceiling
        super().__init__(f"{name}: the server sent more than {ceiling:,} bytes ({why}); the download was stopped "
                         "and its partial file removed. The link does not serve one model file: pick another source.")


class HostNotAllowed(DownloadError):
    default_code: ClassVar[ErrorCode] = "host_not_allowed"

    def __init__(self, url: str, reason: str):
        self.reason = reason
        super().__init__(f"Refusing to download {url}: {reason}")


class RunLocked(FixerError):
    default_code: ClassVar[ErrorCode] = "run_locked"

    def __init__(self, path: str, holder: str):
        self.holder = holder
        super().__init__(
            f"Another ComfyFixerSmart run holds {path} ({holder}). Wait for it to finish, or remove the lock "
            "file if that process is gone."
        )


class UnsafeFolder(UnsafePath):
    """A write location that is not one of ComfyUI's model folders: nothing is ever written there."""

    default_code: ClassVar[ErrorCode] = "unsafe_folder"

    def __init__(self, folder: str, reason: str):
        super().__init__(folder, reason)
        self.facts["folder"] = folder
        self.args = (f"Refusing to write into {folder!r}: {reason}.",)


class UnsafeFileType(UnsafePath):
    """A file whose type the target model folder does not list (`evil.py` into loras): never written."""

    default_code = "unsafe_file_type"

    def __init__(self, name: str, folder: str, reason: str):
        super().__init__(name, reason)
        self.facts["folder"] = folder
        self.args = ((f"Refusing to save {name!r} into {folder!r}: {reason}. Only model files are saved into "
                      "model folders; pick a link to the model file itself."),)


class LockfileInvalid(FixerError):
    """A lockfile that cannot be used as a whole (unreadable, not a lockfile) or one entry of it refused."""

    default_code: ClassVar[ErrorCode] = "lockfile_invalid"

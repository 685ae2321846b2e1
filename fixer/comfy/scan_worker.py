"""Scan big posted workflows in a worker process, so ComfyUI's own process never holds them.

A 13 MiB workflow decodes into ~230,000 containers. Allocating them makes CPython run full garbage
collections, and each one walks every object of the process (in ComfyUI: torch, the models, every
pack) with all threads stopped: seconds of stalled event loop. Pausing the collector avoided that,
but for the whole host. Here the body goes to a child Python as bytes and the answer comes back as
bytes; ComfyUI's process builds neither.

The child is plain Python (`-c` with this package's folder on sys.path: no `multiprocessing`, whose
spawn would re-run ComfyUI's main.py, and no fork of a process with CUDA loaded). It runs the
application's panel scan (the one the service runs in-process, fixer/app/application.py) over a
`HostSnapshot`: the model folders, their extensions and the node types;
the definition of a node type is asked of the parent when the scan first needs it (the live node
classes exist only in ComfyUI's process).

Protocol, length-prefixed frames on the child's stdin/stdout:
parent: {"state_dir", "comfyui_root", "comfyui_version", "host"} then the raw body;
child: any number of {"ask": node_type}, each answered {"def": definition or null};
child: {"status": 200} then the answer's JSON bytes, or {"status", "error"}.
The child's log lines go to its stderr, which the parent re-logs under the same logger names.
A scan has a deadline (SCAN_DEADLINE_SECONDS): past it the child is killed and the request answered 503,
so no body waits behind one that never ends; the routes keep the line of bodies short (wait_line.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

from .web_guard import RequestRefused

if TYPE_CHECKING:
    from ..app.service import FixerService

log = logging.getLogger("fixer.comfy.scan_worker")

_LENGTH = struct.Struct(">Q")
# Wall-clock seconds one scan may take in the worker. Reading is linear (a 16 MiB body takes well under
# 2 s) and each document has a CPU budget (fixer/read/budget.py); this catches what both miss.
SCAN_DEADLINE_SECONDS = 30.0
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding this `fixer` package


def write_frame(out: IO[bytes], payload: bytes) -> None:
    out.write(_LENGTH.pack(len(payload)))
    out.write(payload)
    out.flush()


def read_frame(src: IO[bytes]) -> bytes:
    head = src.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the other side closed the pipe")
    (size,) = _LENGTH.unpack(head)
    data = src.read(size)
    if len(data) < size:
        raise EOFError("the other side closed the pipe mid-message")
    return data


def _json(obj: Any) -> bytes:
    # Node definitions hold tuples, and now and then a value JSON has no form for (a class, a set).
    return json.dumps(obj, default=repr, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------- what the child knows of the host


@dataclass
class HostSnapshot:
    """The Host protocol's answers, taken in ComfyUI's process; node definitions are asked for one
    type at a time (`ask`), as the scan needs them, like the live host computes them."""

    paths: dict[str, list[str]]
    exts: dict[str, list[str]]
    types: list[str] | None
    node_source: str = "host"
    models: str | None = None

    @classmethod
    def of(cls, host: Any) -> "HostSnapshot":
        paths = host.folders()
        known = host.node_types()
        return cls(paths=paths, exts={k: sorted(host.extensions(k)) for k in paths},
                   types=sorted(known) if known is not None else None,
                   node_source=getattr(host, "node_source", "host"), models=host.models_dir())

    def folders(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.paths.items()}

    def models_dir(self) -> str | None:
        return self.models

    def extensions(self, folder: str) -> frozenset[str]:
        from ..constants import map_legacy

        return frozenset(self.exts.get(map_legacy(folder), ()))

    def node_types(self) -> set[str] | None:
        return set(self.types) if self.types is not None else None

    def __post_init__(self) -> None:
        self.ask: Callable[[str], Any] = _unknown  # in the child: a question to the parent (`answer_with`)

    def answer_with(self, ask: Callable[[str], Any]) -> None:
        self.ask = ask

    def node_defs(self) -> Mapping[str, Any] | None:
        return _AskedDefs(self.types, self.ask) if self.types is not None else None


def _unknown(node_type: str) -> Any:
    raise KeyError(node_type)


class _AskedDefs(Mapping[str, Any]):
    """Like the live definitions: every node type is listed; a definition is asked for on first use."""

    def __init__(self, types: list[str], ask: Callable[[str], Any]):
        self._types, self._known, self._ask = types, set(types), ask
        self._defs: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._known:
            raise KeyError(name)
        if name not in self._defs:
            self._defs[name] = self._ask(name)
        if self._defs[name] is None:  # its INPUT_TYPES failed in ComfyUI's process
            raise KeyError(name)
        return self._defs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)


# ---------------------------------------------------------------- the child


def _refusal(e: Exception) -> dict[str, Any]:
    from ..errors import FixerError
    from .web_guard import status_for

    if isinstance(e, RequestRefused):
        return {"status": e.status, "error": e.message, "code": e.code}
    if isinstance(e, FixerError):
        return {"status": status_for(e), "error": str(e), "code": e.code}
    log.exception("scan worker: the scan failed")
    return {"status": 500,
            "error": f"Internal error in ComfyFixerSmart ({type(e).__name__}: {e}); see the ComfyUI log."}


def _serve_one(src: IO[bytes], out: IO[bytes]) -> None:
    from ..app.application import Application
    from ..config import load_config
    from ..models import to_jsonable
    from .web_guard import decode_body, scan_fields

    job = json.loads(read_frame(src))
    raw = read_frame(src)
    try:
        workflow, name = scan_fields(decode_body(raw, share_gil=False))
        del raw
        host = HostSnapshot(**job["host"])

        def ask(node_type: str) -> Any:  # the scan's thread is the only one talking meanwhile
            write_frame(out, _json({"ask": node_type}))
            return json.loads(read_frame(src))["def"]

        host.answer_with(ask)
        state_dir = Path(job["state_dir"])
        app = Application(state_dir, load_config(state_dir / "config.json"), host,
                          comfyui_root=Path(job["comfyui_root"]) if job.get("comfyui_root") else None,
                          comfyui_version=job.get("comfyui_version"))
        answer = _json(to_jsonable(app.panel_scan(workflow, name)))
    except EOFError:
        raise
    except Exception as e:
        write_frame(out, _json(_refusal(e)))
        return
    write_frame(out, _json({"status": 200}))
    write_frame(out, answer)


def _log_to_stderr_only() -> None:
    """The engine's log lines go to stderr, which the parent re-logs (_relay_log)."""
    engine = logging.getLogger("fixer")
    for h in list(engine.handlers):
        engine.removeHandler(h)
        h.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelno)d\t%(name)s\t%(message)s"))  # read by _relay_log
    engine.addHandler(handler)
    engine.setLevel(logging.INFO)
    engine.propagate = False


def child_main() -> None:
    """Serve scans until the parent closes stdin (it exits, or closes the worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in ComfyUI's terminal: ComfyUI stops, we see EOF
    src, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the frames
    _log_to_stderr_only()
    while True:
        try:
            _serve_one(src, out)
        except EOFError:
            return


# ---------------------------------------------------------------- the parent


def child_command() -> list[str]:
    """The child's command line: the pack's engine, imported as `fixer` (its one name in every process)
    from the folder holding it."""
    code = (f"import sys; sys.path.insert(0, {str(PACKAGE_PARENT)!r}); "
            "from fixer.comfy.scan_worker import child_main; child_main()")
    return [sys.executable, "-c", code]


class ScanWorker:
    """One child process, started on first use, serving one scan at a time; restarted if it dies."""

    def __init__(self, deadline: float = SCAN_DEADLINE_SECONDS) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # uncontended: the routes send big bodies one at a time (WaitLine)
        self.deadline = deadline

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=str(PACKAGE_PARENT))
        threading.Thread(target=_relay_log, args=(proc.stderr,), name="comfyfixer-scan-worker-log",
                         daemon=True).start()
        log.info("scan worker started (pid %d)", proc.pid)
        return proc

    def scan_blocking(self, raw: bytes, service: FixerService) -> bytes:
        """The service's scan answer for a raw /scan body, as JSON bytes, computed in the child.

        A scan that runs past `deadline` seconds (whatever the cause: a host too busy, a case the engine's
        own budget misses) kills the child and is answered 503: the next body never waits behind it."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            overrun = threading.Event()

            def stop() -> None:
                overrun.set()
                proc.kill()

            timer = threading.Timer(self.deadline, stop)
            timer.daemon = True
            timer.start()
            try:
                job = {"state_dir": str(service.state_dir), "comfyui_version": service.comfyui_version,
                       "comfyui_root": str(service.comfyui_root) if service.comfyui_root else None,
                       "host": asdict(HostSnapshot.of(service.host))}
                write_frame(proc.stdin, _json(job))
                write_frame(proc.stdin, raw)
                live = None  # the live definitions, one per scan as in this process, made on first ask
                while "ask" in (msg := json.loads(read_frame(proc.stdout))):
                    if live is None:
                        live = service.host.node_defs()
                    write_frame(proc.stdin, _json({"def": _definition(live, msg["ask"])}))
                if msg.get("status") != 200:
                    raise RequestRefused(msg["status"], msg["error"], code=msg.get("code"))  # the child's code
                return read_frame(proc.stdout)
            except RequestRefused:  # the child answered and waits for the next body
                raise
            except (EOFError, OSError, ValueError) as e:
                code = self._stop()
                if overrun.is_set():
                    log.warning("scan worker: a scan ran past %g s; the worker was stopped", self.deadline)
                    raise RequestRefused(503, f"The scan took longer than {self.deadline:g} s and was stopped "
                                              "(a workflow too large or a machine too busy); try again, or scan "
                                              "it with comfy-fixer --scan.", code="service_busy") from None
                raise RequestRefused(500, f"The scan worker process stopped (exit code {code}: {e}); the next scan "
                                         "starts a new one. See the ComfyUI log.") from None
            except BaseException:  # failed mid-conversation: the child is out of step with us
                self._stop()
                raise
            finally:
                timer.cancel()

    def _stop(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        proc.kill()
        return proc.wait()

    async def scan(self, raw: bytes, service: FixerService) -> bytes:
        answer = await asyncio.to_thread(self.scan_blocking, raw, service)
        service.index_in_background()  # in ComfyUI's process, as after a scan there
        return answer

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()  # the child exits at end of input
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                self._proc = None


def _definition(live: Mapping[str, Any] | None, node_type: str) -> Any:
    if live is None:  # the host lists no definitions: the node type is unknown
        return None
    try:
        return live[node_type]
    except KeyError:  # not installed, or its INPUT_TYPES failed
        return None


def _relay_log(stream: IO[bytes]) -> None:
    """The child's log lines, re-logged under their own logger names: ACTION lines stay out of
    ComfyUI's console as the in-process ones do. Anything else it prints (a traceback) is a warning."""
    for line in stream:
        text = line.decode("utf-8", "backslashreplace").rstrip()
        level, _, rest = text.partition("\t")
        name, _, message = rest.partition("\t")
        if level.isdigit() and name.startswith("fixer") and message:
            logging.getLogger(name).log(int(level), "%s", message)
        elif text:
            log.warning("scan worker: %s", text)

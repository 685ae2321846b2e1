"""A JSON Schema (draft 2020-12) of every document the product writes or serves, derived from the
dataclasses of fixer/shapes.py (and fixer/identity/shapes.py, fixer/transfer/shapes.py), so the schema
cannot drift from the code that writes the JSON.

`python -m fixer.schema` prints it; the committed copy is docs/schema.json (tests/test_schema.py
fails when it is stale, when a file on disk does not validate, or when the page reads a field no
shape has).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from . import shapes
from .errors import ErrorInfo
from .identity import shapes as identity_shapes
from .transfer import shapes as transfer_shapes

SCHEMA_ID = "https://github.com/comfyfixersmart/ComfyFixerSmart/docs/schema.json"
# The documents, by the name they go by: files under the state directory, the page's answers and events.
DOCUMENTS: dict[str, Any] = {
    "status.json": shapes.StatusDoc,
    "comfyfixer.status": shapes.PanelStatus,
    "output/missing_models.json": list[shapes.ModelEntry],
    "output/resolutions.json": list[shapes.ResolutionEntry],
    "output/missing_nodes.json": list[shapes.MissingNodeEntry] | shapes.NodesNotChecked,
    "output/downloaded_models.json": transfer_shapes.DownloadRecords,
    "output/verification_report.json": transfer_shapes.VerificationDoc,
    "downloads": transfer_shapes.DownloadsData,
    "scan": shapes.ScanResult,
    "run": shapes.RunData,
    "plan": shapes.PlanDoc,
    "error": ErrorInfo,
    "comfyfixer.done": shapes.DoneEvent,
    "models.lock.json": identity_shapes.LockFile,
    "cache/hash_index.json": identity_shapes.HashIndexFile,
    "<cache-dir>/locks/<sha256>.lock": identity_shapes.CacheLockOwner,
    "sync": identity_shapes.SyncData,
    "duplicates": identity_shapes.DuplicatesReport,
    "identified": list[identity_shapes.IdentifiedFile],
}
def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    return get_type_hints(cls, globalns=vars(module))


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def of(self, tp: Any) -> dict[str, Any]:
        if tp is Any:
            return {}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._dataclass(tp)
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.of(a) for a in args]}
        if origin in (list, tuple, set, frozenset):
            return {"type": "array", "items": self.of(args[0]) if args else {}}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1]) if args else {}}
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _dataclass(self, cls: type) -> dict[str, Any]:
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # a placeholder first: shapes may refer to themselves
            hints = _hints(cls)
            fields = dataclasses.fields(cls)
            doc = " ".join((cls.__doc__ or "").split())
            self.defs[name] = {
                **({"description": doc} if doc and not doc.startswith(f"{name}(") else {}),
                "type": "object",
                # The one serializer (models.to_jsonable) writes every field, None as null.
                "properties": {f.name: self.of(hints[f.name]) for f in fields},
                "required": [f.name for f in fields],
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{name}"}


def json_schema() -> dict[str, Any]:
    """One schema: `$defs` holds every shape, `properties` maps each document's name to its shape."""
    b = _Builder()
    documents = {name: b.of(tp) for name, tp in DOCUMENTS.items()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "ComfyFixerSmart documents", "type": "object", "properties": documents,
            "$defs": dict(sorted(b.defs.items()))}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=1, sort_keys=False) + "\n"


def main() -> None:
    sys.stdout.write(schema_text())


if __name__ == "__main__":
    main()

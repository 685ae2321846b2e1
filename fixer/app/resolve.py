"""Resolve missing models: every model searched concurrently, each handed out the moment it is final.

Per model the sources run in order of trust. The offline ones go first, one after the other: local disk,
the workflow's own hints, the offline catalogs; when one of them is sure enough, the rest are not asked
(a workflow that links every model never has the catalogs read; catalog files outside ComfyUI's own orgs
are checked on the Hub, as their gate is). Otherwise Civitai and
Hugging Face are asked together, then the repos the folder implies are listed (the long tail), then the
fuzzy matcher looks at every file name they saw, then (only if enabled) the LLM plug-in.
Checkpoints and diffusion models (anchors) resolve first: each chain's dependants judge their candidates
by the family their anchor's resolution revealed (sources.family). The best candidate is chosen when its
confidence reaches search.fuzzy_threshold; below it nothing is chosen and the candidates are listed.
A remote pick with a known sha256 and size is checked against the local disk first: the same bytes
under another name are linked instead of downloaded again.
A model whose workflow states a sha256 is only ever taken with those bytes: a candidate of any source whose
sha256 is known to differ (a local file's is computed when it has none) is refused, said in `tried` and the
ACTION log; the download itself is verified against the workflow's sha256 (fixer.app.run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from ..actionlog import action
from ..config import SearchConfig
from ..constants import hf_offline, is_pickle
from ..errors import ErrorInfo, TokenName
from ..events import ErrorRaised
from ..identity.hash_index import HashIndex, index_path
from ..models import Candidate, ModelRef, Resolution
from ..models import Source as SourceName
from ..shapes import CandidateEntry, ResolutionEntry, ResolutionState
from ..sources import CONFIDENCE, Found, SearchRun, Source
from ..sources.catalogs import CatalogFiles, CatalogSource, PublisherSource
from ..sources.civitai import CivitaiSource
from ..sources.embedded import EmbeddedSource
from ..sources.family import ANCHOR_FOLDERS, FIT_RANK, revealed_family, shared_words, workflow_families
from ..sources.fuzzy import FuzzySource
from ..sources.history import SearchHistory
from ..sources.huggingface import COMFY_ORGS, HuggingFaceSource, trusted
from ..sources.llm import LLMSource
from ..sources.local import LocalSource
from ..transfer.policy import token_name_for
from ..upstream.civitai import KEY_NAME as CIVITAI_KEY
from ..upstream.civitai import red_url
from ..upstream.http import HttpClient
from ..upstream.hub import OFFLINE_NOTE as HF_OFFLINE_NOTE

log = logging.getLogger("fixer.app.resolve")

# Order of trust, used to break ties between candidates of equal confidence.
SOURCE_RANK = {"local": 7, "embedded": 6, "catalog": 5, "civitai": 4, "huggingface": 3, "llm": 2, "fuzzy": 1}
MAX_MODELS_IN_FLIGHT = 32


@dataclass
class ResolveContext:
    config: SearchConfig
    secrets: dict[str, str]
    inventory: Any = None  # fixer.read.inventory.Inventory
    state_dir: Path | None = None  # search history goes to state_dir/log/search_history.log
    comfyui_root: Path | None = None
    catalogs: bool = True
    hf_endpoint: str | None = None  # default: fixer.constants.hf_endpoint() (HF_ENDPOINT)
    civitai_base_url: str | None = None  # default: CIVITAI_BASE_URL
    civitai_red_url: str | None = None  # default: CIVITAI_RED_BASE_URL, else civitai.red for civitai.com
    extra_sources: list[Source] = field(default_factory=list)  # tried after the built-in ones
    # workflow -> model family (SD 1.5, SDXL, Flux ...): pass sources.family.workflow_families(<every ModelRef of
    # the scan, present ones too>, <node types per workflow>); None infers it from the refs being resolved.
    families: dict[str, str] | None = None


def rank_key(c: Candidate) -> tuple[Any, ...]:
    """Highest confidence, then the more trusted source, then made for the chain's family, then safetensors
    over pickle formats, then an official repo, then the most downloaded."""
    name = (c.ids.get("path") or c.url or c.local_path or c.filename or "").split("?")[0].lower()
    pickle = is_pickle(name) or c.ids.get("format") == "PickleTensor"
    repo = c.ids.get("repo_id") or ""
    official = 2 if repo.split("/")[0] in COMFY_ORGS else 1 if repo and trusted(repo) else 0
    fits = FIT_RANK.get(str(c.ids.get("family_fit") or "unknown"), 2)
    return (round(c.confidence, 4), SOURCE_RANK.get(c.source, 0), fits, not pickle, official,
            int(c.ids.get("downloads") or 0))


def choose(ref: ModelRef, candidates: list[Candidate], threshold: float) -> tuple[Candidate | None, list[Candidate]]:
    ordered = sorted(candidates, key=rank_key, reverse=True)
    best = ordered[0] if ordered else None
    if best is not None and best.confidence >= threshold and best.folder:
        return best, ordered[1:]
    return None, ordered


class Resolver:
    def __init__(self, ctx: ResolveContext):
        self.ctx = ctx
        cfg = ctx.config
        self.local = LocalSource(HashIndex(index_path(ctx.state_dir) if ctx.state_dir else None))
        # The workflow's own hints before the catalogs: a model whose workflow links it (sure once the link is
        # checked) never waits for ~650 templates to be read, nor makes the run read them.
        self.hints: list[Source] = [EmbeddedSource()]
        files = CatalogFiles(ctx.comfyui_root)
        self.catalogs: list[Source] = [CatalogSource(files)] if ctx.catalogs and cfg.use_catalogs else []
        self.online: list[Source] = []
        if cfg.civitai:
            self.online.append(CivitaiSource())
        if cfg.huggingface:
            self.online.append(HuggingFaceSource())
        # The long tail, after the searches found nothing sure: the trees of the repos the folder implies.
        self.long_tail: list[Source] = [PublisherSource(files)] \
            if ctx.catalogs and cfg.use_catalogs and cfg.huggingface else []
        self.fuzzy = FuzzySource()
        self.last: list[Source] = ([LLMSource()] if cfg.llm.enabled else []) + list(ctx.extra_sources)

    async def resolve(self, refs: Iterable[ModelRef]) -> AsyncIterator[Resolution]:
        """Yield one Resolution per ref as soon as it is final (not in input order); never raises per model."""
        refs = list(refs)
        if not refs:
            return
        cfg = self.ctx.config
        history = SearchHistory(self.ctx.state_dir / "log" / "search_history.log" if self.ctx.state_dir else None)
        async with HttpClient(per_service=cfg.per_host_concurrency, timeout=cfg.timeout_seconds,
                              retries=cfg.retries) as http:
            run = SearchRun(config=cfg, secrets=self.ctx.secrets, http=http, history=history,
                            inventory=self.ctx.inventory, comfyui_root=self.ctx.comfyui_root,
                            state_dir=self.ctx.state_dir)
            if self.ctx.hf_endpoint:
                run.hf_endpoint = self.ctx.hf_endpoint.rstrip("/")
            if self.ctx.civitai_base_url:
                run.civitai_base = self.ctx.civitai_base_url.rstrip("/")
                run.civitai_red = red_url(run.civitai_base)
            if self.ctx.civitai_red_url:
                run.civitai_red = self.ctx.civitai_red_url.rstrip("/")
            run.hashes = {x.hash.lower() for r in refs if not r.unsafe_reason for x in r.hints
                          if x.hash and len(x.hash) == 64}
            run.families = self.ctx.families if self.ctx.families is not None else workflow_families(refs)
            # Anchors first, on a gate of their own: their dependants wait for their answer (the family of
            # the chain) and must never hold the places the anchors need.
            anchors = [r for r in refs if r.folder in ANCHOR_FOLDERS]
            loop = asyncio.get_running_loop()
            for r in anchors:
                run.anchor_families.setdefault(r.key, loop.create_future())
            anchor_gate, gate = asyncio.Semaphore(MAX_MODELS_IN_FLIGHT), asyncio.Semaphore(MAX_MODELS_IN_FLIGHT)

            async def one(ref: ModelRef) -> Resolution:
                fut = run.anchor_families.get(ref.key) if ref.folder in ANCHOR_FOLDERS else None
                res: Resolution | None = None
                try:
                    async with anchor_gate if fut is not None else gate:
                        res = await self.resolve_one(ref, run)
                    return res
                finally:
                    if fut is not None and not fut.done():
                        fut.set_result(revealed_family(ref, res.chosen if res else None))

            dependants = [r for r in refs if r.folder not in ANCHOR_FOLDERS]
            tasks = [asyncio.ensure_future(one(r)) for r in anchors + dependants]
            try:
                for fut in asyncio.as_completed(tasks):
                    yield await fut
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await run.close()

    async def _ask(self, sources: Sequence[Source], ref: ModelRef, run: SearchRun) -> Found:
        """Ask sources concurrently; a source that raises costs only its own answer."""
        results = await asyncio.gather(*(s.find(ref, run) for s in sources), return_exceptions=True)
        out = Found()
        for s, r in zip(sources, results):
            if isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                log.warning("source %s failed for %s: %r", s.name, ref.name, r)
                out.tried.append(f"{s.name}: failed ({r.__class__.__name__}: {r})")
            else:
                out.extend(r)
        for c in [c for c in out.candidates if c.ids.get("refused")]:  # e.g. a file that failed a malware scan
            out.candidates.remove(c)
            out.tried.append(str(c.ids["refused"]))
            action("candidate_refused", model=ref.name, url=c.url, reason=c.ids["refused"])
        await self._refuse_other_bytes(ref, out)
        for c in out.candidates:
            self._mark_key(c, run)
        return out

    async def _refuse_other_bytes(self, ref: ModelRef, out: Found) -> None:
        """The workflow states a sha256: candidates known to hold other bytes go, whatever their source (the
        Hub or Civitai listing another sha256 for the linked file, a search hit of the same name, a local
        file under a near name -- hashed now when the index does not know it)."""
        want = ref.stated_sha256
        if want is None:
            return
        for c in list(out.candidates):
            sha = (c.sha256 or "").lower() or None
            if sha is None and c.local_path and not c.url:  # a file on this disk (also a near name's, via fuzzy)
                sha = await self.local.sha256_of(c.local_path)
                c.sha256 = sha
            if sha is None:
                continue  # bytes not known yet: the download is verified against the workflow's sha256
            if sha == want:  # the very bytes the workflow states: no doubt left about which file it is
                if c.confidence < CONFIDENCE["hash_match"]:
                    c.confidence = CONFIDENCE["hash_match"]
                    c.reason += "; its sha256 is the one the workflow states"
                continue
            out.candidates.remove(c)
            out.other_bytes += 1
            where = c.url or c.local_path or c.filename
            out.tried.append(f"{c.source}: {where} refused: its sha256 is {sha[:12]}..., the workflow states "
                             f"{want[:12]}... (other bytes)")
            action("candidate_refused", model=ref.name, url=c.url, local_path=c.local_path, source=c.source,
                   reason="sha256_differs", sha256=sha, workflow_sha256=want)

    @staticmethod
    def _mark_key(c: Candidate, run: SearchRun) -> None:
        """A Civitai download needs an API key (2026): without one configured, known now, not from a 401."""
        if c.url and not c.local_path and token_name_for(c.url, "civitai" if c.source == "civitai" else "") == \
                CIVITAI_KEY and not run.secrets.get(CIVITAI_KEY) and c.needs_token != CIVITAI_KEY:
            c.needs_token = CIVITAI_KEY
            c.reason += "; Civitai asks for an API key to download (set CIVITAI_API_KEY)"

    async def resolve_one(self, ref: ModelRef, run: SearchRun) -> Resolution:
        threshold = self.ctx.config.fuzzy_threshold
        found = Found()
        if ref.unsafe_reason:  # never searched for, never written anywhere
            found.tried.append(f"refused: the name is unsafe ({ref.unsafe_reason}); fix it in the workflow")
            return Resolution(name=ref.name, folder=ref.folder, chosen=None, tried=found.tried,
                              why=f"Refused: the name is unsafe ({ref.unsafe_reason}); fix it in the workflow")
        try:
            stages = ([self.local], self.hints, self.catalogs, self.online, self.long_tail, [self.fuzzy], self.last)
            for stage in stages:
                if not stage:
                    continue
                for s in stage:
                    if s.name in ("local", "catalog"):
                        run.searched(ref, "this computer's model folders" if s.name == "local" else "model catalogs")
                found.extend(await self._ask(stage, ref, run))
                chosen, _ = choose(ref, found.candidates, threshold)
                if chosen is not None:
                    break
            chosen, others = choose(ref, found.candidates, threshold)
            sha = ref.stated_sha256 or (chosen.sha256 if chosen is not None else None)
            if chosen is not None and chosen.source != "local" and sha and chosen.size:
                local = await self.local.by_content(ref, sha, chosen.size, run)
                if local is not None:
                    others.insert(0, chosen)
                    chosen = local
        except asyncio.CancelledError:
            raise
        except Exception as e:  # one model's trouble never stops the others
            log.exception("resolving %s failed", ref.name)
            found.tried.append(f"resolver error: {e.__class__.__name__}: {e}")
            chosen, others = None, sorted(found.candidates, key=rank_key, reverse=True)
        res = Resolution(name=ref.name, folder=chosen.folder if chosen else ref.folder, chosen=chosen,
                         candidates=others, tried=found.tried)
        searched = {"civitai": self.ctx.config.civitai, "huggingface": self.ctx.config.huggingface and not hf_offline()}
        res.why = explain(res, [s for s, on in searched.items() if on], len(run.ways(ref)), found.unreached,
                          found.other_bytes)
        if chosen:
            action("model_resolved", model=ref.name, folder=chosen.folder, source=chosen.source,
                   confidence=chosen.confidence, url=chosen.url, local_path=chosen.local_path, reason=chosen.reason)
        else:
            action("model_not_resolved", model=ref.name, folder=ref.folder, candidates=len(others),
                   best=(others[0].url or others[0].local_path) if others else None, tried=found.tried)
        return res


FOUND_WORDS = {"local": "on this computer", "embedded": "through the workflow's own link",
               "catalog": "in ComfyUI's model catalogs", "civitai": "on Civitai", "huggingface": "on Hugging Face",
               "fuzzy": "under a near name", "llm": "by the LLM helper, confirmed by the service",
               "user": "through your link"}
SERVICE_LABELS = {"civitai": "Civitai", "huggingface": "Hugging Face"}


def explain(res: Resolution, services: list[str], ways: int, unreached: set[str] | frozenset[str] = frozenset(),
            other_bytes: int = 0) -> str:
    """One sentence for a person: where a model was found, or why it was not (the details are `tried`).
    `services` were asked ("civitai", "huggingface"); `unreached` could not be searched right now;
    `other_bytes` files were found under the name but refused for a sha256 other than the workflow's."""
    c = res.chosen
    if c is not None:
        return f"Found {FOUND_WORDS.get(c.source, 'by ' + c.source)}."
    if res.candidates:
        early = res.candidates[0].ids.get("early_access")
        if early:
            return f"In early access on Civitai until {early}: choose it once you have access."
        best = res.candidates[0]
        if best.made_for:
            return f"Only a file made for {best.made_for} was found: choose it if you want it."
        if best.shared_by:
            several = shared_words(best.shared_by)
            return several[0].upper() + several[1:] + "."
        n = len(res.candidates)
        return f"{n} possible source{'s' if n > 1 else ''}, none sure enough to download without asking: choose one."
    where = " or ".join(SERVICE_LABELS[s] for s in services) or "this computer and the workflow's links"
    down = [SERVICE_LABELS[s] for s in services if s in unreached]
    # HF_HUB_OFFLINE: the Hub was not asked, which a person must read here, not in the details.
    offline = f" {HF_OFFLINE_NOTE}." if HF_OFFLINE_NOTE in res.tried else ""
    if down:
        return f"Not found: {' and '.join(down)} could not be searched right now (try again later).{offline}"
    if other_bytes:
        return (f"Not found with the sha256 the workflow states: {other_bytes} file(s) under the name hold other "
                f"bytes and were not taken. Paste a link to the right file.{offline}")
    return f"Not found on {where} (searched {ways} way{'s' if ways != 1 else ''}).{offline}"


def candidate_entry(c: Candidate) -> CandidateEntry:
    """A candidate as resolutions.json and the panel list it for the user to pick from."""
    return CandidateEntry(source=c.source, url=c.url, local_path=c.local_path, reason=c.reason,
                          confidence=round(c.confidence, 3), filename=c.filename, folder=c.folder, size=c.size,
                          gated=c.gated)


def bytes_source(c: Candidate | None) -> str:
    """Where the bytes of a choice come from, the agent guide's `source`: civitai, huggingface, local (a copy
    already on this computer), not_found (nothing chosen), or the host of any other link. How the link was
    found (a catalog, the workflow's own hint, a near name) is `found_by`."""
    if c is None:
        return "not_found"
    if c.source == "local" or not c.url:
        return "local"
    hint = c.source if c.source in ("civitai", "huggingface") else ""
    owner = token_name_for(c.url, hint)
    return {"HF_TOKEN": "huggingface", "CIVITAI_API_KEY": "civitai"}.get(owner or "") or \
        (urlsplit(c.url).hostname or "unknown")


def resolution_state(res: Resolution) -> ResolutionState:
    """chosen, needs_choice (candidates, none sure enough) or not_found."""
    return "chosen" if res.chosen else "needs_choice" if res.candidates else "not_found"


def unresolved_event(res: Resolution) -> ErrorRaised:
    """errors[] for a model no source was chosen for, in the guide's words ("... not found ...")."""
    if res.candidates:
        return ErrorRaised(ErrorInfo("needs_choice", f"Model not found with certainty: {res.name}: "
                                     f"{len(res.candidates)} candidate(s) need your choice (see "
                                     "output/resolutions.json)", folder=res.folder), res.why)
    return ErrorRaised(ErrorInfo("model_not_found", f"Model not found on Civitai or HuggingFace: {res.name}",
                                 folder=res.folder), res.why)


def resolution_entry(res: Resolution) -> ResolutionEntry:
    """One entry of output/resolutions.json in the file contract's schema (filename, source incl. not_found,
    model_id / version_id / repo_id, download_url, expected_type), then how the source was found
    (found_by), the state, and what the panel and report show. `source` is where the bytes come from."""
    c = res.chosen
    ids = dict(c.ids) if c else {}
    return ResolutionEntry(
        filename=res.name, source=bytes_source(c), download_url=c.url if c else None, expected_type=res.folder,
        model_id=ids.get("model_id"), version_id=ids.get("version_id"), repo_id=ids.get("repo_id"), ids=ids,
        local_path=c.local_path if c else None, size=c.size if c else None, sha256=c.sha256 if c else None,
        confidence=c.confidence if c else None, reason=c.reason if c else "not found", gated=c.gated if c else False,
        needs_token=c.needs_token if c else None, candidates=[candidate_entry(x) for x in res.candidates[:10]],
        why=res.why, tried=res.tried, found_by=c.source if c else None, state=resolution_state(res))



def _str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) and v else None


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def candidate_from_json(d: Any, url_key: str = "url") -> Candidate | None:
    """A candidate as resolutions.json wrote it, read back as untrusted input (wrong types: None)."""
    if not isinstance(d, dict) or not _str(d, "filename"):
        return None
    how = _str(d, "found_by") or _str(d, "source") or ""
    source = next((s for s in get_args(SourceName) if s == how and s != "not_found"), None)
    if source is None:
        return None
    size = _num(d, "size")
    raw_ids = d.get("ids")
    ids: dict[str, Any] = raw_ids if isinstance(raw_ids, dict) else {}
    token = next((t for t in get_args(TokenName) if t == d.get("needs_token")), None)
    return Candidate(source=source, filename=str(d["filename"]), folder=_str(d, "folder") or _str(d, "expected_type"),
                     confidence=_num(d, "confidence") or 0.0, reason=_str(d, "reason") or "",
                     url=_str(d, url_key), local_path=_str(d, "local_path"),
                     size=int(size) if size is not None and size >= 0 else None, sha256=_str(d, "sha256"),
                     gated=d.get("gated") is True, needs_token=token, ids=dict(ids))


def resolution_from_json(e: Any) -> Resolution | None:
    """One entry of output/resolutions.json back as a Resolution (--resume reuses what an earlier run chose)."""
    if not isinstance(e, dict) or not _str(e, "filename"):
        return None
    chosen = candidate_from_json(e, "download_url") if e.get("state", "chosen") == "chosen" and \
        e.get("source") != "not_found" else None
    if chosen is not None and not (chosen.url or chosen.local_path):
        chosen = None
    listed = e.get("candidates")
    raw: list[Any] = listed if isinstance(listed, list) else []
    others = [c for c in (candidate_from_json(x) for x in raw[:10]) if c is not None]
    said = e.get("tried")
    tried = [t for t in said if isinstance(t, str)][:50] if isinstance(said, list) else []
    return Resolution(name=str(e["filename"]), folder=_str(e, "expected_type"), chosen=chosen, candidates=others,
                      tried=[*tried, "chosen by the last run (output/resolutions.json)"], why=_str(e, "why") or "")

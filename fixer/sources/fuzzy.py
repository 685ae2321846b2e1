"""Name normalisation and the fuzzy source: near names among every file name the other sources saw.

The scale is deliberately strict, because a chosen candidate at or above the threshold is downloaded
without asking and saved under the workflow's name: only a difference of case or separators
(`Wan2_1-VAE` vs `wan2.1_vae`) scores above the default threshold 0.7. A different precision
(fp16 vs fp8_e4m3fn) is a different file, and a different version (v1 vs v2) may be a different
model; those are listed for the user, never fetched on their own.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass

from ..models import Candidate, ModelRef
from .base import CONFIDENCE, Found, SearchRun, stem
from .family import mismatch_words

PRECISION_TAGS = (
    "fp32", "fp16", "bf16", "fp8", "fp8mixed", "fp8_mixed", "fp8_scaled", "fp8_e4m3fn", "fp8_e5m2", "e4m3fn",
    "e5m2", "e4m3fn_scaled", "scaled", "mixed", "int8", "int4", "nf4", "nvfp4", "fp4", "mxfp8", "q4_k_m", "q5_k_m",
    "q8_0", "q4_0", "q6_k", "gguf", "pruned", "ema", "emaonly", "noema", "full",
)
_SEP = re.compile(r"[\s_\-.]+")
_VERSION = re.compile(r"(?:^|_)v\d+(?:_\d+)*$")

CASE_SEPARATOR_SCORE = 0.8
PRECISION_SCORE = 0.6
VERSION_SCORE = 0.5
MAX_SIMILAR_SCORE = 0.55


def loose(name: str) -> str:
    """Case and separators folded: `Wan2_1-VAE.safetensors` -> `wan2_1_vae`."""
    return _SEP.sub("_", stem(name).lower()).strip("_")


def without_precision(name: str) -> str:
    tokens = loose(name).split("_")
    tags = {t for tag in PRECISION_TAGS for t in tag.split("_")}
    return "_".join(t for t in tokens if t not in tags)


def without_version(name: str) -> str:
    return _VERSION.sub("", without_precision(name)).strip("_")


def tokens(name: str) -> list[str]:
    return [t for t in loose(name).split("_") if t]


@dataclass(frozen=True)
class Likeness:
    score: float
    why: str


def likeness(wanted: str, other: str) -> Likeness:
    """How sure `other` names the same file as `wanted` (file names only, extensions included)."""
    w_ext, o_ext = os.path.splitext(wanted.lower())[1], os.path.splitext(other.lower())[1]
    same_ext = w_ext == o_ext
    if stem(wanted) == stem(other) and same_ext:
        return Likeness(1.0, "same name")
    if loose(wanted) == loose(other) and same_ext:
        return Likeness(CASE_SEPARATOR_SCORE, "same name apart from case and separators")
    if loose(wanted) == loose(other):
        return Likeness(PRECISION_SCORE, f"same name in another format ({o_ext or 'none'} instead of {w_ext})")
    if without_precision(wanted) == without_precision(other) and without_precision(wanted):
        return Likeness(PRECISION_SCORE, "same model name with another precision tag")
    if without_version(wanted) == without_version(other) and without_version(wanted):
        return Likeness(VERSION_SCORE, "same model name with another version")
    ratio = difflib.SequenceMatcher(None, loose(wanted), loose(other)).ratio()
    return Likeness(round(MAX_SIMILAR_SCORE * ratio, 3), f"similar name ({ratio:.0%} alike)")


class FuzzySource:
    """Scores every candidate file the other sources saw for this model under a different name."""

    name = "fuzzy"
    floor = 0.3  # names less alike than this are noise, not worth listing

    async def find(self, ref: ModelRef, run: SearchRun) -> Found:
        found = Found()
        wanted = ref.basename
        for seen in run.seen_files(ref):
            if seen.filename_seen.lower() == wanted.lower():
                continue  # exact names were scored by their own source
            like = likeness(wanted, seen.filename_seen)
            if like.score < self.floor:
                continue
            base = seen.candidate
            conf, why = min(like.score, base.confidence), like.why
            # A near name is a guess already: one made for another family than the chain's ranks below the rest.
            f, made_for, chain = (base.ids.get(k) for k in ("family_fit", "family", "wanted_family"))
            other_family = None  # the family it was made for, when that is not the chain's
            if f in ("other", "kin") and made_for and chain:
                conf = min(conf, CONFIDENCE["other_family" if f == "other" else "kin_family"])
                why = f"{mismatch_words(chain, made_for)}; {why}"
                other_family = made_for
            found.candidates.append(Candidate(
                source="fuzzy", filename=ref.name, folder=base.folder or ref.folder,
                confidence=conf,
                reason=f"{why}: {seen.filename_seen} from {base.source} ({base.reason})",
                url=base.url, local_path=base.local_path, size=base.size, sha256=base.sha256, gated=base.gated,
                needs_token=base.needs_token, ids={**base.ids, "matched_name": seen.filename_seen},
                made_for=other_family,
            ))
        found.tried.append(f"fuzzy: compared {len(run.seen_files(ref))} file names seen by the other sources")
        return found

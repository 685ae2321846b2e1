"""Model files named inside prompt text (docs/comfyui-facts.md, "Which folder an input reads").

`embedding:<name>` is ComfyUI's CLIP tokenizer syntax (comfy/sd1_clip.py), read at the start of a word:
the name runs to the next space, may carry a weight inside brackets (`(embedding:x:1.2)`), a trailing
comma is dropped, and a name without extension is tried as .safetensors, .pt and .bin in folder `embeddings`.
`<lora:name:weight>` is parsed only by some custom nodes (Impact's wildcard encoders, rgthree's Power
Prompt, LoRA Manager's loaders): the name is what precedes the first ':' and is looked up in `loras`,
also without extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..host.folder_probe import extension_of

# Where ComfyUI's tokenizer reads it: at the start of a word (after a space or a line break) or of a weighted
# segment (the text's start, a bracket); `photo,embedding:x` and `my_embedding:x` are plain words to it.
_EMBEDDING = re.compile(r"(?:^|(?<=[ \n()]))embedding:([^\s()\[\]{}<>|]+)")
# A weight, matched on a short tail only: `:-?\d*\.?\d+$` over a name backtracks quadratically.
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
_LORA = re.compile(r"<lora:([^>]+)>", re.IGNORECASE)
# Names without extension are tried with these, first one first (sd1_clip.load_embed; loras as Impact does).
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin")
LORA_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".bin", ".pth")  # also a core loader's file written bare
# Distinct names of one syntax read from one text: no prompt a person writes names more, and each one
# becomes a model to look up upstream.
MAX_PROMPT_REFS = 200

# Where `<lora:...>` is parsed (found in the packs' sources): LoRA Manager's loaders and stackers (not its
# Prompt/Text nodes, which encode the text as it is), rgthree's Power Prompt, and Impact's wildcard text
# (impact/wildcards.py process_with_loras) in its `wildcard` / `wildcard_text` inputs, or in its wildcard
# encoder when the input's name is unknown.
_LORA_TAG_NODES = re.compile(r"^(Lora Loader|LoRA Text Loader|Lora Stacker|WanVideo Lora Select( From Text)?"
                             r"|Lora Cycler|Lora Randomizer|LoRA Syntax → Path) \(LoraManager\)$"
                             r"|^Power Prompt|^SDXL Power Prompt - Positive")
_LORA_TAG_INPUTS = frozenset({"wildcard", "wildcard_text"})
_LORA_TAG_UNNAMED = re.compile(r"^ImpactWildcardEncode$|DetailerPipe")
# Text encoders by name, for when no node definition says the node takes a CLIP.
_ENCODER_NAME = re.compile(r"text_?encode|cliptext|textencoder|wildcardencode|power prompt", re.IGNORECASE)


@dataclass(frozen=True)
class PromptRef:
    """A model file a prompt's text names (<lora:name:1.0>, embedding:name), and the folder it goes in."""

    folder: str
    name: str  # as the file is most likely named (extension added when the text omits it)
    written: str  # as the text writes it
    alternatives: tuple[str, ...] = ()  # other file names the node would accept for it


def has_prompt_syntax(text: str) -> bool:
    return "embedding:" in text or "<lora:" in text or "<LORA:" in text  # no lower(): prompts are long


def _input_kinds(node_def: dict[str, Any]) -> set[str]:
    inputs = node_def.get("input")
    kinds: set[str] = set()
    for section in ("required", "optional"):
        spec = inputs.get(section) if isinstance(inputs, dict) else None
        if isinstance(spec, dict):
            kinds.update(e[0] for e in spec.values() if isinstance(e, (list, tuple)) and e and isinstance(e[0], str))
    return kinds


def encodes_text(node_type: str, node_def: object) -> bool:
    """A node whose text reaches a CLIP tokenizer: it takes a CLIP input, or it makes CONDITIONING out of no
    conditioning (a loader that encodes its own prompts, as Efficiency's Efficient Loader), else its name
    says so."""
    if isinstance(node_def, dict):
        kinds = _input_kinds(node_def)
        outputs = node_def.get("output")
        if "CLIP" in kinds or ("CONDITIONING" not in kinds and isinstance(outputs, (list, tuple))
                               and "CONDITIONING" in outputs):
            return True
    return bool(_ENCODER_NAME.search(node_type))


def parses_lora_tags(node_type: str, input_name: str | None) -> bool:
    if _LORA_TAG_NODES.search(node_type) or input_name in _LORA_TAG_INPUTS:
        return True
    return input_name is None and bool(_LORA_TAG_UNNAMED.search(node_type))


def _named(folder: str, written: str, extensions: tuple[str, ...]) -> PromptRef:
    if extension_of(written) in extensions:
        return PromptRef(folder, written, written)
    return PromptRef(folder, written + extensions[0], written, tuple(written + e for e in extensions[1:]))


def _without_weight(name: str) -> str:
    """`x:1.2` -> `x`: the weight a bracketed embedding may carry."""
    head, sep, tail = name.rpartition(":")
    return head if sep and len(tail) <= 24 and _NUMBER.fullmatch(tail) else name


def embeddings_in(text: str) -> list[PromptRef]:
    seen: dict[str, PromptRef] = {}
    for m in _EMBEDDING.finditer(text):
        written = _without_weight(m.group(1).rstrip(",")).rstrip(",")
        if written and written not in seen:
            seen[written] = _named("embeddings", written, EMBEDDING_EXTENSIONS)
            if len(seen) >= MAX_PROMPT_REFS:
                break
    return list(seen.values())


def lora_tags_in(text: str) -> list[PromptRef]:
    seen: dict[str, PromptRef] = {}
    for m in _LORA.finditer(text):
        written = m.group(1).strip(":").split(":", 1)[0].strip()
        if written and written not in seen:
            seen[written] = _named("loras", written, LORA_EXTENSIONS)
            if len(seen) >= MAX_PROMPT_REFS:
                break
    return list(seen.values())


def prompt_refs(node_type: str, input_name: str | None, node_def: object, text: str) -> list[PromptRef]:
    """The model files one text value of a node names, for the syntax that node parses."""
    refs: list[PromptRef] = []
    if "embedding:" in text and encodes_text(node_type, node_def):
        refs += embeddings_in(text)
    if parses_lora_tags(node_type, input_name):
        refs += lora_tags_in(text)
    return refs

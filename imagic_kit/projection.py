"""DECOR (Jang et al., arXiv 2412.09169): text embeddings projected away from what leaks.

A model customised on a few references (a LoRA) overfits, and the references' content leaks into
new prompts. DECOR removes the unwanted directions from the prompt's text-encoder output at
inference, without training:

    X' = X - a * X V V^T

X is the prompt's encoder output (every token row, padding included), V the right-singular
vectors of the encoder output of the unwanted tokens, a in [0, 1] the strength (1: X projected on
the orthogonal complement of V's span; 0: X unchanged).

The unwanted words are given (``decor_remove``) or, by default, the words of the source prompt
that the target prompt drops ("a red circle" -> "a blue circle": "red"). Their rows come from the
source prompt's encoder output, where the words were said (``decor_context=prompt``), or from
encoding each word alone (``alone``). The paper leaves both choices open; the defaults are the
toolkit's measurement (docs/methods/decor.md).

:func:`project_embeddings` is the primitive; :class:`DecorConfig` the fields every method with the
option shares; :func:`facts` (before the fit: the words, checked) and :func:`projector` (at
sampling) are what a method calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .config import param, shared_config
from .errors import ConfigError
from .words import dropped_words, find, word_list


def directions(unwanted: torch.Tensor, rank: int | None = None) -> torch.Tensor:
    """V [D, r]: the right-singular vectors of the unwanted rows [k, D] (any leading dims are
    flattened into rows), strongest first; ``rank`` keeps the first r (None: every direction with
    a singular value above 1e-6 of the largest)."""
    rows = unwanted.reshape(-1, unwanted.shape[-1]).float()
    if rows.shape[0] == 0:
        raise ValueError("no unwanted rows to take directions from")
    _, s, vh = torch.linalg.svd(rows, full_matrices=False)
    keep = int((s > s[0] * 1e-6).sum()) if s[0] > 0 else 0
    if rank is not None:
        keep = min(keep, rank)
    return vh[:keep].T.contiguous()


def project_embeddings(
    x: torch.Tensor, unwanted: torch.Tensor, strength: float, rank: int | None = None
) -> torch.Tensor:
    """X - strength * X V V^T (DECOR, sec. 3): ``x`` [..., L, D] text-encoder output (every row,
    padding included), ``unwanted`` [k, D] the unwanted tokens' rows, V their right-singular
    vectors (:func:`directions`). Strength 0 returns ``x`` unchanged; 1 removes V's span; the
    component orthogonal to V is untouched at any strength. Computed in float32, returned in
    ``x``'s dtype."""
    if strength == 0:
        return x
    return _remove(x, directions(unwanted, rank).to(x.device), strength)


def _remove(x: torch.Tensor, v: torch.Tensor, strength: float) -> torch.Tensor:
    xf = x.float()
    return (xf - strength * (xf @ v) @ v.T).to(x.dtype)


def unwanted_rows(backbone, words: list[str], prompt: str | None, context: str) -> torch.Tensor:
    """The encoder-output rows [k, D] of ``words``: read in ``prompt``'s encoder output at the
    words' tokens (``context=prompt``; a word the prompt does not have is encoded alone), or each
    word encoded alone (``alone``: the rows of its tokens, between the start and end tokens)."""
    tok = backbone.tokenizer
    rows = []
    encoded = None
    ids: list[int] = []
    if context == "prompt" and prompt:
        ids = tok(prompt, truncation=True, max_length=backbone.max_tokens).input_ids
        encoded = backbone.encode_prompt(prompt, warn=False)[0].float()
    for w in words:
        sub = tok(w, add_special_tokens=False).input_ids
        at = find(ids, sub) if encoded is not None and sub else -1
        if at >= 0:
            rows.append(encoded[at : at + len(sub)])
        else:
            alone = backbone.encode_prompt(w, warn=False)[0].float()
            rows.append(alone[1 : 1 + max(len(sub), 1)])
    return torch.cat(rows)


@shared_config
@dataclass
class DecorConfig:
    """The DECOR option's fields, the same in every method that has it."""

    decor_strength: float = param(
        0.0,
        help="DECOR: how much of the unwanted words' directions is projected out of the prompt's "
        "text embedding (0 off, 1 all of it)",
        stage="sample",
        min=0.0,
        max=1.0,
    )
    decor_remove: str = param(
        "",
        help="DECOR: the unwanted words, space or comma separated; empty = the words of the "
        "source prompt that the target prompt drops",
        stage="sample",
    )
    decor_context: str = param(
        "prompt",
        help="DECOR: where the unwanted words' directions come from: prompt (their rows in the "
        "source prompt's encoding) or alone (each word encoded by itself)",
        stage="sample",
        choices=["prompt", "alone"],
    )
    decor_rank: int = param(
        0,
        help="DECOR: how many singular directions of the unwanted rows to remove (0 = all)",
        stage="sample",
        min=0,
        max=1024,
    )


def unwanted_words(inputs: Any, config: DecorConfig) -> list[str]:
    """The words to project out: ``decor_remove``, or what the target drops from the source
    prompt. Raises ConfigError when the option is on and there are none."""
    if config.decor_remove.strip():
        words = word_list(config.decor_remove)
        if not words:
            raise ConfigError(
                f"decor_remove={config.decor_remove!r} names no word; give them, e.g. decor_remove=red"
            )
        return words
    if not inputs.source_prompt:
        raise ConfigError(
            f"decor_strength={config.decor_strength:g} needs the unwanted words: set "
            "decor_remove=WORDS or give --source-prompt (its words the target drops are removed)"
        )
    words = dropped_words(inputs.source_prompt, inputs.prompt)
    if not words:
        raise ConfigError(
            "decor_strength > 0 but the target prompt drops no word of the source prompt; "
            "name the unwanted words with decor_remove=WORDS"
        )
    return words


def facts(backbone, inputs, config: DecorConfig) -> dict[str, Any]:
    """The recipe's record of the option (and its checks, before any fit): the words removed."""
    if config.decor_strength == 0:
        return {}
    return {"decor_words": unwanted_words(inputs, config)}


def projector(backbone, inputs, config: DecorConfig):
    """``f(X) -> X'`` for this edit's unwanted words (the identity when the option is off)."""
    if config.decor_strength == 0:
        return lambda x: x
    words = unwanted_words(inputs, config)
    rows = unwanted_rows(backbone, words, inputs.source_prompt, config.decor_context)
    v = directions(rows, config.decor_rank or None).to(backbone.device)
    return lambda x: _remove(x, v, config.decor_strength)

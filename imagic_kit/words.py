"""Words and tokens of prompts: which words two prompts do not share, where a word's tokens stand
in a prompt's token ids, and how the tokens of two prompts align. DECOR's projection and the
attention control read prompts through these."""

from __future__ import annotations

import difflib
import re

import torch

#: Words never treated as a change when two prompts are compared: "a" for "the" is not a change of
#: content.
STOP_WORDS = frozenset(
    "a an the on in of with and at to by for from over under is are its it this that".split()
)


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``, in order."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def word_list(text: str) -> list[str]:
    """The words a user listed in a field (``"red, blue"`` or ``"red blue"``), lower-cased."""
    return [w for w in re.split(r"[\s,]+", text.strip().lower()) if w]


def dropped_words(source: str, target: str) -> list[str]:
    """The words of ``source`` that ``target`` does not have, in order, stop words left out."""
    kept = set(words(target))
    out: list[str] = []
    for w in words(source):
        if w not in kept and w not in STOP_WORDS and w not in out:
            out.append(w)
    return out


def find(seq: list[int], sub: list[int]) -> int:
    """The first index at which ``sub`` stands in ``seq``, or -1."""
    for i in range(len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    return -1


def token_ids(tokenizer, prompt: str, length: int) -> list[int]:
    """``prompt``'s token ids as the text encoder reads them: start and end tokens, padded or
    truncated to ``length``."""
    return tokenizer(prompt, padding="max_length", max_length=length, truncation=True).input_ids


def word_positions(tokenizer, ids: list[int], word: str) -> list[int]:
    """The positions in ``ids`` of the tokens of each occurrence of ``word`` (empty if it has
    none)."""
    sub = tokenizer(word, add_special_tokens=False).input_ids
    out: list[int] = []
    start = 0
    while sub and (at := find(ids[start:], sub)) >= 0:
        out.extend(range(start + at, start + at + len(sub)))
        start += at + len(sub)
    return out


def align(source: list[int], target: list[int]) -> torch.Tensor:
    """For each target token, the source token it corresponds to, or -1 for a token the source
    has no counterpart of: tokens the prompts share (found by a longest-matching-blocks alignment,
    padding included) map to each other, and a run of target tokens that replaces a run of source
    tokens of the same length maps token for token (a word swap); a longer or shorter replacement
    and added words are the target's own (a refinement; Hertz et al., arXiv 2208.01626, sec. 3.2).
    """
    mapping = torch.full((len(target),), -1, dtype=torch.long)
    matcher = difflib.SequenceMatcher(a=source, b=target, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal" or (op == "replace" and a1 - a0 == b1 - b0):
            mapping[b0:b1] = torch.arange(a0, a1)
    return mapping

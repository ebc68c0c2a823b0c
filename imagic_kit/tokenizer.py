"""Build a standard CLIP BPE tokenizer for a small closed vocabulary, written in code.

No hub is reachable here, so the tiny models get a tokenizer made on the spot: ``vocab.json`` and
``merges.txt`` in the ordinary CLIP format (``CLIPTokenizer`` loads them, and they can be saved
into a diffusers folder). Every vocabulary word becomes one token through a chain of merges; any
other word falls back to single characters (so it never crashes), and :func:`unknown_words`
reports it so the backbone can warn.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_CHARS = (
    [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(".,!?'-")
)


def write_vocab(folder: str | Path, words: str | Iterable[str]) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` for ``words`` (lower-case, letters/digits) into folder.

    ``words`` may be one space-separated string (YAML would read a bare ``on`` as a boolean).
    """
    if isinstance(words, str):
        words = words.split()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for c in _CHARS:
        vocab.setdefault(c, len(vocab))
    for c in _CHARS:
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[str] = []
    seen: set[str] = set()
    for w in sorted({w.lower() for w in words}):
        if not re.fullmatch(r"[a-z0-9]+", w):
            raise ValueError(f"vocabulary word {w!r} must be lower-case letters or digits")
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:  # merge left to right: one new symbol per prefix
            pair = f"{parts[0]} {parts[1]}"
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def build_tokenizer(words: str | Iterable[str], model_max_length: int):
    """A ``CLIPTokenizer`` for ``words`` (files written to a temporary folder, then loaded)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as d:
        write_vocab(d, words)
        tok = CLIPTokenizer(f"{d}/vocab.json", f"{d}/merges.txt", model_max_length=model_max_length)
        tok.init_kwargs.pop("vocab_file", None)  # the temp paths must not be saved with it
        tok.init_kwargs.pop("merges_file", None)
    return tok


def unknown_words(tokenizer, text: str) -> list[str]:
    """Words of ``text`` that are not single tokens of ``tokenizer``'s vocabulary."""
    vocab = tokenizer.get_vocab()
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w + "</w>" not in vocab]

"""Best-of-N: rank the candidate outputs of one edit by how well they match the prompt and keep
the input.

A sampled edit is stochastic: from one fit, some seeds give the edit in place, others move the
object, redraw it or stop half way (public Imagic implementations note that the best eta differs
per seed). Drawing several candidates and keeping the best is what users of these methods do by
eye; this module does it with three measures that need only what the user gave (the input image and the target prompt):

- **clip**: CLIP score of the candidate against the target prompt (cosine of the image and text
  features) -- did the edit happen;
- **structure**: correlation of the candidate's edge map with the input's (the per-pixel largest
  Sobel gradient magnitude over the RGB channels, Gaussian-blurred, at <= 128 px) -- are the
  outlines where they were. It does not care about colours, so a colour or background change
  costs little, while a moved or redrawn object costs a lot;
- **fidelity**: PSNR against the input over the best-matching half of the pixels (at <= 128 px) --
  did the part the edit leaves alone keep its texture and shading. The worst-matching half, where
  an edit of an object happens, is ignored, so a bold recolouring costs nothing while a redrawn
  texture costs a lot (a plain PSNR would reward timid edits). Where the edit repaints more than
  half of the image (a new background) the measure rewards the candidates that repaint less of it:
  CLIP's term has to outweigh it there, which is why fidelity has the smallest weight (0.25).

``rank_by`` names the measures used (``clip+structure+fidelity``, Imagic's default, or any
combination in that order; SDEdit's default is ``clip+structure``).
Each is standardised over the candidates (z-score) and they are summed with weights 1,
``structure_weight`` and ``fidelity_weight``: scale-free, so the same ranking works with the
embedded model's small CLIP and with a real CLIP ViT-L/14, whose cosines are all ~0.2-0.35. Without
a CLIP model the text term is dropped (with a warning); ``rank_by="clip"`` alone is an error. This
is the toolkit's choice, not a paper's: the evidence for the terms and weights is in
docs/methods/imagic.md, "Best of N and the ranking". ``imagic-kit bench --judge-candidates`` records every
candidate's measures and the oracle's verdict, and ``scripts/rerank.py`` tries other rankings on
them offline.

Reproducibility: the same seed and settings give the same candidates and the same pick. The
candidates come from one generator, in batches of ``selection.SAMPLE_CHUNK``, so candidate i depends on
how many are drawn: to get a pick back, rerun with the same seed and ``candidates`` (the recipe
holds both, and ``recipe["ranking"]["order"][0]`` is the pick's index), not with ``candidates=1``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from PIL import Image

from .clip_score import load_clip
from .imaging import gaussian_blur

log = logging.getLogger(__name__)

TERMS = ("clip", "structure", "fidelity")
# every combination of the terms, the default first
RANK_BY = (
    "clip+structure+fidelity",
    "clip+structure",
    "clip+fidelity",
    "structure+fidelity",
    "clip",
    "structure",
    "fidelity",
)


@dataclass
class Ranking:
    """Scores of every candidate (in drawing order) and the order chosen (best first)."""

    order: list[int]
    scores: list[float]
    text: list[float] | None = None
    structure: list[float] = field(default_factory=list)
    rank_by: str = "clip+structure+fidelity"
    fidelity: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        r = lambda v: None if v is None else [round(x, 4) for x in v]  # noqa: E731
        return {
            "rank_by": self.rank_by,
            "order": self.order,
            "score": r(self.scores),
            "clip": r(self.text),
            "structure": r(self.structure),
            "fidelity": r(self.fidelity),
        }


def _at_most(pixels: torch.Tensor, max_size: int) -> torch.Tensor:
    """A float32 CPU copy of (N, C, H, W) ``pixels``, area-downsampled to ``max_size`` if larger:
    the measures below work on <= 128 px whatever the model's resolution."""
    x = pixels.detach().float().cpu()
    if x.shape[-1] > max_size:
        x = torch.nn.functional.interpolate(x, size=(max_size, max_size), mode="area")
    return x


def edge_map(pixels: torch.Tensor, max_size: int = 128) -> torch.Tensor:
    """(N, 3, H, W) images in [-1, 1] -> (N, h, w) blurred edge maps, h = w <= ``max_size``."""
    x = _at_most(pixels, max_size)
    size = x.shape[-1]
    n, c = x.shape[:2]
    x = x.reshape(n * c, 1, *x.shape[-2:])
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = torch.nn.functional.conv2d(padded, k[None, None])
    gy = torch.nn.functional.conv2d(padded, k.T[None, None])
    g = torch.hypot(gx, gy).reshape(n, c, *x.shape[-2:]).amax(1, keepdim=True)
    # 1.5 px at 64 px, the same blur in image fractions elsewhere
    return gaussian_blur(g, 1.5 * size / 64)[:, 0]


def structure_similarity(candidates: torch.Tensor, reference: torch.Tensor) -> list[float]:
    """Pearson correlation of each candidate's edge map with the reference's (1 = same outlines)."""
    e = edge_map(candidates).flatten(1)
    ref = edge_map(reference[:1]).flatten(1)
    e = e - e.mean(1, keepdim=True)
    ref = ref - ref.mean(1, keepdim=True)
    num = (e * ref).sum(1)
    den = (e.norm(dim=1) * ref.norm(dim=1)).clamp_min(1e-8)
    return (num / den).tolist()


def fidelity(
    candidates: torch.Tensor, reference: torch.Tensor, keep: float = 0.5, max_size: int = 128
) -> list[float]:
    """PSNR (dB) of each candidate against the reference over the best-matching ``keep`` fraction
    of its pixels (at <= ``max_size`` px): how faithfully the part the edit leaves alone was kept.

    An edit changes some of the image (an object's colour, or the background), so a plain PSNR
    mostly measures how big the edit is; the trimmed one ignores the worst-matching half and asks
    whether the rest still has the input's texture and shading. (An edit of more than half the
    image, a new background, leaves changed pixels in the kept half: there it favours timid edits.)"""
    x, ref = _at_most(candidates, max_size), _at_most(reference[:1], max_size)
    err = (((x - ref) / 2) ** 2).mean(1).flatten(1)  # per pixel, in [0, 1] units
    k = max(1, math.ceil(keep * err.shape[1]))
    mse = err.sort(1).values[:, :k].mean(1).clamp_min(1e-10)
    return (-10 * torch.log10(mse)).tolist()


def _z(v: list[float]) -> torch.Tensor:
    t = torch.tensor(v, dtype=torch.float64)
    if len(v) < 2:
        return torch.zeros_like(t)
    return (t - t.mean()) / t.std(unbiased=False).clamp_min(1e-6)


def rank_terms(rank_by: str) -> list[str]:
    """``"clip+structure"`` -> ``["clip", "structure"]``. ``rank_by`` must be one of ``RANK_BY``:
    its terms in the order clip, structure, fidelity (the config's check); the right terms in
    another order get a hint with the right spelling."""
    if rank_by not in RANK_BY:
        terms = rank_by.split("+")
        hint = ""
        if all(t in TERMS for t in terms) and len(set(terms)) == len(terms):
            hint = f" (write it as {'+'.join(sorted(terms, key=TERMS.index))!r})"
        raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}, got {rank_by!r}{hint}")
    return rank_by.split("+")


def without_clip(rank_by: str) -> str:
    """What ``rank_by`` ranks by when there is no CLIP score: the other terms ('' if none)."""
    return "+".join(t for t in rank_terms(rank_by) if t != "clip")


def score_candidates(
    text: list[float] | None,
    structure: list[float],
    fidelity: list[float],
    *,
    rank_by: str,
    structure_weight: float = 0.5,
    fidelity_weight: float = 0.25,
) -> tuple[list[int], list[float]]:
    """The order (best first; ties keep drawing order) and the scores of candidates from their
    measures: the z-scores of the ``rank_by`` terms, CLIP's with weight 1, summed. Used by
    ``rank_candidates`` and by scripts/rerank.py to try rankings on judged candidates offline."""
    terms = rank_terms(rank_by)
    if "clip" in terms and text is None:
        raise ValueError(f"rank_by={rank_by!r} needs the CLIP scores")
    score = torch.zeros(len(structure), dtype=torch.float64)
    if "clip" in terms:
        score += _z(text)
    if "structure" in terms:
        score += structure_weight * _z(structure)
    if "fidelity" in terms:
        score += fidelity_weight * _z(fidelity)
    order = sorted(range(len(structure)), key=lambda i: (-float(score[i]), i))
    return order, score.tolist()


def rank_candidates(
    images: list[Image.Image],
    pixels: torch.Tensor,
    reference: torch.Tensor,
    prompt: str,
    *,
    clip_path: str | None,
    rank_by: str = "clip+structure+fidelity",
    structure_weight: float = 0.5,
    fidelity_weight: float = 0.25,
) -> Ranking:
    """Order ``images`` (decoded ``pixels``, (N, 3, H, W) in [-1, 1]) best first for an edit of
    ``reference`` (the input, (1, 3, H, W)) towards ``prompt``."""
    terms = rank_terms(rank_by)
    if terms == ["clip"] and not clip_path:
        raise ValueError("rank_by='clip' needs clip_path")
    if "clip" in terms and not clip_path:
        terms = rank_terms(without_clip(rank_by))
        log.warning(
            "ranking %d candidates without the text score (by %s only): this backbone has no "
            "CLIP model of its own (set rank_clip to a CLIP folder or hub id to use it too, or "
            "candidates=1 to sample once)",
            len(images),
            " and ".join({"structure": "outlines", "fidelity": "fidelity"}[t] for t in terms),
        )
    rank_by = "+".join(terms)
    text = load_clip(clip_path).scores(images, prompt) if "clip" in terms else None
    struct = structure_similarity(pixels, reference)
    fid = fidelity(pixels, reference)
    order, score = score_candidates(
        text,
        struct,
        fid,
        rank_by=rank_by,
        structure_weight=structure_weight,
        fidelity_weight=fidelity_weight,
    )
    return Ranking(order, score, text, struct, rank_by, fid)

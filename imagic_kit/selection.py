"""Draw, rank, restore: the sampling and selection step that ``edit()`` runs for every method.

A method opts in by inheriting one of the config classes below; nothing is looked up by name:

- :class:`RestoreConfig` (``restore_unedited``): the pixels the edit left alone are copied back
  from the input (``restore.py``). Every method whose output should keep the input's untouched
  pixels can have it; off by default.
- :class:`BestOfNConfig` (adds ``num_images_per_prompt``, ``candidates`` and the ranking's fields):
  for methods whose samples differ with the seed (they start from fresh noise, or add noise while
  sampling), or that spread their candidates over a setting (PTI's ``eta_start``: each sample call
  learns the index of its first candidate from ``EditInputs.first_candidate``). ``candidates`` samples are drawn for each returned image and the best by ``rank_by``
  are kept (``ranking.py``). Deterministic samplers (DDIM from an inversion) take only
  :class:`RestoreConfig`: their candidates would all be the same image.

A method that wants other defaults redeclares the field with :func:`~imagic_kit.config.default`,
e.g. ``candidates: int = default("candidates", 16)``: the help, the range and the stage stay the
shared ones.

``edit()`` runs, after the fit:

1. :func:`draw`: ``num_images_per_prompt x candidates`` samples from one generator seeded with the
   edit's seed, in batches of at most :data:`SAMPLE_CHUNK` (bounded memory on large models), decoded
   to pixels;
2. :func:`select`: the candidates are ranked as generated (restored ones would mostly tie on the
   fidelity term, their best-matching half being the input's own pixels: docs/methods/imagic.md,
   "Restoring unedited pixels"), every candidate is restored, and the best
   ``num_images_per_prompt`` are returned.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import param, shared_config
from .errors import ConfigError, ModelNotAvailableError
from .ranking import RANK_BY, Ranking, rank_candidates, rank_terms
from .restore import keep_outside, restore_pixels
from .sampling import unpack

#: Candidates sampled per batch: bounds the memory of best-of-N on large models. Candidate i depends
#: on how many are drawn (one generator runs through the batches), so a pick is reproduced with the
#: same seed and the same ``candidates``.
SAMPLE_CHUNK = 8


@shared_config
@dataclass
class RestoreConfig:
    """Config fields of the restore step; a method config inherits them."""

    restore_unedited: float = param(
        0.0,
        help="copy the pixels the edit left alone back from the input (imagic_kit/restore.py): the "
        "difference (RMS, fraction of the full range, blurred) from which a pixel counts as "
        "edited; under half of it the input's pixel is kept. 0 = off, every pixel generated (use "
        "0 for global edits such as lighting or style)",
        stage="sample",
        min=0.0,
        max=1.0,
    )


@shared_config
@dataclass
class BestOfNConfig(RestoreConfig):
    """Config fields of drawing several images and keeping the best; a method config inherits them."""

    num_images_per_prompt: int = param(
        1, help="images generated from one fit", stage="sample", min=1, max=64
    )
    candidates: int = param(
        1,
        help="samples drawn for each returned image; the best by rank_by are kept (1 = no ranking)",
        stage="sample",
        min=1,
        max=256,
    )
    rank_by: str = param(
        "clip+structure+fidelity",
        help="how candidates are ranked: the z-scores of the CLIP score to the prompt (weight 1), "
        "the outline similarity to the input (structure_weight) and the fidelity to the input "
        "(trimmed PSNR, fidelity_weight), summed; any of them, in that order",
        stage="sample",
        choices=list(RANK_BY),
    )
    structure_weight: float = param(
        0.5,
        help="weight of the outline similarity against the CLIP score when ranking candidates",
        stage="sample",
        min=0.0,
        max=100.0,
    )
    fidelity_weight: float = param(
        0.25,
        help="weight of the fidelity to the input (PSNR of its best-matching half) against the "
        "CLIP score when ranking candidates",
        stage="sample",
        min=0.0,
        max=100.0,
    )
    rank_clip: str = param(
        "",
        help="CLIP model (folder or hub id) for the ranking's text score; empty = the model's own "
        "(the embedded model ships one)",
        stage="sample",
    )


def images_per_prompt(config: Any) -> int:
    return config.num_images_per_prompt if isinstance(config, BestOfNConfig) else 1


def candidates_per_image(config: Any) -> int:
    return config.candidates if isinstance(config, BestOfNConfig) else 1


def ranking_clip(backbone: Any, config: Any) -> str | None:
    """The CLIP model best-of-N ranks with (``rank_clip``, else the model's own), loaded now so that
    a missing one stops the edit before the fit; None when no ranking or no CLIP is needed/there."""
    if candidates_per_image(config) <= 1 or "clip" not in rank_terms(config.rank_by):
        return None
    check_rank_clip(config)
    path = config.rank_clip or backbone.clip_path
    if not path:
        if config.rank_by == "clip":
            raise ConfigError(
                "rank_by=clip needs a CLIP model and this model has none; set rank_clip to a CLIP "
                "folder or hub id, or use rank_by=structure+fidelity (what the default ranks by "
                "here)"
            )
        return None
    from .clip_score import load_clip

    try:
        load_clip(path)
    except (OSError, ValueError, KeyError) as e:  # missing folder, hub id offline, not a CLIP
        raise ModelNotAvailableError(
            f"the CLIP model for ranking candidates, {path!r}, could not be loaded "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); give rank_clip a local "
            "CLIP folder, or set rank_by=structure+fidelity or candidates=1"
        ) from None
    return path


def check_rank_clip(config: Any) -> None:
    """A ``rank_clip`` that cannot be a CLIP model (a file, or neither a folder nor a hub id) is
    refused at once, without trying the hub."""
    path = config.rank_clip if isinstance(config, BestOfNConfig) else ""
    if not path or candidates_per_image(config) <= 1 or "clip" not in rank_terms(config.rank_by):
        return
    from pathlib import Path

    from .paths import looks_like_hub_id

    p = Path(path)
    if p.exists() and not p.is_dir() or not p.exists() and not looks_like_hub_id(path):
        raise ModelNotAvailableError(
            f"rank_clip={path!r} is not a CLIP model folder or hub id; give a folder holding a "
            "CLIPModel, or leave rank_clip empty for the model's own"
        )


def draw(
    spec, backbone, fit, inputs, config: Any, seed: int, progress
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every image the config asks for (``num_images_per_prompt x candidates``), decoded to pixels
    ([N, 3, H, W] in [-1, 1]), sampled in batches of at most :data:`SAMPLE_CHUNK` from one
    generator (so the seed fixes them all); and the region [N, 1, h, w] each may change where the
    method's sampling drew one (``sampling.Sampled``), else None."""
    generator = torch.Generator().manual_seed(seed)
    per_prompt = images_per_prompt(config)
    n = per_prompt * candidates_per_image(config)
    with torch.no_grad():
        if n == per_prompt:  # no best-of-N: one call, exactly as the method asks
            whole = dataclasses.replace(inputs, first_candidate=0, draws=n)
            latents, region = unpack(spec.sample(backbone, fit, whole, config, generator, progress))
            return backbone.decode_latents(latents), _per_image(region, n)
        chunks, regions, done = [], [], 0
        while done < n:
            k = min(SAMPLE_CHUNK, n - done)
            part = dataclasses.replace(config, num_images_per_prompt=k)
            batch = dataclasses.replace(inputs, first_candidate=done, draws=n)
            bar = progress.sub(f"candidates {done + 1}-{done + k} of {n}")
            latents, region = unpack(spec.sample(backbone, fit, batch, part, generator, bar))
            chunks.append(backbone.decode_latents(latents))
            regions.append(_per_image(region, k))
            done += k
    if any(r is None for r in regions):
        return torch.cat(chunks), None
    return torch.cat(chunks), torch.cat(regions)


def _per_image(region: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if region is None else region.float().cpu().expand(n, -1, -1, -1)


@dataclass
class Selected:
    """What :func:`select` keeps: ``pixels`` (the returned images), every candidate in drawing
    order (restored where the config restores; empty without best-of-N) and the ranking of the
    candidates as generated (None without best-of-N)."""

    pixels: torch.Tensor
    candidates: list = field(default_factory=list)
    ranking: Ranking | None = None
    timings: dict[str, float] = field(default_factory=dict)


def select(
    generated: torch.Tensor,
    reference: torch.Tensor,
    prompt: str,
    config: Any,
    clip_path: str | None,
    region: torch.Tensor | None = None,
) -> Selected:
    """Rank ``generated`` (from :func:`draw`) against the input ``reference`` ([1, 3, H, W]) and
    ``prompt``, restore the unedited pixels, keep the best. With a ``region`` from the sampling
    (:func:`draw`), the pixels outside it are the input's (``restore.keep_outside``), and the
    restore's own estimate is not used. ``timings``: ``restore_s`` and, with best-of-N,
    ``rank_s``."""
    from .imaging import tensor_to_pil

    t0 = time.perf_counter()
    pixels = generated
    if region is not None:
        pixels = keep_outside(generated, reference, region)
    elif isinstance(config, RestoreConfig) and config.restore_unedited > 0:
        pixels = restore_pixels(generated, reference, config.restore_unedited)[0]
    timings = {"restore_s": time.perf_counter() - t0}
    if candidates_per_image(config) <= 1:
        return Selected(pixels, timings=timings)
    t0 = time.perf_counter()
    drawn = tensor_to_pil(generated)
    ranking = rank_candidates(
        drawn,
        generated,
        reference,
        prompt,
        clip_path=clip_path,
        rank_by=config.rank_by,
        structure_weight=config.structure_weight,
        fidelity_weight=config.fidelity_weight,
    )
    timings["rank_s"] = time.perf_counter() - t0
    candidates = drawn if pixels is generated else tensor_to_pil(pixels)
    best = pixels[ranking.order[: images_per_prompt(config)]]
    return Selected(best, candidates, ranking, timings)

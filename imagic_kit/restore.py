"""Keep what the edit leaves alone: copy the pixels an edit did not change back from the input.

A diffusion edit regenerates every pixel. Where the prompt asks for no change the output still
drifts from the input: the fit's reconstruction error, the VAE's, the sampling noise (on the shapes
world a kept background typically comes back at 23-27 dB). :func:`restore_pixels` finds the edited
region from the difference between the output and the input, and outside it puts the input's own
pixels back, with a soft, slightly grown edge, so the edit itself is untouched and the rest is the
photo the user gave. It is the pixel-space form of what local-blending editors do (Prompt-to-Prompt's
local blend, DiffEdit's masks), and the toolkit's addition, not part of any method's paper.

The mask, per output image, at the image's resolution (``s`` = width / 64, so the same fractions of
the image at any size):

1. ``d`` = RMS over the channels of the difference between the output and the input, both blurred
   (Gaussian, ``s`` px), in units of the full range (0 = same, 1 = black vs white);
2. edited = 0 where ``d`` <= threshold / 2, 1 where ``d`` >= threshold, linear in between;
3. grown by ``2 s`` px (a max filter): an edited object's anti-aliased rim and shadow go with it;
4. feathered (Gaussian, ``s`` px), then output = edited * output + (1 - edited) * input.

It suits local edits (an object's colour, shape or pose; a new background behind a kept object).
A global edit that changes some regions only slightly (a lighting or style change) would get its
slight changes undone there: use threshold 0 (off) for those.
"""

from __future__ import annotations

import torch

from .imaging import gaussian_blur


def edited_mask(pixels: torch.Tensor, reference: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, 1, H, W) in [0, 1]: how much each pixel of ``pixels`` (N, 3, H, W, in [-1, 1]) counts
    as edited against ``reference`` (1, 3, H, W), by the steps in the module docstring."""
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if pixels.shape[-2:] != reference.shape[-2:]:
        raise ValueError(
            f"the output ({tuple(pixels.shape[-2:])}) and the input "
            f"({tuple(reference.shape[-2:])}) must have the same size"
        )
    x = pixels.float()
    ref = reference[:1].float().to(x.device)
    s = x.shape[-1] / 64
    d = ((gaussian_blur(x, s) - gaussian_blur(ref, s)) / 2).pow(2).mean(1, keepdim=True).sqrt()
    m = ((d - threshold / 2) / (threshold / 2)).clamp(0, 1)
    k = 2 * max(1, round(2 * s)) + 1
    # a square max filter, as two 1-D passes (the same result, k times cheaper at 512 px)
    m = torch.nn.functional.max_pool2d(m, (1, k), stride=1, padding=(0, k // 2))
    m = torch.nn.functional.max_pool2d(m, (k, 1), stride=1, padding=(k // 2, 0))
    return gaussian_blur(m, s).clamp(0, 1)


def restore_pixels(
    pixels: torch.Tensor, reference: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pixels`` with their unedited region copied from ``reference``, and the mask used (1 =
    the output's pixel kept). Same shapes, device and dtype as ``pixels``."""
    m = edited_mask(pixels, reference, threshold)
    return _composite(pixels, reference, m), m


def keep_outside(
    pixels: torch.Tensor, reference: torch.Tensor, region: torch.Tensor
) -> torch.Tensor:
    """``pixels`` (N, 3, H, W) outside ``region`` (N or 1, 1, h, w; 1 = may change, at any lower
    resolution, e.g. the latents') replaced by ``reference``'s, with an edge feathered over ``s``
    px (``s`` = width / 64): the pixel-space completion of a latent blend. Blending latents alone
    does not keep the rest of the image: the decoder's group normalisations take their statistics
    over the whole image, so an edited object shifts the tone of pixels whose latents were kept
    (Avrahami et al., arXiv 2206.02779, sec. 3, blend the decoded pixels for the same reason)."""
    m = torch.nn.functional.interpolate(region.float().to(pixels.device), size=pixels.shape[-2:])
    return _composite(pixels, reference, gaussian_blur(m, pixels.shape[-1] / 64).clamp(0, 1))


def _composite(pixels: torch.Tensor, reference: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    # ``pixels`` where ``m`` is 1, the reference where it is 0, in ``pixels``' dtype
    ref = reference[:1].float().to(pixels.device)
    return (m * pixels.float() + (1 - m) * ref).to(pixels.dtype)

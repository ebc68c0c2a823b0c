"""Where an edit may change the input: regions drawn from the model, for blends that keep the rest.

:func:`difference_region` is DiffEdit's mask (Couairon, Verbeek, Schwenk, Cord, *DiffEdit:
Diffusion-based semantic image editing with mask guidance*, ICLR 2023, arXiv 2210.11427, sec.
3.1): noise the input, ask the model for its noise estimate under the input's caption and under
the target prompt, and mark where the two differ. It knows no method; the attention control's
local blend uses it (``blend_mask=difference``). Its pixel-space counterpart, putting the input
back outside a region after decoding, is ``restore.keep_outside``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Noise draws averaged, DiffEdit's ten (sec. 3.1).
REGION_DRAWS = 10


@torch.no_grad()
def difference_region(
    backbone,
    pixels: torch.Tensor,
    caption: str,
    target: str,
    threshold: float,
    noise: float = 0.5,
) -> torch.Tensor | None:
    """[1, 1, h, w] (1 = may change) the latent pixels where the edit from ``caption`` to
    ``target`` acts on ``pixels`` ([1, 3, H, W] in [-1, 1]); None where the prompts make no
    difference (nothing to confine).

    The input's latents are noised to ``noise`` of the schedule (DiffEdit's 0.5; a higher level
    leaves the model less of the input to go by, so words that set large regions, such as a
    background's colour, show there too) with :data:`REGION_DRAWS` draws from a fixed seed (the
    region depends on the input and the prompts only). The absolute difference of the two
    conditional estimates, averaged over channels and draws, is dilated by one latent pixel (a 3x3
    max, as Prompt-to-Prompt's attention mask is), divided by its maximum and thresholded at
    ``threshold``. Guidance is left out: it scales the difference and the division undoes it.
    """
    z0 = backbone.encode_latents(pixels[:1].to(backbone.device)).float()
    last = backbone.num_train_timesteps - 1
    t = torch.tensor([min(int(noise * backbone.num_train_timesteps), last)])
    conds = torch.cat([backbone.encode_prompt(caption), backbone.encode_prompt(target)])
    generator = torch.Generator().manual_seed(0)
    total = torch.zeros_like(z0[:, :1])
    for _ in range(REGION_DRAWS):
        x = backbone.add_noise(z0, backbone.randn(tuple(z0.shape), generator), t)
        both = backbone.model_output(torch.cat([x, x]), t, conds)
        total += (both[1:] - both[:1]).abs().mean(1, keepdim=True)
    if not total.any():
        return None
    total = F.max_pool2d(total, kernel_size=3, stride=1, padding=1)
    return (total / total.amax() > threshold).float()

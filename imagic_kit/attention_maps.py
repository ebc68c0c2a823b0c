"""The attention maps of Prompt-to-Prompt (Hertz et al., ICLR 2023, arXiv 2208.01626): the
:class:`Controller` that replaces, reweights and keeps them, and the attention processor that hands
them to it, set on a UNet with diffusers' ``set_attn_processor`` for one sampling run
(:func:`installed`). ``attention_control.py`` builds a controller for an edit and samples with it;
the algorithm is described there."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

#: The local blend reads the cross-attention maps nearest this size (16x16, the paper's choice for
#: SD's 64x64 latents): coarse enough that a word's map is one region, fine enough to outline it.
BLEND_TOKENS = 16 * 16

#: The local blend starts after this fraction of the sampling steps: the maps of the first, noisiest
#: steps are too diffuse to draw a mask from.
BLEND_START = 0.2


class Controller:
    """What the processors of one sampling run share: the step, the token mapping, the equaliser,
    and the running sums of the local blend.

    Args:
        rows: branches in the batch: 1 source row, then ``rows - 1`` target rows.
        steps: the active sampling steps; ``cross_steps`` and ``self_steps`` of them, from the
            noisy end, are replaced.
        mapping: [L] for each target token its source token, -1 for the target's own.
        equalizer: [L] the factor of each target token's attention (ones: none).
        blend_tokens: per branch (source first, then one list for the target rows) the token
            positions whose attention marks the edited region; None: no local blend.
        latent_size: (h, w) of the latents.
        blend_words: the words of ``blend_tokens`` (for the recipe).
        region: [1, 1, h, w] a fixed region for the local blend, drawn before sampling
            (``regions.difference_region``); the cross-attention is then not kept.
    """

    def __init__(
        self,
        *,
        rows: int,
        steps: int,
        cross_steps: int,
        self_steps: int,
        mapping: torch.Tensor,
        equalizer: torch.Tensor,
        blend_tokens: tuple[list[int], list[int]] | None,
        threshold: float,
        latent_size: tuple[int, int],
        blend_words: tuple[str, ...] = (),
        region: torch.Tensor | None = None,
    ):
        self.rows, self.steps = rows, steps
        self.cross_steps, self.self_steps = cross_steps, self_steps
        self.mapping, self.equalizer = mapping, equalizer
        self.region = region
        self.blend_tokens = blend_tokens if region is None else None
        self.threshold = threshold
        self.latent_size = latent_size
        self.self_max_tokens = (latent_size[0] * latent_size[1]) // 4
        self.blend_words = blend_words
        self.step = 0
        self.sums: dict[int, torch.Tensor] = {}  # query length -> [rows, query length]

    # -- what a layer needs ----------------------------------------------------------------------

    def wants(self, is_cross: bool, query_len: int) -> bool:
        """Whether a layer must hand over its probabilities at this step."""
        if is_cross:
            return self.step < self.cross_steps or self.blend_tokens is not None
        return self.step < self.self_steps and query_len <= self.self_max_tokens

    def begin(self, j: int) -> None:
        """Called before active sampling step ``j`` (0 = the noisiest)."""
        self.step = j

    def edit(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        """``probs`` [B, heads, Q, K] of one layer -> the probabilities it continues with."""
        b, r = probs.shape[0], self.rows
        if b not in (r, 2 * r):
            return probs  # a batch this controller was not made for
        c0 = b - r  # the conditional half (all of it without guidance)
        src, tgt = probs[c0 : c0 + 1], probs[c0 + 1 : c0 + r]
        if is_cross:
            if self.blend_tokens is not None:
                self._keep_for_blend(probs[c0 : c0 + r])
            if self.step >= self.cross_steps:
                return probs
            mapping = self.mapping.to(probs.device)
            own = (mapping < 0).to(probs.dtype)
            mapped = src[..., mapping.clamp(min=0)]
            new = (mapped * (1 - own) + tgt * own) * self.equalizer.to(probs.device, probs.dtype)
        else:
            new = src.expand_as(tgt)
        probs = probs.clone()
        probs[c0 + 1 : c0 + r] = new
        return probs

    def _keep_for_blend(self, probs: torch.Tensor) -> None:
        assert self.blend_tokens is not None
        source, target = self.blend_tokens
        heads = probs.sum(1)  # [rows, Q, K]
        picked = torch.stack(
            [heads[0, :, source].sum(-1)]
            + [heads[i, :, target].sum(-1) for i in range(1, self.rows)]
        ).float()
        q = picked.shape[1]
        self.sums[q] = self.sums[q] + picked if q in self.sums else picked

    # -- the local blend -------------------------------------------------------------------------

    def mask(self) -> torch.Tensor | None:
        """[rows - 1, 1, h, w] the region each target row may change (the union of its own and the
        source's), or None before any map was kept."""
        if not self.sums:
            return None
        h, w = self.latent_size
        q = min(self.sums, key=lambda n: (abs(math.log(n / BLEND_TOKENS)), n))
        side_h = round(math.sqrt(q * h / w))
        maps = self.sums[q].view(self.rows, 1, side_h, q // side_h)
        maps = F.max_pool2d(maps, kernel_size=3, stride=1, padding=1)
        maps = F.interpolate(maps, size=(h, w))
        maps = maps / maps.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12)
        region = maps > self.threshold
        return (region[:1] | region[1:]).float()

    def blend(self, j: int, x: torch.Tensor) -> torch.Tensor:
        """After active step ``j``: the target rows outside the mask become the source's."""
        if j < round(BLEND_START * self.steps):
            return x
        mask = self.region if self.region is not None else self.mask()
        if mask is None:
            return x
        out = x.clone()
        out[1:] = x[:1] + mask.to(x.device, x.dtype) * (x[1:] - x[:1])
        return out


class ControlledAttention:
    """An attention processor: scaled dot-product attention over a diffusers ``Attention`` layer's
    projections, with the probabilities handed to a :class:`Controller` between the softmax and
    the product with the values when it wants them."""

    def __init__(self, controller: Controller):
        self.controller = controller

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_shape = hidden_states.shape if hidden_states.ndim == 4 else None
        if image_shape is not None:
            b, c, h, w = image_shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, query_len, _ = hidden_states.shape
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads = attn.heads

        if self.controller.wants(is_cross, query_len) or attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
            q, k, v = (attn.head_to_batch_dim(t) for t in (query, key, value))
            q, k = _qk_norm(attn, q, k)
            probs = attn.get_attention_scores(q, k, mask)  # [batch * heads, Q, K]
            probs = probs.view(batch, heads, *probs.shape[1:])
            probs = self.controller.edit(probs, is_cross).flatten(0, 1)
            out = attn.batch_to_head_dim(torch.bmm(probs, v))
        else:
            q, k, v = (
                t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2)
                for t in (query, key, value)
            )
            q, k = _qk_norm(attn, q, k)
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
            out = out.transpose(1, 2).reshape(batch, -1, heads * out.shape[-1]).to(query.dtype)

        out = attn.to_out[1](attn.to_out[0](out))
        if image_shape is not None:
            out = out.transpose(-1, -2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _qk_norm(attn, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # the per-head normalisation of queries and keys some attention layers have (over the last dim)
    if getattr(attn, "norm_q", None) is not None:
        q = attn.norm_q(q)
    if getattr(attn, "norm_k", None) is not None:
        k = attn.norm_k(k)
    return q, k


@contextlib.contextmanager
def installed(unet: torch.nn.Module, controller: Controller) -> Iterator[Controller]:
    """Every attention layer of ``unet`` runs :class:`ControlledAttention` for the ``with`` block;
    the UNet's own processors come back after it, also when it raises."""
    original = dict(unet.attn_processors)
    unet.set_attn_processor({name: ControlledAttention(controller) for name in original})
    try:
        yield controller
    finally:
        unet.set_attn_processor(original)

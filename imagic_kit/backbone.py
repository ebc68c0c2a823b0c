"""The shared diffusion backbone: components plus the few operations every method needs.

The backbone knows no paper. It reads every constant from the component configs: the VAE scaling
(and shift) factor, the latent downsampling factor, latent channels, the number of training
timesteps and the prediction type (``epsilon`` or ``v_prediction``; SD 2.x uses v).

Legend (Ho et al. 2020 / Song et al. 2021 notation):
  x0 / ``latents``   clean latent  z_0 = scaling * (VAE mean - shift)
  x_t                noisy latent  sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
  ``cond``            text-encoder hidden states [B, L, D] (or image embedding [B, 1, D])
  ``uncond``          the same for the empty prompt (classifier-free guidance)
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)


@dataclass
class Backbone:
    """A Stable-Diffusion-style model: UNet, VAE, DDIM-style scheduler, and its conditioner(s).

    Text-conditioned models have ``tokenizer`` and ``text_encoder``; image-conditioned ones
    (SD image variations) have ``image_encoder`` and ``feature_extractor``; a bundle may have both.
    """

    unet: Any
    vae: Any
    scheduler: Any
    tokenizer: Any = None
    text_encoder: Any = None
    image_encoder: Any = None
    feature_extractor: Any = None
    #: Where it came from (alias, folder or hub id) and revision: recorded in every recipe.
    model_id: str = "unknown"
    revision: str | None = None
    #: The model's own CLIP (folder or hub id) that best-of-N ranking and FastEdit's text feature
    #: read; None when it has none.
    clip_path: str | None = None
    #: ``check_input(images) -> message or None``: what a model that knows only some images says
    #: about an input outside them (a warning, not an error).
    check_input: Callable[[list[Any]], str | None] | None = None
    #: ``unknown_words(prompt) -> words``: the words of a prompt outside a small closed vocabulary.
    unknown_words: Callable[[str], list[str]] | None = None
    #: Examples a front end may offer, as (image, prompt) pairs the model edits well.
    examples: list[tuple[Any, str]] = field(default_factory=list)
    #: One sentence on what the model knows, for front ends ("" for a general model).
    note: str = ""
    #: Random weights of a real architecture: for timing, its outputs mean nothing.
    timing_only: bool = False
    #: Objects whose lifetime is the backbone's (a temporary folder holding its CLIP).
    resources: list[Any] = field(default_factory=list, repr=False)
    #: Where the modules run when they are offloaded to the CPU between uses (a pipeline's
    #: ``enable_model_cpu_offload``); None: where the UNet's weights are.
    execution_device: torch.device | None = None
    _uncond_cache: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)

    def inherit(self, other: Backbone) -> Backbone:
        """Take ``other``'s facts about the model (revision, CLIP, checks, examples, note), for a
        backbone made from its modules."""
        self.revision = other.revision
        for name in ("clip_path", "check_input", "examples", "note"):
            setattr(self, name, getattr(other, name))
        self.unknown_words = self.unknown_words or other.unknown_words  # its own tokenizer's first
        self.timing_only = other.timing_only
        self.resources = list(other.resources)
        return self

    # --- constants read from configs --------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        if self.execution_device is not None:
            return self.execution_device
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def resolution(self) -> int:
        size = self.unet.config.sample_size
        size = size[0] if isinstance(size, list | tuple) else size
        return int(size) * self.vae_scale_factor

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler.config.prediction_type)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    @property
    def has(self) -> dict[str, bool]:
        return {
            name: getattr(self, name) is not None
            for name in ("tokenizer", "text_encoder", "image_encoder", "feature_extractor")
        }

    def modules(self) -> dict[str, torch.nn.Module]:
        return {
            n: m
            for n in ("unet", "vae", "text_encoder", "image_encoder")
            if isinstance(m := getattr(self, n), torch.nn.Module)
        }

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Backbone:
        for m in self.modules().values():
            m.to(device=device, dtype=dtype)
        self._uncond_cache.clear()
        return self

    def forget_cached(self) -> None:
        """Drop what was computed for the modules as they were (the empty prompt's embedding):
        after they move to another device or dtype."""
        self._uncond_cache.clear()

    def freeze(self) -> Backbone:
        for m in self.modules().values():
            m.requires_grad_(False)
            m.eval()
        return self

    # --- text ------------------------------------------------------------------------------------

    @property
    def max_tokens(self) -> int:
        return int(self.tokenizer.model_max_length)

    def tokenize(self, prompts: list[str], *, warn: bool = True) -> torch.Tensor:
        """Token ids [B, max_tokens]; prompts that are too long are truncated with a warning."""
        if self.tokenizer is None:
            raise ValueError("this backbone has no tokenizer (an image-conditioned model)")
        if warn:
            for p in prompts:
                n = len(self.tokenizer(p, truncation=False).input_ids)
                if n > self.max_tokens:
                    warnings.warn(
                        f"prompt {p[:60]!r}... is {n} tokens; the text encoder takes {self.max_tokens}, "
                        "so it was truncated",
                        stacklevel=4,
                    )
            if self.unknown_words is not None:
                for p in prompts:
                    if words := self.unknown_words(p):
                        warnings.warn(
                            f"prompt {p!r}: words outside this model's vocabulary: {', '.join(words)}",
                            stacklevel=4,
                        )
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_tokens,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return ids

    def encode_prompt(self, prompt: str | list[str], *, warn: bool = True) -> torch.Tensor:
        """Text-encoder hidden states [B, max_tokens, D] in the backbone's dtype (no gradient)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        ids = self.tokenize(prompts, warn=warn).to(self.text_encoder.device)
        with torch.no_grad():
            return self.text_encoder(ids)[0].to(self.dtype)

    def uncond_embedding(self, batch: int = 1) -> torch.Tensor:
        """The empty prompt's hidden states [batch, L, D] (cached), or zeros for image conditioning."""
        key = ("text",) if self.text_encoder is not None else ("image",)
        if key not in self._uncond_cache:
            if self.text_encoder is not None:
                self._uncond_cache[key] = self.encode_prompt("", warn=False)
            else:
                # SD image variations' negative is an all-zeros embedding.
                self._uncond_cache[key] = torch.zeros(
                    1, 1, self.unet.config.cross_attention_dim, device=self.device, dtype=self.dtype
                )
        return self._uncond_cache[key].expand(batch, -1, -1)

    # --- image embedding (image-conditioned UNets) -------------------------------------------------

    @torch.no_grad()
    def encode_image_embedding(self, images: list[Any]) -> torch.Tensor:
        """Projected CLIP image embedding [B, 1, D] of PIL images, as SD image variations uses it."""
        if self.image_encoder is None or self.feature_extractor is None:
            raise ValueError("this backbone has no image encoder")
        pix = self.feature_extractor(images=images, return_tensors="pt").pixel_values
        enc = self.image_encoder
        emb = enc(pix.to(device=enc.device, dtype=next(enc.parameters()).dtype)).image_embeds
        return emb.unsqueeze(1).to(self.dtype)

    # --- VAE ---------------------------------------------------------------------------------------

    def encode_latents(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> latents [B, C, H/f, W/f] (scaled).

        Uses the posterior mean unless a generator is given, then samples it (on the CPU generator).
        """
        with torch.no_grad():
            dist = self.vae.encode(images.to(device=self.device, dtype=self.vae.dtype)).latent_dist
            if generator is None:
                z = dist.mean
            else:
                noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32)
                z = dist.mean + dist.std * noise.to(dist.mean.device, dist.mean.dtype)
        return ((z - self.shift_factor) * self.scaling_factor).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] -> images [B, 3, H, W] in [-1, 1], float32."""
        with torch.no_grad():
            z = (
                latents.to(device=self.device, dtype=self.vae.dtype) / self.scaling_factor
                + self.shift_factor
            )
            return self.vae.decode(z).sample.float().clamp(-1, 1)

    # --- diffusion --------------------------------------------------------------------------------

    def model_output(
        self, latents: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor
    ) -> torch.Tensor:
        """The UNet's raw output (eps, v or x0 per ``prediction_type``), in float32."""
        t = torch.as_tensor(t, device=latents.device)
        if t.ndim == 0:
            t = t.expand(latents.shape[0])
        out = self.unet(
            latents.to(self.dtype), t, encoder_hidden_states=cond.to(self.dtype), return_dict=False
        )[0]
        return out.float()

    def noise_pred(
        self,
        latents: torch.Tensor,
        t: torch.Tensor | int,
        cond: torch.Tensor,
        uncond: torch.Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Model output with classifier-free guidance, in one batched UNet call.

        ``out = u + w * (c - u)`` (Ho & Salimans 2022), where u and c are the outputs for ``uncond``
        and ``cond``. With ``guidance_scale == 1`` or no ``uncond`` only the conditional pass runs.
        This is the only place guidance is written.
        """
        b = latents.shape[0]
        if cond.shape[0] != b:
            cond = cond.expand(b, -1, -1)
        if uncond is None or guidance_scale == 1.0:
            return self.model_output(latents, t, cond)
        if uncond.shape[0] != b:
            uncond = uncond.expand(b, -1, -1)
        both = self.model_output(torch.cat([latents, latents]), t, torch.cat([uncond, cond]))
        u, c = both.chunk(2)
        return u + guidance_scale * (c - u)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(like.device)[t.to(like.device).long()].float()
        return a.view(-1, *([1] * (like.ndim - 1)))

    def add_noise(
        self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (float32)."""
        a = self._abar(t, latents)
        return a.sqrt() * latents.float() + (1 - a).sqrt() * noise.float()

    def training_target(
        self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """What the UNet is trained to output: eps, v = sqrt(abar) eps - sqrt(1-abar) x0, or x0."""
        pt = self.prediction_type
        if pt == "epsilon":
            return noise.float()
        if pt == "v_prediction":
            a = self._abar(t, latents)
            return a.sqrt() * noise.float() - (1 - a).sqrt() * latents.float()
        if pt == "sample":
            return latents.float()
        raise ValueError(f"unsupported prediction_type {pt!r}")

    def to_x0_eps(
        self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert a model output at timestep t into (x0, eps) estimates, for any prediction type."""
        t = torch.as_tensor(t).reshape(-1)
        a = self._abar(t, x_t)
        x_t = x_t.float()
        pt = self.prediction_type
        if pt == "epsilon":
            eps = output
            x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        elif pt == "v_prediction":
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * output
            eps = a.sqrt() * output + (1 - a).sqrt() * x_t
        elif pt == "sample":
            x0 = output
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        else:
            raise ValueError(f"unsupported prediction_type {pt!r}")
        return x0, eps

    def sample_timesteps(
        self, n: int, generator: torch.Generator, low: int = 0, high: int | None = None
    ) -> torch.Tensor:
        """``n`` timesteps uniform in [low, high) drawn on the CPU generator, moved to the device."""
        high = self.num_train_timesteps if high is None else high
        return torch.randint(low, high, (n,), generator=generator).to(self.device)

    def randn(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Gaussian noise from a CPU generator (so a seed gives the same numbers on any device)."""
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)

    def latent_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        s = self.resolution // self.vae_scale_factor
        return (batch, self.latent_channels, s, s)

    # --- memory levers -----------------------------------------------------------------------------

    def enable_gradient_checkpointing(self) -> None:
        if getattr(self.unet, "_supports_gradient_checkpointing", False):
            self.unet.enable_gradient_checkpointing()

    @contextlib.contextmanager
    def finetuning(self, dropout: bool = False):
        """The UNet's mode for the duration of a fine-tuning ``with`` block: eval mode by default
        (no dropout: the fit reconstructs one image as exactly as it can), train mode (dropout
        active where the UNet has any) with ``dropout=True``; the previous mode is restored after."""
        was = self.unet.training
        self.unet.train(dropout)
        try:
            yield
        finally:
            self.unet.train(was)

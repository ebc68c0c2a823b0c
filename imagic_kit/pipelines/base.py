"""Pipelines a diffusers user recognises: one class per registered method, on one base.

::

    from imagic_kit import ImagicPipeline
    pipe = ImagicPipeline.from_pretrained("tiny-shapes")        # or "sd15", a folder, a hub id
    out = pipe("in.png", "a blue circle on a gray background", generator=torch.manual_seed(0))
    out.images[0].save("out.png")
    again = pipe("in.png", "a blue circle on a gray background", eta=0.8)   # reuses the fit

:class:`EditPipeline` is a ``diffusers.DiffusionPipeline`` whose registered modules are the model's
(unet, vae, scheduler, tokenizer, text_encoder, image_encoder, feature_extractor); its methods run
the toolkit's one lifecycle (``lifecycle.py``). ``ImagicPipeline``, ``FastEditPipeline``,
``PTIPipeline``, ``NullTextPipeline``, ``DecorPipeline``, ``SDEditPipeline`` and ``DDIMPipeline``
are made from the registry (:func:`pipeline_class`): a method added to the registry has its
``<Title>Pipeline`` with no code of its own.

What differs from a text-to-image pipeline, and why:

- ``pipe.fit(image, prompt)`` learns what the method needs from the image (an inversion, embeddings,
  a LoRA) and returns the :class:`~imagic_kit.artifacts.Fit`; ``pipe(image, prompt, fit=fit)``
  samples from it. Without ``fit=`` the pipeline fits, and keeps its last few fits
  (:class:`~imagic_kit.lifecycle.FitCache`) under the key of what a fit depends on: a call that
  changes only sample-stage values or the seed reuses one, and the output says so (``fit_reused``).
- ``generator``: the toolkit draws all noise on the CPU from generators seeded with the generator's
  seed (``generator.initial_seed()``), so ``torch.Generator().manual_seed(s)`` gives the same
  pixels as ``seed=s`` and as ``imagic-kit edit --seed s``, on any device. A call that reuses a
  kept fit samples with its seed from the fit made with another (``recipe["fit_seed"]``), as
  ``imagic-kit edit --artifacts`` does.
- ``callback_on_step_end(pipe, step, timestep, tensors)`` is called after every sampling step with
  the tensors named in ``callback_on_step_end_tensor_inputs`` (``latents``) and may return changed
  ones. With best of N the candidates are drawn in batches, and each batch's sampling calls it.
- ``.to()`` keeps the VAE in float32 (half-precision VAEs give black or NaN images on several
  checkpoints); ``save_pretrained`` writes a stock ``StableDiffusionPipeline`` folder (with its
  image encoder where the model has one) that diffusers and this toolkit load.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers import DiffusionPipeline

from ..artifacts import Fit
from ..backbone import Backbone
from ..errors import ConfigError
from ..fit_cache import FitCache
from ..lifecycle import fit_only, run
from ..registry import available_methods, get_method
from ..request import prepare
from .modules import ModuleHandling
from .output import OUTPUT_TYPES, STEP_END_TENSORS, EditPipelineOutput, convert


class EditPipeline(ModuleHandling, DiffusionPipeline):
    """The base of every method's pipeline: the model's modules, registered as diffusers does, and
    the edit lifecycle. Use a method's class (``ImagicPipeline``), or this one with ``method=``."""

    model_cpu_offload_seq = "text_encoder->image_encoder->unet->vae"
    _optional_components = ["tokenizer", "text_encoder", "image_encoder", "feature_extractor"]
    #: The registered method this class runs (None on the base class).
    method: str | None = None
    #: Fits kept by a pipeline (the least recently used goes first).
    fit_cache_size: int = 4

    def __init__(
        self,
        unet: Any,
        vae: Any,
        scheduler: Any,
        tokenizer: Any = None,
        text_encoder: Any = None,
        image_encoder: Any = None,
        feature_extractor: Any = None,
    ):
        super().__init__()
        from ..models import from_components

        parts = dict(
            unet=unet,
            vae=vae,
            scheduler=scheduler,
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
        )
        # the editing DDIM scheduler, the vocabulary check of small tokenizers, frozen modules
        self.backbone = from_components(parts, model_id="pipeline").freeze()
        self.register_modules(**{**parts, "scheduler": self.backbone.scheduler})
        self.fits = FitCache(self.fit_cache_size)

    # --- building -----------------------------------------------------------------------------

    @classmethod
    def _for_method(cls, method: str | None) -> type[EditPipeline]:
        if cls.method is not None:
            if method is not None and get_method(method).name != cls.method:
                raise ConfigError(
                    f"{cls.__name__} runs {cls.method!r}, not {method!r}; use "
                    f"EditPipeline.from_pretrained(..., method={method!r}) or "
                    f"{get_method(method).display_name}Pipeline"
                )
            return cls
        if method is None:
            raise ConfigError(
                f"name the method: EditPipeline.from_pretrained(..., method=...), one of "
                f"{', '.join(available_methods())}, or use its pipeline class (ImagicPipeline, ...)"
            )
        from . import pipeline_class

        return pipeline_class(method)

    @classmethod
    def from_backbone(
        cls, backbone: Backbone, *, method: str | None = None, fits: FitCache | None = None
    ) -> EditPipeline:
        """A pipeline over a loaded :class:`~imagic_kit.backbone.Backbone` (its modules and model
        id shared, not copied). ``fits``: a fit cache to share with other pipelines."""
        klass = cls._for_method(method)
        pipe = klass(
            unet=backbone.unet,
            vae=backbone.vae,
            scheduler=backbone.scheduler,
            tokenizer=backbone.tokenizer,
            text_encoder=backbone.text_encoder,
            image_encoder=backbone.image_encoder,
            feature_extractor=backbone.feature_extractor,
        )
        pipe.register_modules(scheduler=backbone.scheduler)  # already the editing DDIM
        pipe.backbone = backbone
        if fits is not None:
            pipe.fits = fits
        return pipe

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Any = "tiny-shapes",
        *,
        method: str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        **kwargs: Any,
    ) -> EditPipeline:
        """Load what ``--model`` takes: a preset (``tiny-shapes``, ``sd15``, ...), a diffusers
        folder or a hub id. ``torch_dtype``: float16 on CUDA and float32 on the CPU by default;
        ``device``: CUDA when there is one, by default (as the command line)."""
        from ..models import load_backbone

        if kwargs:
            raise ConfigError(
                f"from_pretrained does not take {', '.join(sorted(kwargs))}; it takes method, "
                "torch_dtype, device, revision and local_files_only. For other loading options "
                "load a diffusers pipeline and pass it to from_pipe()"
            )
        klass = cls._for_method(method)
        bb = load_backbone(
            pretrained_model_name_or_path,
            device=device,
            dtype=torch_dtype,
            revision=revision,
            local_files_only=local_files_only,
        )
        return klass.from_backbone(bb)

    @classmethod
    def from_pipe(
        cls,
        pipeline: Any,
        *,
        method: str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        **components: Any,
    ) -> EditPipeline:
        """A pipeline over the modules of a loaded one (a ``StableDiffusionPipeline``, an image
        variations pipeline, another :class:`EditPipeline`): the same module objects, nothing
        copied or reloaded. ``components`` replace some of them (``unet=...``), as in diffusers."""
        from ..models import from_components, place, resolve_dtype

        klass = cls._for_method(method)
        if isinstance(pipeline, EditPipeline) and not components:
            bb = pipeline.backbone  # the same backbone: its model id, CLIP, caches
        else:
            if not hasattr(pipeline, "components"):
                raise ConfigError(
                    f"from_pipe takes a loaded diffusers pipeline, got {type(pipeline).__name__}"
                )
            parts = {**dict(pipeline.components), **components}
            name = str(getattr(pipeline, "name_or_path", None) or "pipeline")
            if isinstance(pipeline, EditPipeline):
                name = pipeline.backbone.model_id
            weights = sorted(
                k for k in components if k in ("unet", "vae", "text_encoder", "image_encoder")
            )
            if weights:  # other weights: the recipe and saved fits must not name the old model
                name = f"{name} (+{', '.join(weights)})"
            bb = from_components(parts, model_id=name)
            if isinstance(pipeline, EditPipeline):
                bb.inherit(pipeline.backbone)
        # as load_backbone places a model: frozen, the VAE in float32
        dtype = resolve_dtype(torch_dtype, bb.device) if torch_dtype is not None else bb.dtype
        place(bb, bb.device, dtype)
        return klass.from_backbone(bb)

    # --- diffusers' module handling ------------------------------------------------------------

    def _method(self, fields: dict[str, Any] | None = None) -> str:
        if fields and "method" in fields:
            raise ConfigError(
                f"{type(self).__name__} runs {self.method!r}; for another method use its pipeline "
                f"class, or {type(self).__name__}.from_pipe(pipe, method=...) shares this model"
            )
        if self.method is None:
            raise ConfigError(
                "EditPipeline runs no method of its own: use a method's class (ImagicPipeline, ...) "
                "or EditPipeline.from_pretrained(model, method=...)"
            )
        return self.method

    def _progress(self, progress: bool | None) -> bool:
        if progress is not None:
            return progress
        return not getattr(self, "_progress_bar_config", {}).get("disable", False)

    @staticmethod
    def _seed(generator: Any, seed: int | None) -> int | None:
        if generator is None:
            return seed
        if isinstance(generator, list | tuple):
            if len(generator) != 1:
                raise ConfigError(
                    "pass one generator: the candidates and images of an edit are drawn from one "
                    "seed (num_images_per_prompt sets how many)"
                )
            generator = generator[0]
        if not isinstance(generator, torch.Generator):
            raise ConfigError(
                f"generator must be a torch.Generator, got {type(generator).__name__}"
            )
        if seed is not None and seed != generator.initial_seed():
            raise ConfigError("give either generator= or seed=, not two different seeds")
        if generator.initial_seed() >= 2**63:  # a generator seeded by .seed(): out of range
            raise ConfigError(
                f"the generator's seed {generator.initial_seed()} is over 2**63-1; seed it with "
                "generator.manual_seed(n) for a seed the edit can record and repeat"
            )
        return generator.initial_seed()

    def _request(
        self, image, prompt, source_prompt, generator, seed, config, preset, save_artifacts, resize,
        fields, **lifecycle,
    ):  # fmt: skip
        """The call's arguments checked into a request (``request.prepare``), the method and the
        seed taken from the pipeline and the generator."""
        return prepare(
            image,
            prompt,
            method=self._method(fields),
            source_prompt=source_prompt,
            seed=self._seed(generator, seed),
            config=config,
            preset=preset,
            save_artifacts=save_artifacts,
            resize=resize,
            **lifecycle,
            **fields,
        )

    def fit(
        self,
        image: Any,
        prompt: str,
        *,
        source_prompt: str | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        config: Any = None,
        preset: str | None = None,
        save_artifacts: str | os.PathLike | None = None,
        resize: str = "crop",
        progress: bool | None = None,
        callback: Any = None,
        **fit_fields: Any,
    ) -> Fit:
        """Learn what the method needs from ``image`` (and ``prompt`` where its fit depends on
        it), keep it for later calls and return it. ``**fit_fields``: config fields, as ``edit``."""
        req = self._request(
            image, prompt, source_prompt, generator, seed, config, preset, save_artifacts, resize,
            fit_fields,
        )  # fmt: skip
        try:
            return fit_only(
                self.backbone,
                req,
                fits=self.fits,
                progress=self._progress(progress),
                callback=callback,
            )
        finally:
            self.maybe_free_model_hooks()

    def __call__(
        self,
        image: Any,
        prompt: str,
        *,
        fit: Fit | str | os.PathLike | None = None,
        source_prompt: str | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        seed: int | None = None,
        num_inference_steps: int | None = None,
        callback_on_step_end: Any = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] | list[str] = ("latents",),
        output_type: str = "pil",
        return_dict: bool = True,
        config: Any = None,
        preset: str | None = None,
        save_artifacts: str | os.PathLike | None = None,
        resize: str = "crop",
        progress: bool | None = None,
        callback: Any = None,
        **fields: Any,
    ) -> EditPipelineOutput | tuple:
        """Edit ``image`` (a path, a PIL image, or a list of them for methods taking several) to
        match ``prompt``.

        ``fit``: a fit from :meth:`fit` or a saved one (folder); its fit-stage settings are used,
        so only sample-stage fields need giving. Without it, a kept fit is reused when one matches,
        else the method fits. ``**fields``, ``config`` and ``preset``: the method's config, as
        ``edit()`` takes them. Returns :class:`EditPipelineOutput` (a tuple of its fields with
        ``return_dict=False``)."""
        if output_type not in OUTPUT_TYPES:
            raise ConfigError(
                f"output_type={output_type!r}: use one of {', '.join(OUTPUT_TYPES)} (the edit is "
                "chosen among decoded images, so latents are not an output)"
            )
        wanted = tuple(callback_on_step_end_tensor_inputs or ())
        bad = [k for k in wanted if k not in STEP_END_TENSORS]
        if bad:
            raise ConfigError(
                f"callback_on_step_end_tensor_inputs: {', '.join(bad)} not available; "
                f"choose from {', '.join(STEP_END_TENSORS)}"
            )
        if num_inference_steps is not None:
            fields["num_inference_steps"] = num_inference_steps
        req = self._request(
            image, prompt, source_prompt, generator, seed, config, preset, save_artifacts, resize,
            fields, artifacts=fit, fit_settings_from_artifacts=True,
        )  # fmt: skip
        step_end = None
        if callback_on_step_end is not None:

            def step_end(step: int, t: int, tensors: dict[str, Any]) -> dict[str, Any] | None:
                return callback_on_step_end(self, step, t, {k: tensors[k] for k in wanted})

        try:
            r = run(
                self.backbone,
                req,
                fits=self.fits,
                progress=self._progress(progress),
                callback=callback,
                step_end=step_end,
            )
        finally:
            self.maybe_free_model_hooks()
        assert r is not None
        out = EditPipelineOutput(
            images=convert(r.images, output_type),
            fit=r.fit,
            recipe=r.recipe,
            timings=r.timings,
            fit_reused=r.fit_reused,
            seed=r.seed,
            candidates=r.candidates or None,
            ranking=r.ranking,
        )
        return out if return_dict else out.to_tuple()

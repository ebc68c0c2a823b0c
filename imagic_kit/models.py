"""Where models come from: a backbone preset or embedded alias, a local diffusers folder, a hub id,
or an existing diffusers pipeline object. All end in the same :class:`Backbone`.

Backbone presets are ``configs/backbones/<name>.yaml``: either ``model: <hub id or folder>`` (with
optional ``revision``), or ``build:`` with component configs from which a random-weight model is
made (tiny models for tests, and the SD 1.5 architecture for timing without weights).

Device and dtype are chosen here, once: ``device=None`` picks CUDA when available, else the CPU;
``dtype=None`` is float16 on CUDA and float32 elsewhere. The VAE stays float32 (fp16 VAEs give
black or NaN images on several checkpoints); trainable tensors are always float32 (optim.py).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from .backbone import Backbone
from .config import configs_dir
from .errors import ConfigError, ModelNotAvailableError
from .paths import looks_like_hub_id
from .progress import quiet_loading

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
#: The DDIM settings nearly every editing implementation uses on top of the model's own betas.
EDITING_SCHEDULER = {"clip_sample": False, "set_alpha_to_one": False}
COMPONENTS = (
    "unet",
    "vae",
    "scheduler",
    "tokenizer",
    "text_encoder",
    "image_encoder",
    "feature_extractor",
)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"device {device!r} is not a torch device; use cpu, cuda, cuda:1 or mps"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r}: CUDA is not available on this machine; use --device cpu"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            "use cuda:0 .. or cpu"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {device!r}: MPS is not available on this machine; use --device cpu"
        )
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ConfigError(
                f"dtype {dtype} is not a model dtype; use float32, float16 or bfloat16"
            )
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is unknown; choose one of: float32, float16, bfloat16")
    return DTYPES[dtype]


def backbone_presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted((configs_dir() / "backbones").glob("*.yaml"))}


def read_preset(name: str) -> dict[str, Any]:
    return yaml.safe_load(backbone_presets()[name].read_text()) or {}


def load_backbone(
    model: Any = "tiny-shapes",
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
) -> Backbone:
    """Load a backbone from a preset name, a local folder, a hub id, or a diffusers pipeline.

    Raises :class:`ModelNotAvailableError` naming the model and how to get it when it is neither
    local nor downloadable. An explicit ``IMAGIC_KIT_NUM_THREADS`` is applied here too (the CLI
    applies the whole thread policy), so parallel Python jobs do not oversubscribe the CPU.
    """
    if os.environ.get("IMAGIC_KIT_NUM_THREADS"):
        from .threads import configure_threads

        configure_threads()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if dev.type == "cpu" and dt != torch.float32:
        warnings.warn(
            f"{str(dt).removeprefix('torch.')} on the CPU is several times slower than float32 and "
            "saves nothing worth it; leave the dtype out (float32 is the CPU default)",
            stacklevel=2,
        )
    hub_id = _hub_id(model)
    if hub_id is not None:  # before the model stack loads: offline, fail in seconds
        local_files_only = _offline(hub_id, revision, local_files_only)
    with quiet_loading():
        return place(_load(model, revision, local_files_only, dt), dev, dt)


def _hub_id(model: Any) -> str | None:
    """The hub id that ``model`` (a preset name or a hub id) would download, else None."""
    if not isinstance(model, str) or Path(model).is_dir():
        return None
    if model in backbone_presets():
        target = read_preset(model).get("model")
        return target if isinstance(target, str) and not Path(target).is_dir() else None
    return model if looks_like_hub_id(model) else None


def _offline(model: str, revision: str | None, local_files_only: bool | None) -> bool:
    """Whether to read ``model`` from the local cache only: when asked (``HF_HUB_OFFLINE``) or
    when the hub cannot be reached. Offline, a model missing from the cache fails here, at once,
    instead of after a minute of connection retries."""
    if local_files_only is None:
        local_files_only = _env_offline()
    if local_files_only or Path(model).is_dir() or hub_reachable():
        return bool(local_files_only)
    try:
        _model_index(model, revision, True)
    except ModelNotAvailableError:
        raise _not_available(model, ConnectionError("no connection to the hub")) from None
    return True


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")


def _load(
    model: Any, revision: str | None, local_files_only: bool | None, dt: torch.dtype
) -> Backbone:
    if hasattr(model, "components") and not isinstance(model, str | os.PathLike):
        bb = from_components(
            dict(model.components), model_id=getattr(model, "name_or_path", None) or "pipeline"
        )
    elif isinstance(model, str | os.PathLike) and Path(model).is_dir():
        bb = _from_pretrained(
            str(Path(model).resolve()), revision=None, local_files_only=True, dtype=dt
        )
    elif isinstance(model, str) and model in backbone_presets():
        spec = read_preset(model)
        if "build" in spec:
            bb = build_from_config(spec["build"], model_id=model)
        elif "embedded" in spec:
            bb = load_embedded(spec["embedded"], dtype=dt)
        elif "model" in spec:
            bb = _from_pretrained(
                spec["model"],
                revision=revision or spec.get("revision"),
                local_files_only=local_files_only,
                dtype=dt,
            )
            bb.model_id = model if spec["model"] == model else f"{model} ({spec['model']})"
        else:
            raise ConfigError(f"backbone preset {model!r} has neither 'model' nor 'build'")
        bb.extras["timing_only"] = bool(spec.get("timing_only", False))
    elif isinstance(model, str) and looks_like_hub_id(model):
        bb = _from_pretrained(model, revision=revision, local_files_only=local_files_only, dtype=dt)
    else:
        raise ModelNotAvailableError(
            f"model {model!r} is not a preset ({', '.join(backbone_presets())}), a local diffusers "
            "folder, or a hub id like 'org/name'; check the spelling or the path"
        )
    return bb


def place(bb: Backbone, device: torch.device, dtype: torch.dtype) -> Backbone:
    """Move to device/dtype (VAE kept float32) and freeze every module."""
    for name, m in bb.modules().items():
        want = torch.float32 if name == "vae" else dtype
        m.to(device=device)
        if next(m.parameters()).dtype != want:
            m.to(dtype=want)
    bb._uncond_cache.clear()
    return bb.freeze()


EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"


def embedded_path(name: str, part: str = "text2img") -> Path:
    """Folder of an embedded model's part: ``text2img`` (a StableDiffusionPipeline folder),
    ``variations`` (the image encoder and feature extractor of a
    StableDiffusionImageVariationPipeline, whose UNet, VAE and scheduler are text2img's: see
    :func:`variations_pipeline`) or ``clip`` (CLIPModel)."""
    return EMBEDDED_DIR / name / part


def variations_pipeline(name: str = "tiny-shapes", dtype: torch.dtype = torch.float32):
    """The embedded model as a stock ``StableDiffusionImageVariationPipeline``: the variations
    folder's image encoder and feature extractor with the text2img UNet, VAE and scheduler (one
    UNet is trained on both conditionings, so the package ships it once)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImageVariationPipeline,
        UNet2DConditionModel,
    )

    text2img, variations = embedded_path(name), embedded_path(name, "variations")
    if not (text2img / "unet").is_dir() or not (variations / "image_encoder").is_dir():
        raise ModelNotAvailableError(
            f"the embedded model {name!r} has no image-variations parts in this install "
            f"({variations.parent}); reinstall imagic-kit"
        )
    return StableDiffusionImageVariationPipeline.from_pretrained(
        str(variations),
        unet=UNet2DConditionModel.from_pretrained(text2img / "unet", torch_dtype=dtype),
        vae=AutoencoderKL.from_pretrained(text2img / "vae", torch_dtype=dtype),
        scheduler=DDIMScheduler.from_pretrained(text2img / "scheduler"),
        safety_checker=None,
        requires_safety_checker=False,
        torch_dtype=dtype,
    )


def load_embedded(name: str, dtype: torch.dtype = torch.float32) -> Backbone:
    """The embedded model: text-to-image components plus the variations model's image encoder."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    text2img, variations = embedded_path(name), embedded_path(name, "variations")
    if (
        not (text2img / "model_index.json").is_file()
        or not (variations / "model_index.json").is_file()
    ):
        raise ModelNotAvailableError(
            f"the embedded model {name!r} is not in this install ({text2img.parent}); "
            "reinstall imagic-kit, or train it with `python scripts/train_tiny_shapes.py all`"
        )
    bb = _from_pretrained(str(text2img), revision=None, local_files_only=True, dtype=dtype)
    bb.image_encoder = CLIPVisionModelWithProjection.from_pretrained(variations / "image_encoder")
    bb.feature_extractor = CLIPImageProcessor.from_pretrained(variations / "feature_extractor")
    bb.model_id = name
    bb.extras["clip_path"] = str(embedded_path(name, "clip"))
    bb.extras["world"] = "shapes"  # all it knows: api.edit warns when an input is something else
    return bb


def editing_scheduler(scheduler: Any):
    """The DDIM scheduler editing runs with, made from any scheduler's config (its betas)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config, **EDITING_SCHEDULER)


def from_components(
    components: dict[str, Any], model_id: str = "pipeline", revision: str | None = None
) -> Backbone:
    """A backbone from a diffusers pipeline's components (the scheduler becomes DDIM)."""
    if components.get("unet") is None or components.get("vae") is None:
        raise ModelNotAvailableError(
            f"model {model_id!r} has no UNet or VAE; it is not a Stable-Diffusion-style pipeline"
        )
    sched = editing_scheduler(components["scheduler"])
    kw = {k: components.get(k) for k in COMPONENTS if k != "scheduler"}
    bb = Backbone(scheduler=sched, model_id=str(model_id), revision=revision, **kw)
    if bb.tokenizer is not None:
        from .tokenizer import unknown_words

        # Small closed-vocabulary models (ours) warn on words they do not know.
        if len(bb.tokenizer) < 5000:
            bb.extras["unknown_words"] = lambda text, tok=bb.tokenizer: unknown_words(tok, text)
    return bb


def _from_pretrained(
    model: str, *, revision: str | None, local_files_only: bool | None, dtype: torch.dtype
) -> Backbone:
    if local_files_only is None:  # a hub id was resolved by load_backbone's _offline already
        local_files_only = _env_offline()
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": local_files_only}
    if revision:
        kwargs["revision"] = revision
    try:
        index = _model_index(model, revision, local_files_only)
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = _load_preferring_safetensors(DiffusionPipeline, model, kwargs)
    except ModelNotAvailableError:
        raise
    except (OSError, ValueError, EnvironmentError) as e:  # noqa: UP024 - hub errors subclass OSError
        raise _not_available(model, e) from None
    except Exception as e:  # connection errors from requests/httpx vary by version
        if "connect" in type(e).__name__.lower() or "offline" in str(e).lower():
            raise _not_available(model, e) from None
        raise
    return from_components(dict(pipe.components), model_id=model, revision=revision)


_HUB_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face hub (``HF_ENDPOINT``) opens within ``timeout``
    seconds, name lookup included. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) the hub cannot
    be probed directly and counts as reachable. The answer is kept for the process."""
    global _hub_answer
    if _hub_answer is not None:
        return _hub_answer
    if any(os.environ.get(v) for v in _HUB_PROXY_VARS):
        _hub_answer = True
        return True
    import socket
    import threading
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    answer = [False]

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer[0] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # a name lookup can outlast any socket timeout
    t.start()
    t.join(timeout + 0.5)
    _hub_answer = answer[0]
    return _hub_answer


_hub_answer: bool | None = None


def _load_preferring_safetensors(pipeline_cls, model: str, kwargs: dict[str, Any]):
    """Load with safetensors weights only; when the model has none, say so and load its pickle
    (``.bin``) weights, which can run code when read: load those only from sources you trust."""
    try:
        return pipeline_cls.from_pretrained(model, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as e:
        if "safetensors" not in str(e).lower():
            raise
    warnings.warn(
        f"model {model!r} has no safetensors weights; loading its pickle (.bin) weights, which "
        "can run code when read: use them only from a source you trust (convert them with "
        "pipe.save_pretrained(DIR) to get safetensors)",
        stacklevel=3,
    )
    return pipeline_cls.from_pretrained(model, **kwargs)  # each part's safetensors, else .bin


def _model_index(model: str, revision: str | None, local_files_only: bool) -> dict[str, Any]:
    import json

    p = Path(model)
    if p.is_dir():
        f = p / "model_index.json"
        if not f.is_file():
            raise ModelNotAvailableError(
                f"folder '{model}' has no model_index.json; pass a diffusers pipeline folder (save_pretrained output)"
            )
        return json.loads(f.read_text())
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(
            model, "model_index.json", revision=revision, local_files_only=local_files_only
        )
    except Exception as e:
        raise _not_available(model, e) from None
    return json.loads(Path(path).read_text())


def _first_sentence(err: Exception, limit: int = 160) -> str:
    """The first sentence of an exception's text, cut at a word boundary: a cause, not a wall."""
    text = (str(err).strip().splitlines() or [""])[0] or type(err).__name__
    text = text.split(". ")[0].rstrip(".")
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text


def _not_available(model: str, err: Exception) -> ModelNotAvailableError:
    first = _first_sentence(err)
    if Path(model).exists():
        return ModelNotAvailableError(
            f"model folder '{model}' could not be loaded ({first}); check it is a complete diffusers folder"
        )
    return ModelNotAvailableError(
        f"model {model!r} is not available offline: it is not in the local Hugging Face cache and the hub "
        f"cannot be reached ({first}). On a machine with internet run `hf download {model}` "
        "(or pipe.save_pretrained(DIR)), copy the folder here and pass --model DIR"
    )


# --- random-weight models built from config --------------------------------------------------------


def build_from_config(build: dict[str, Any], model_id: str = "built") -> Backbone:
    """Build a random-weight SD-architecture backbone from component configs (deterministic in ``seed``).

    ``build`` holds ``unet``, ``vae`` and ``scheduler`` configs, and a text conditioner
    (``tokenizer`` + ``text_encoder``), an image conditioner (``image_encoder`` +
    ``feature_extractor``, as SD image variations), or both. ``clip`` (with an image conditioner)
    adds a whole CLIP model whose vision tower is the image encoder and whose text tower is built
    from ``clip.text`` with a vocabulary of ``clip.words``: the model's own CLIP
    (``extras["clip_path"]``, a temporary folder), which FastEdit's text feature and the ranking
    read, as the real model's CLIP ViT-L/14 would be.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    comps: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(build.get("seed", 0)))
        if "tokenizer" in build:
            from transformers import CLIPTextConfig, CLIPTextModel

            from .tokenizer import build_tokenizer

            tok_cfg = build["tokenizer"]
            tokenizer = build_tokenizer(tok_cfg["words"], tok_cfg["model_max_length"])
            te_kwargs = dict(
                vocab_size=len(tokenizer),
                max_position_embeddings=tok_cfg["model_max_length"],
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            te_kwargs.update(build["text_encoder"])  # e.g. SD's real vocab_size, for timing
            te_cfg = CLIPTextConfig(**te_kwargs)
            comps.update(tokenizer=tokenizer, text_encoder=CLIPTextModel(te_cfg))
        if "image_encoder" in build:
            from transformers import (
                CLIPImageProcessor,
                CLIPVisionConfig,
                CLIPVisionModelWithProjection,
            )

            comps["image_encoder"] = CLIPVisionModelWithProjection(
                CLIPVisionConfig(**build["image_encoder"])
            )
            comps["feature_extractor"] = CLIPImageProcessor(**build["feature_extractor"])
        comps["vae"] = AutoencoderKL(**build["vae"])
        comps["unet"] = UNet2DConditionModel(**build["unet"])
        clip = _build_clip(build, comps) if "clip" in build else None
    comps["scheduler"] = DDIMScheduler(**build.get("scheduler", {}))
    bb = from_components(comps, model_id=model_id)
    if clip is not None:
        bb.extras["clip_folder"] = clip  # kept alive with the backbone; removed with it
        bb.extras["clip_path"] = clip.name
    return bb


def _build_clip(build: dict[str, Any], comps: dict[str, Any]):
    """A random CLIP text tower joined to the built image encoder, saved to a temporary folder."""
    import tempfile

    from transformers import CLIPConfig, CLIPModel

    from .tokenizer import build_tokenizer

    if "image_encoder" not in comps:
        raise ConfigError("a built model's clip needs its image_encoder (the CLIP's vision tower)")
    spec = build["clip"]
    tokenizer = build_tokenizer(spec["words"], 77)
    vision = {k: v for k, v in build["image_encoder"].items() if k != "projection_dim"}
    text = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **spec["text"],
    )
    dim = build["image_encoder"]["projection_dim"]
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=dim))
    encoder = comps["image_encoder"]
    model.vision_model.load_state_dict(encoder.vision_model.state_dict())
    model.visual_projection.load_state_dict(encoder.visual_projection.state_dict())
    folder = tempfile.TemporaryDirectory(prefix="imagic-kit-clip-")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a model being built, not a download: no bar
    try:
        model.save_pretrained(folder.name)
    finally:
        hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder.name)
    comps["feature_extractor"].save_pretrained(folder.name)
    return folder


def to_pipeline(bb: Backbone, kind: str | None = None):
    """The backbone's components as a stock diffusers pipeline (no copies): ``"text"`` gives a
    ``StableDiffusionPipeline``, ``"image"`` a ``StableDiffusionImageVariationPipeline``; by default
    the one the backbone can drive (text when it has a text encoder)."""
    from diffusers import StableDiffusionImageVariationPipeline, StableDiffusionPipeline

    kind = kind or ("text" if bb.text_encoder is not None else "image")
    common = dict(
        vae=bb.vae,
        unet=bb.unet,
        scheduler=bb.scheduler,
        safety_checker=None,
        requires_safety_checker=False,
    )
    if kind == "image":
        return StableDiffusionImageVariationPipeline(
            image_encoder=bb.image_encoder, feature_extractor=bb.feature_extractor, **common
        )
    return StableDiffusionPipeline(
        text_encoder=bb.text_encoder,
        tokenizer=bb.tokenizer,
        feature_extractor=bb.feature_extractor,
        image_encoder=bb.image_encoder,
        **common,
    )


def save_pipeline(bb: Backbone, folder: str | Path, kind: str | None = None) -> Path:
    """Save as a standard diffusers pipeline folder (see :func:`to_pipeline`)."""
    to_pipeline(bb, kind).save_pretrained(str(folder))
    return Path(folder)

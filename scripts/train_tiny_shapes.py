#!/usr/bin/env python3
"""Train the embedded tiny-shapes model from a seed, in stages that each save their result.

    python scripts/train_tiny_shapes.py clip  [--minutes 10]
    python scripts/train_tiny_shapes.py vae   [--minutes 40]
    python scripts/train_tiny_shapes.py unet  [--minutes 60]
    python scripts/train_tiny_shapes.py bundle          # write model_index.json files, symlinks, scheduler
    python scripts/train_tiny_shapes.py all             # every stage in order

Each stage writes its component(s) in standard diffusers/transformers layout into
``imagic_kit/embedded/tiny-shapes/`` (committed, shipped as package data) and keeps a resume
checkpoint in ``build/tiny-shapes/`` (local): running a stage again continues where it stopped,
for another ``--minutes`` (or ``--steps``). ``--fresh`` restarts it. The wall time and figures of
every run are appended to ``imagic_kit/embedded/tiny-shapes/training.json`` (the model card's source).

Components:
- CLIP (contrastive, on the world): ``clip/`` (CLIPModel: the toolkit's CLIP score, FastEdit's
  text feature), the diffusion model's ``text_encoder`` (CLIPTextModel) and ``tokenizer``, and the
  variations model's ``image_encoder`` (CLIPVisionModelWithProjection) + ``feature_extractor``;
- ``vae``: AutoencoderKL 64x64x3 -> 16x16x8, L1 + MSE + tiny KL;
- ``unet``: one UNet2DConditionModel trained on both conditionings: text hidden states
  (text-to-image) and the projected CLIP image embedding as one token (image variations), with
  10% unconditional dropout each (empty prompt / zeros) so classifier-free guidance works. The two
  pipelines share it (``imagic_kit.models.variations_pipeline`` builds the variations pipeline
  from the variations folder's image encoder and the text2img UNet, VAE and scheduler).
Threads follow the project's policy (imagic_kit.threads); give training the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imagic_kit.clip_score import clip_features  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "imagic_kit" / "embedded" / "tiny-shapes"
WORK = ROOT / "build" / "tiny-shapes"
TEXT2IMG, VARIATIONS, CLIPDIR = BUNDLE / "text2img", BUNDLE / "variations", BUNDLE / "clip"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
MAX_TOKENS = 16
EMBED = 64
LATENT_CHANNELS = 8

TEXT_CFG = dict(
    hidden_size=EMBED,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS,
    projection_dim=EMBED,
)
VISION_CFG = dict(
    hidden_size=EMBED,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=64,
    patch_size=8,
    projection_dim=EMBED,
)
VAE_CFG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=LATENT_CHANNELS,
    block_out_channels=[32, 64, 96],
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    layers_per_block=1,
    norm_num_groups=16,
    sample_size=64,
    mid_block_add_attention=False,
)
UNET_CFG = dict(
    sample_size=16,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    block_out_channels=[32, 64, 128],
    layers_per_block=1,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    cross_attention_dim=EMBED,
    attention_head_dim=4,
    norm_num_groups=16,
)
SCHEDULER_CFG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
    prediction_type="epsilon",
)


# --- data ------------------------------------------------------------------------------------------


def scenes_batch(rng: np.random.Generator, n: int):
    from imagic_kit.shapes import random_scene, render

    scenes = [random_scene(rng) for _ in range(n)]
    imgs = np.stack([np.asarray(render(s)[0]) for s in scenes])
    return scenes, torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def clip_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> CLIP-normalised pixels (what the saved feature extractor produces at 64 px)."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def pick_captions(rng: np.random.Generator, scenes, p_short: float = 0.3) -> list[str]:
    return [s.caption(with_background=rng.random() >= p_short) for s in scenes]


# --- checkpoints -----------------------------------------------------------------------------------


def save_ckpt(stage: str, state: dict) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = WORK / f"{stage}.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, WORK / f"{stage}.pt")


def load_ckpt(stage: str) -> dict | None:
    p = WORK / f"{stage}.pt"
    return torch.load(p, weights_only=False) if p.is_file() else None


def record(stage: str, info: dict) -> None:
    path = BUNDLE / "training.json"
    data = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    data["runs"].append({"stage": stage, **info})
    path.write_text(json.dumps(data, indent=2) + "\n")


def budget(args, steps_done: int):
    """-> stop_fn(step, t0) -> bool for this run's time or step budget."""
    deadline = args.minutes * 60 if args.minutes else None
    target = steps_done + args.steps if args.steps else None

    def stop(step: int, t0: float) -> bool:
        return (target is not None and step >= target) or (
            deadline is not None and time.time() - t0 >= deadline
        )

    return stop


def cosine_lr(opt, base: float, args, step: int, first: int, t0: float) -> None:
    """Cosine decay to 10% over this run's budget (time or steps): each resumed run is a warm restart."""
    if args.minutes:
        frac = (time.time() - t0) / (args.minutes * 60)
    else:
        frac = (step - first) / max(args.steps or 1, 1)
    lr = base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
    for g in opt.param_groups:
        g["lr"] = lr


# --- stage 1: CLIP ---------------------------------------------------------------------------------


def tokenizer():
    from imagic_kit.shapes import VOCABULARY
    from imagic_kit.tokenizer import build_tokenizer

    return build_tokenizer(VOCABULARY, MAX_TOKENS)


def train_clip(args) -> None:
    from transformers import CLIPConfig, CLIPModel

    tok = tokenizer()
    text_cfg = dict(
        TEXT_CFG,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg = CLIPConfig(text_config=text_cfg, vision_config=VISION_CFG, projection_dim=EMBED)
    torch.manual_seed(args.seed)
    model = CLIPModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ck = None if args.fresh else load_ckpt("clip")
    step = 0
    if ck:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    rng = np.random.default_rng(args.seed * 1000 + step)
    stop = budget(args, step)
    t0 = time.time()
    bar = tqdm(desc="clip", unit="step", initial=step)
    model.train()
    while not stop(step, t0):
        scenes, x = scenes_batch(rng, args.batch or 256)
        caps = pick_captions(rng, scenes)
        ids = tok(
            caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids
        img = F.normalize(
            clip_features(model.get_image_features(pixel_values=clip_pixels(x))), dim=-1
        )
        txt = F.normalize(clip_features(model.get_text_features(input_ids=ids)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        # Captions repeat within a batch (the world has 48): every image-caption match is a positive.
        same = torch.tensor([[a == b for b in caps] for a in caps], dtype=torch.float32)
        # an image also matches the short caption of its own attributes and vice versa
        attrs = [(s.shape, s.colour) for s in scenes]
        match = torch.tensor(
            [
                [
                    attrs[i] == attrs[j]
                    and (c.endswith(s.background + " background") or "background" not in c)
                    for j, c in enumerate(caps)
                ]
                for i, s in enumerate(scenes)
            ],
            dtype=torch.float32,
        )
        targets = torch.maximum(same, match)
        loss = 0.5 * (
            F.cross_entropy(logits, targets / targets.sum(1, keepdim=True))
            + F.cross_entropy(logits.T, targets.T / targets.T.sum(1, keepdim=True))
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % 200 == 0:
            save_ckpt("clip", {"model": model.state_dict(), "opt": opt.state_dict(), "step": step})
    bar.close()
    save_ckpt("clip", {"model": model.state_dict(), "opt": opt.state_dict(), "step": step})
    model.eval()
    acc = clip_retrieval(model, tok)
    write_clip(model, tok)
    minutes = (time.time() - t0) / 60
    print(f"clip: {step} steps, {minutes:.1f} min this run, retrieval accuracy {acc:.3f}")
    record(
        "clip",
        {"steps": step, "minutes": round(minutes, 2), "retrieval_accuracy": acc, "seed": args.seed},
    )


@torch.no_grad()
def clip_retrieval(model, tok, n: int = 500, seed: int = 99) -> float:
    from imagic_kit.shapes import all_captions, random_scenes, render

    caps = all_captions(with_background=True)
    ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    txt = F.normalize(clip_features(model.get_text_features(input_ids=ids)), dim=-1)
    scenes = random_scenes(n, seed)
    x = (
        torch.from_numpy(np.stack([np.asarray(render(s)[0]) for s in scenes]))
        .permute(0, 3, 1, 2)
        .float()
        / 127.5
        - 1
    )
    img = F.normalize(clip_features(model.get_image_features(pixel_values=clip_pixels(x))), dim=-1)
    pred = (img @ txt.T).argmax(1)
    return float(np.mean([caps[int(p)] == s.caption() for p, s in zip(pred, scenes)]))


def write_clip(model, tok) -> None:
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPVisionModelWithProjection

    for d in (
        CLIPDIR,
        TEXT2IMG / "text_encoder",
        TEXT2IMG / "tokenizer",
        VARIATIONS / "image_encoder",
        VARIATIONS / "feature_extractor",
    ):
        shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(CLIPDIR)
    tok.save_pretrained(CLIPDIR)
    # The halves are loaded from the full CLIP checkpoint, as SD's text encoder is from OpenAI's CLIP.
    text = CLIPTextModel.from_pretrained(CLIPDIR)
    vision = CLIPVisionModelWithProjection.from_pretrained(CLIPDIR)
    ids = tok(
        ["a red circle"], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt"
    ).input_ids
    pix = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(text(ids)[0], model.text_model(ids)[0], atol=1e-5), (
            "text encoder did not load"
        )
        assert torch.allclose(
            vision(pixel_values=pix).image_embeds,
            clip_features(model.get_image_features(pixel_values=pix)),
            atol=1e-5,
        ), "image encoder did not load"
    text.save_pretrained(TEXT2IMG / "text_encoder")
    tok.save_pretrained(TEXT2IMG / "tokenizer")
    vision.save_pretrained(VARIATIONS / "image_encoder")
    fe = CLIPImageProcessor(
        size={"shortest_edge": 64},
        crop_size={"height": 64, "width": 64},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    fe.save_pretrained(VARIATIONS / "feature_extractor")
    fe.save_pretrained(CLIPDIR)


# --- stage 2: VAE ----------------------------------------------------------------------------------


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for [-1, 1] images, on the 0..255 scale after rounding."""
    qa = ((a.clamp(-1, 1) + 1) * 127.5).round()
    qb = ((b.clamp(-1, 1) + 1) * 127.5).round()
    mse = ((qa - qb) ** 2).flatten(1).mean(1).clamp(min=1e-3)
    return 10 * torch.log10(255.0**2 / mse)


def _vae_loop(
    args,
    vae,
    params,
    stage: str,
    *,
    lr: float,
    batch: int,
    seed_offset: int,
    loss_fn,
    ckpt_extra: dict | None = None,
) -> tuple[int, float]:
    """The VAE stages' shared loop: Adam on ``params``, resume from the stage's checkpoint (when its
    ``ckpt_extra`` entries match), cosine lr over the budget, a batch of fresh scenes a step,
    ``loss_fn(x) -> (reconstruction, loss)``, running PSNR, checkpoints. -> (steps, start time).
    The caller sets train/eval modes and evaluates and saves the result."""
    extra = ckpt_extra or {}
    opt = torch.optim.Adam(params, lr=lr)
    ck = None if args.fresh else load_ckpt(stage)
    step = 0
    if ck and all(ck.get(k) == v for k, v in extra.items()):
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    rng = np.random.default_rng(args.seed * 1000 + seed_offset + step)
    stop = budget(args, step)
    t0 = time.time()
    bar = tqdm(desc=stage.replace("-", " "), unit="step", initial=step)
    recent: list[float] = []
    first = step

    def ckpt() -> None:
        save_ckpt(
            stage, {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, **extra}
        )

    while not stop(step, t0):
        cosine_lr(opt, lr, args, step, first, t0)
        _, x = scenes_batch(rng, batch)
        y, loss = loss_fn(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        recent = (recent + [float(psnr(y.detach(), x).mean())])[-100:]
        bar.update(1)
        bar.set_postfix(psnr=f"{np.mean(recent):.2f}")
        if step % 200 == 0:
            ckpt()
    bar.close()
    ckpt()
    return step, t0


def train_vae(args) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed + 1)
    vae = AutoencoderKL(**VAE_CFG)

    def loss_fn(x):
        post = vae.encode(x).latent_dist
        # The posterior mean, not a sample: with the tiny KL weight the variance would only shrink
        # slowly, and the sampling noise slows the reconstruction's training down.
        z = post.mode()
        y = vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()
        return y, F.l1_loss(y, x) + F.mse_loss(y, x) + 1e-5 * kl

    vae.train()
    step, t0 = _vae_loop(
        args,
        vae,
        vae.parameters(),
        "vae",
        lr=args.lr or 1e-3,
        batch=args.batch or 8,
        seed_offset=1,
        loss_fn=loss_fn,
    )
    vae.eval()
    whole, bg, scale = vae_eval(vae)
    vae.register_to_config(scaling_factor=scale)
    shutil.rmtree(TEXT2IMG / "vae", ignore_errors=True)
    vae.save_pretrained(TEXT2IMG / "vae")
    minutes = (time.time() - t0) / 60
    print(
        f"vae: {step} steps, {minutes:.1f} min this run, held-out PSNR {whole:.2f} dB (background {bg:.2f} dB), scaling {scale:.4f}"
    )
    record(
        "vae",
        {
            "steps": step,
            "minutes": round(minutes, 2),
            "psnr": whole,
            "psnr_background": bg,
            "scaling_factor": scale,
            "seed": args.seed,
        },
    )


def grow_vae(vae, layers_per_block: int):
    """A deeper copy of ``vae`` that computes exactly the same function.

    Each down/up block gets extra ResnetBlock2Ds whose last conv is zero, i.e. identities
    (``x + 0``), placed after the existing ones; the encoder's output is therefore unchanged, so the
    latents the UNet was trained on stay valid while the decoder gains capacity."""
    from diffusers import AutoencoderKL

    old_n = vae.config.layers_per_block
    if layers_per_block <= old_n:
        return vae
    cfg = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    cfg["layers_per_block"] = layers_per_block
    torch.manual_seed(0)
    new = AutoencoderKL(**cfg)
    missing, unexpected = new.load_state_dict(vae.state_dict(), strict=False)
    assert not unexpected, unexpected
    for name in {m.rsplit(".", 2)[0] for m in missing}:
        block = new.get_submodule(name)
        torch.nn.init.zeros_(block.conv2.weight)
        torch.nn.init.zeros_(block.conv2.bias)
    return new


NOISY_EVAL = 0.1  # latent noise std of the decoder's robustness figure (scaled latent units)


def train_vae_decoder(args) -> None:
    """Fine-tune (and optionally deepen, ``--vae-layers``) the decoder with the encoder frozen.

    The latents do not move, so the UNet trained on them needs no retraining and the scaling
    factor is kept."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(TEXT2IMG / "vae")
    vae = grow_vae(vae, args.vae_layers or vae.config.layers_per_block)
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for q in params:
        q.requires_grad_(True)
    lr, batch = args.lr or 5e-4, args.batch or 16
    sigma = args.latent_noise or 0.0
    noise_gen = torch.Generator().manual_seed(args.seed * 1000 + 6)

    def loss_fn(x):
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
            if sigma > 0:
                # Latent-noise augmentation: the decoder sees latents with the kind of error a
                # diffusion sample has (measured on Imagic outputs: mostly smooth, and across the 8
                # channels in combinations the encoder never produces, which the decoder drew as
                # speckle) and learns to map them to the clean scene. Per image: a level uniform
                # in [0, sigma] (the UNet's scaled latent units), white noise or a smooth field
                # (4x4 upsampled) with equal odds, a quarter of the images clean.
                b, c, h, w = z.shape
                lvl = torch.rand(b, generator=noise_gen) * sigma
                lvl[torch.rand(b, generator=noise_gen) < 0.25] = 0.0
                white = torch.randn(z.shape, generator=noise_gen)
                smooth = F.interpolate(
                    torch.randn((b, c, 4, 4), generator=noise_gen),
                    size=(h, w),
                    mode="bicubic",
                    align_corners=False,
                )
                smooth = smooth / smooth.std(dim=(1, 2, 3), keepdim=True)
                pick = (torch.rand(b, generator=noise_gen) < 0.5).view(-1, 1, 1, 1)
                n = torch.where(pick, smooth, white)
                z = z + lvl.view(-1, 1, 1, 1) * n / vae.config.scaling_factor
        y = vae.decode(z).sample
        return y, F.l1_loss(y, x) + F.mse_loss(y, x)

    vae.eval()
    vae.decoder.train()
    step, t0 = _vae_loop(
        args,
        vae,
        params,
        "vae-decoder",
        lr=lr,
        batch=batch,
        seed_offset=5,
        loss_fn=loss_fn,
        ckpt_extra={"layers": vae.config.layers_per_block, "latent_noise": sigma},
    )
    vae.eval()
    whole, bg, _ = vae_eval(vae)
    noisy, noisy_bg, _ = vae_eval(vae, latent_noise=NOISY_EVAL)
    shutil.rmtree(TEXT2IMG / "vae", ignore_errors=True)
    vae.save_pretrained(TEXT2IMG / "vae")
    minutes = (time.time() - t0) / 60
    print(
        f"vae decoder: {step} steps, {minutes:.1f} min this run, PSNR {whole:.2f} dB (bg {bg:.2f}); "
        f"latents with noise {NOISY_EVAL}: {noisy:.2f} dB (bg {noisy_bg:.2f})"
    )
    record(
        "vae-decoder",
        {
            "steps": step,
            "minutes": round(minutes, 2),
            "psnr": whole,
            "psnr_background": bg,
            f"psnr_latent_noise_{NOISY_EVAL}": noisy,
            f"psnr_background_latent_noise_{NOISY_EVAL}": noisy_bg,
            "layers_per_block": vae.config.layers_per_block,
            "latent_noise": sigma,
            "batch": batch,
            "lr": lr,
            "seed": args.seed,
        },
    )


@torch.no_grad()
def vae_eval(
    vae, n: int = 256, seed: int = 12345, latent_noise: float = 0.0
) -> tuple[float, float, float]:
    """Held-out PSNR (whole image, background only) with the posterior mean, and 1/std of latents.
    ``latent_noise``: decode the latents with gaussian noise of this std added (scaled latent units,
    fixed seed): how the decoder copes with the small errors of a diffusion sample."""
    from imagic_kit.shapes import dilate, random_scenes, render

    scenes = random_scenes(n, seed)
    rendered = [render(s) for s in scenes]
    x = (
        torch.from_numpy(np.stack([np.asarray(r[0]) for r in rendered])).permute(0, 3, 1, 2).float()
        / 127.5
        - 1
    )
    zs, ys = [], []
    for i in range(0, n, 32):
        z = vae.encode(x[i : i + 32]).latent_dist.mean
        zs.append(z)
        if latent_noise > 0:
            g = torch.Generator().manual_seed(seed + i)
            n_ = torch.randn(z.shape, generator=g)
            z = z + latent_noise * n_ / vae.config.scaling_factor
        ys.append(vae.decode(z).sample)
    y, z = torch.cat(ys), torch.cat(zs)
    whole = float(psnr(y, x).mean())
    bgs = []
    for i, (_, mask) in enumerate(rendered):
        keep = torch.from_numpy(~dilate(mask, 3))
        qa = ((y[i].clamp(-1, 1) + 1) * 127.5).round()[:, keep]
        qb = ((x[i] + 1) * 127.5).round()[:, keep]
        bgs.append(float(10 * torch.log10(255.0**2 / ((qa - qb) ** 2).mean().clamp(min=1e-3))))
    return whole, float(np.mean(bgs)), float(1.0 / z.std())


# --- stage 3: UNet ---------------------------------------------------------------------------------


def load_frozen():
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    tok = CLIPTokenizer.from_pretrained(TEXT2IMG / "tokenizer")
    text = CLIPTextModel.from_pretrained(TEXT2IMG / "text_encoder").eval()
    vision = CLIPVisionModelWithProjection.from_pretrained(VARIATIONS / "image_encoder").eval()
    vae = AutoencoderKL.from_pretrained(TEXT2IMG / "vae").eval()
    return tok, text, vision, vae


@torch.no_grad()
def build_latents(n: int, seed: int):
    """Encode ``n`` random scenes once: latents (posterior mean * scaling), image embeddings, scenes."""
    from imagic_kit.shapes import random_scenes

    tok, text, vision, vae = load_frozen()
    rng = np.random.default_rng(seed)
    scenes = random_scenes(n, seed)
    lat, emb = [], []
    from imagic_kit.shapes import render

    for i in tqdm(range(0, n, 64), desc="encode scenes"):
        chunk = scenes[i : i + 64]
        x = (
            torch.from_numpy(np.stack([np.asarray(render(s)[0]) for s in chunk]))
            .permute(0, 3, 1, 2)
            .float()
            / 127.5
            - 1
        )
        lat.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
        emb.append(vision(pixel_values=clip_pixels(x)).image_embeds)
    del rng
    return torch.cat(lat), torch.cat(emb), scenes


def train_unet(args) -> None:
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from imagic_kit.shapes import all_captions

    tok, text, _, _ = load_frozen()
    cache = WORK / "latents.pt"
    if cache.is_file() and not args.fresh:
        data = torch.load(cache, weights_only=False)
    else:
        lat, emb, scenes = build_latents(args.scenes, args.seed + 2)
        data = {"latents": lat, "image_embeds": emb, "scenes": [s.__dict__ for s in scenes]}
        WORK.mkdir(parents=True, exist_ok=True)
        torch.save(data, cache)
    from imagic_kit.shapes import Scene

    lat, emb = data["latents"], data["image_embeds"]
    scenes = [Scene(**s) for s in data["scenes"]]
    caps = all_captions() + [""]
    with torch.no_grad():
        ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
        hidden = text(ids)[0]
    cap_index = {c: i for i, c in enumerate(caps)}
    full_idx = torch.tensor([cap_index[s.caption()] for s in scenes])
    short_idx = torch.tensor([cap_index[s.caption(False)] for s in scenes])
    empty = cap_index[""]

    sched = DDIMScheduler(**SCHEDULER_CFG)
    abar = sched.alphas_cumprod
    snr = abar / (1 - abar)
    torch.manual_seed(args.seed + 3)
    unet = UNet2DConditionModel(**UNET_CFG)
    ema = UNet2DConditionModel(**UNET_CFG)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    lr = args.lr or 5e-4
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    ck = None if args.fresh else load_ckpt("unet")
    step = 0
    if ck:
        unet.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    elif (TEXT2IMG / "unet").is_dir() and not args.fresh:  # continue from the committed weights
        unet = UNet2DConditionModel.from_pretrained(TEXT2IMG / "unet")
        ema.load_state_dict(unet.state_dict())
        opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
        step = json.loads((TEXT2IMG / "unet" / "config.json").read_text()).get(
            "_imagic_kit_steps", 0
        )
    g = torch.Generator().manual_seed(args.seed * 7919 + step)
    stop = budget(args, step)
    t0 = time.time()
    bar = tqdm(desc="unet", unit="step", initial=step)
    unet.train()
    b = args.batch or 64
    losses: list[float] = []
    first = step
    while not stop(step, t0):
        cosine_lr(opt, lr, args, step, first, t0)
        idx = torch.randint(0, len(scenes), (b,), generator=g)
        z0 = lat[idx]
        if torch.rand((), generator=g) < args.p_image:  # image-variations conditioning: one token
            cond = emb[idx].unsqueeze(1).clone()
            drop = torch.rand(b, generator=g) < 0.1
            cond[drop] = 0.0
        else:
            use_short = torch.rand(b, generator=g) < 0.3
            ci = torch.where(use_short, short_idx[idx], full_idx[idx])
            ci[torch.rand(b, generator=g) < 0.1] = empty
            cond = hidden[ci]
        t = torch.randint(0, 1000, (b,), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        if args.offset_noise:
            # Offset noise: without it the background, which lives in the latent channel means, leaks
            # through the noise at t ~ 1000 (SNR 0.005 is not zero) and the model learns to read it
            # from there instead of the prompt; samples from fresh noise then come out mid-gray.
            noise = noise + args.offset_noise * torch.randn((b, z0.shape[1], 1, 1), generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        # min-SNR-gamma weighting (Hang et al. 2023), gamma 5, epsilon target
        w = (snr[t].clamp(max=5.0) / snr[t]).view(-1, 1, 1, 1)
        loss = (w * (pred - noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        losses = (losses + [loss.item()])[-200:]
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        if step % 200 == 0:
            save_ckpt(
                "unet",
                {
                    "model": unet.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                },
            )
            write_unet(ema, step)
    bar.close()
    save_ckpt(
        "unet",
        {
            "model": unet.state_dict(),
            "ema": ema.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
        },
    )
    write_unet(ema, step)
    minutes = (time.time() - t0) / 60
    print(f"unet: {step} steps, {minutes:.1f} min this run, loss {np.mean(losses):.4f}")
    record(
        "unet",
        {
            "steps": step,
            "minutes": round(minutes, 2),
            "loss": float(np.mean(losses)),
            "seed": args.seed,
            "batch": b,
            "lr": lr,
            "offset_noise": args.offset_noise,
        },
    )


def write_unet(ema, step: int) -> None:
    tmp = TEXT2IMG / "unet.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    ema.register_to_config(_imagic_kit_steps=step)
    ema.save_pretrained(tmp)
    shutil.rmtree(TEXT2IMG / "unet", ignore_errors=True)
    os.replace(tmp, TEXT2IMG / "unet")


# --- stage 4: bundle -------------------------------------------------------------------------------


def write_bundle(args) -> None:
    """model_index.json files and the scheduler. The variations folder holds only its image encoder
    and feature extractor; ``imagic_kit.models.variations_pipeline`` adds the shared UNet, VAE and
    scheduler from text2img/."""
    from diffusers import DDIMScheduler

    DDIMScheduler(**SCHEDULER_CFG).save_pretrained(TEXT2IMG / "scheduler")
    import diffusers

    version = diffusers.__version__
    (TEXT2IMG / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": version,
                "feature_extractor": [None, None],
                "image_encoder": [None, None],
                "requires_safety_checker": False,
                "safety_checker": [None, None],
                "scheduler": ["diffusers", "DDIMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            indent=2,
        )
        + "\n"
    )
    (VARIATIONS / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionImageVariationPipeline",
                "_diffusers_version": version,
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
                "requires_safety_checker": False,
                "safety_checker": [None, None],
                "scheduler": ["diffusers", "DDIMScheduler"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            indent=2,
        )
        + "\n"
    )
    for part in ("unet", "vae", "scheduler"):  # shared with text2img: each weight ships once
        stale = VARIATIONS / part
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
        elif stale.is_dir():
            shutil.rmtree(stale)
    print(f"bundle written: {BUNDLE}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("stage", choices=["clip", "vae", "vae-decoder", "unet", "bundle", "all"])
    ap.add_argument("--minutes", type=float, help="time budget for this run of the stage")
    ap.add_argument("--steps", type=int, help="step budget for this run of the stage")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--scenes", type=int, default=24000, help="UNet stage: scenes encoded once and reused"
    )
    ap.add_argument(
        "--p-image", type=float, default=0.25, help="UNet stage: share of image-conditioned batches"
    )
    ap.add_argument(
        "--offset-noise",
        type=float,
        default=0.1,
        help="UNet stage: std of the per-channel constant added to the training noise",
    )
    ap.add_argument(
        "--vae-layers",
        type=int,
        help="vae-decoder stage: deepen the VAE to this layers_per_block (identity-initialised)",
    )
    ap.add_argument(
        "--latent-noise",
        type=float,
        help="vae-decoder stage: train on latents with gaussian noise of std up to this "
        "(scaled latent units, as the UNet sees them)",
    )
    ap.add_argument("--fresh", action="store_true", help="ignore the resume checkpoint")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from imagic_kit.threads import configure_threads

    print(f"threads: {configure_threads()}")
    BUNDLE.mkdir(parents=True, exist_ok=True)
    defaults = {"clip": 10, "vae": 40, "vae-decoder": 30, "unet": 60}
    stages = ["clip", "vae", "unet", "bundle"] if args.stage == "all" else [args.stage]
    for stage in stages:
        t = time.time()
        if stage != "bundle" and not args.minutes and not args.steps:
            args.minutes = defaults[stage]
        {
            "clip": train_clip,
            "vae": train_vae,
            "vae-decoder": train_vae_decoder,
            "unet": train_unet,
            "bundle": write_bundle,
        }[stage](args)
        print(f"stage {stage}: wall time {(time.time() - t) / 60:.1f} min", flush=True)
        if args.stage == "all":
            args.minutes = None
    return 0


if __name__ == "__main__":
    sys.exit(main())

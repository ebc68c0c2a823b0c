#!/usr/bin/env python3
"""Measure the embedded tiny-shapes bundle and write its figures (eval.json + the model card).

    python scripts/eval_tiny_shapes.py [--seeds 4] [--guidance 2,4,6] [--steps 25] [--write-card]

Figures (the quality bars of the model card):
- VAE reconstruction PSNR on held-out scenes, whole image and background only (outside the object
  mask dilated by 3 px), through the toolkit's own encode/decode (posterior mean, uint8 output);
- text-to-image accuracy: every caption of the world x seeds, DDIM, read back by the oracle
  (shape, colour, background when the caption names one), per guidance scale;
- CLIP retrieval: held-out image -> its caption among all 36 full captions;
- variation fidelity: the same UNet conditioned on a held-out image's CLIP embedding (the
  variations pipeline's path) keeps its shape and colour.
Everything goes through ``load_backbone("tiny-shapes")``, i.e. the code path users get.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagic_kit import load_backbone  # noqa: E402
from imagic_kit.imaging import pil_to_tensor, tensor_to_pil  # noqa: E402
from imagic_kit.sampling import ddim_sample  # noqa: E402
from imagic_kit.shapes import all_captions, dilate, parse_caption, random_scenes, read, render  # noqa: E402
from imagic_kit.threads import configure_threads  # noqa: E402

BUNDLE = ROOT / "imagic_kit" / "models" / "tiny-shapes"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-3)))


@torch.no_grad()
def eval_vae(bb, n: int = 256, seed: int = 777) -> dict:
    scenes = random_scenes(n, seed)
    whole, bg = [], []
    for i in range(0, n, 32):
        chunk = [render(s) for s in scenes[i : i + 32]]
        x = torch.cat([pil_to_tensor(img) for img, _ in chunk])
        out = tensor_to_pil(bb.decode_latents(bb.encode_latents(x)))
        for (img, mask), o in zip(chunk, out):
            a, b = np.asarray(img), np.asarray(o)
            whole.append(psnr(a, b))
            keep = ~dilate(mask, 3)
            bg.append(psnr(a[keep], b[keep]))
    return {
        "psnr": float(np.mean(whole)),
        "psnr_background": float(np.mean(bg)),
        "psnr_min": float(np.min(whole)),
        "n": n,
    }


@torch.no_grad()
def sample(
    bb, cond: torch.Tensor, uncond: torch.Tensor | None, seed: int, guidance: float, steps: int
) -> list:
    g = torch.Generator().manual_seed(seed)
    x = bb.randn(bb.latent_shape(cond.shape[0]), g)
    z = ddim_sample(bb, x, cond, uncond=uncond, num_inference_steps=steps, guidance_scale=guidance)
    return tensor_to_pil(bb.decode_latents(z))


def eval_t2i(bb, seeds: int, guidance: float, steps: int) -> dict:
    caps = all_captions()
    hits = {"shape": [], "colour": [], "background": [], "all": []}
    for s in range(seeds):
        imgs = sample(bb, bb.encode_prompt(caps), None, 1000 + s, guidance, steps)
        for cap, img in zip(caps, imgs):
            want, r = parse_caption(cap), read(img)
            ok = {
                k: (want[k] is None or r.attributes()[k] == want[k])
                for k in ("shape", "colour", "background")
            }
            for k, v in ok.items():
                if want[k] is not None:
                    hits[k].append(v)
            hits["all"].append(all(ok.values()))
    return {k: float(np.mean(v)) for k, v in hits.items()} | {
        "n": len(hits["all"]),
        "guidance": guidance,
        "steps": steps,
    }


@torch.no_grad()
def eval_clip(bb, n: int = 500, seed: int = 4242) -> dict:
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(bb.extras["clip_path"]).eval()
    caps = all_captions(with_background=True)
    ids = bb.tokenize(caps, warn=False)

    def feats(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    txt = torch.nn.functional.normalize(feats(model.get_text_features(input_ids=ids)), dim=-1)
    scenes = random_scenes(n, seed)
    pix = bb.feature_extractor(
        images=[render(s)[0] for s in scenes], return_tensors="pt"
    ).pixel_values
    img = torch.nn.functional.normalize(feats(model.get_image_features(pixel_values=pix)), dim=-1)
    pred = (img @ txt.T).argmax(1)
    return {
        "retrieval_accuracy": float(
            np.mean([caps[int(p)] == s.caption() for p, s in zip(pred, scenes)])
        ),
        "n": n,
    }


def eval_variations(bb, n: int, guidance: float, steps: int, seed: int = 99) -> dict:
    scenes = random_scenes(n, seed)
    emb = bb.encode_image_embedding([render(s)[0] for s in scenes])
    imgs = sample(bb, emb, torch.zeros_like(emb), 5000, guidance, steps)
    reads = [read(img) for img in imgs]
    shape = [r.shape == s.shape for r, s in zip(reads, scenes)]
    colour = [r.colour == s.colour for r, s in zip(reads, scenes)]
    return {
        "shape": float(np.mean(shape)),
        "colour": float(np.mean(colour)),
        "shape_and_colour": float(np.mean([a and b for a, b in zip(shape, colour)])),
        "n": n,
        "guidance": guidance,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=4, help="samples per caption (x48 captions)")
    ap.add_argument("--guidance", default="2,4,6", help="text-to-image guidance scales to measure")
    ap.add_argument("--variation-guidance", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument(
        "--variations", type=int, default=96, help="held-out scenes for the variation test"
    )
    ap.add_argument(
        "--write-card",
        action="store_true",
        help="write eval.json and MODEL_CARD.md into the bundle",
    )
    a = ap.parse_args()
    configure_threads()
    t0 = time.time()
    bb = load_backbone("tiny-shapes", device="cpu")
    report: dict = {"vae": eval_vae(bb), "clip": eval_clip(bb)}
    print("vae", report["vae"], "\nclip", report["clip"], flush=True)
    report["text_to_image"] = []
    for g in [float(v) for v in a.guidance.split(",")]:
        r = eval_t2i(bb, a.seeds, g, a.steps)
        report["text_to_image"].append(r)
        print("t2i", r, flush=True)
    report["variations"] = eval_variations(bb, a.variations, a.variation_guidance, a.steps)
    print("variations", report["variations"])
    report["eval_minutes"] = round((time.time() - t0) / 60, 2)
    if a.write_card:
        (BUNDLE / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {BUNDLE / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cleanliness measures of the oracle on reference images and on benchmark outputs.

python docs/experiments/2026-12-08-cleanliness/measure.py vae        # renders and VAE round trips
python docs/experiments/2026-12-08-cleanliness/measure.py OUT [OUT]  # rows of bench folders
"""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict

import numpy as np
import torch
from PIL import Image

from imagic_kit.shapes.oracle import cleanliness


def references() -> None:
    """Distribution of each measure on the full and holdout suites' 96 rendered inputs and on
    their round trips through the embedded model's VAE."""
    from imagic_kit.bench.suites import make_suite, source_image
    from imagic_kit.imaging import pil_to_tensor, tensor_to_pil
    from imagic_kit.models import load_backbone

    backbone = load_backbone("tiny-shapes", device="cpu")
    found: dict[str, list[dict[str, float]]] = {"render": [], "vae": []}
    for name in ("full", "holdout"):
        for edit in make_suite(name)["edits"]:
            image = source_image(edit)
            with torch.no_grad():
                z = backbone.encode_latents(pil_to_tensor(image))
                trip = tensor_to_pil(backbone.decode_latents(z))[0]
            found["render"].append(asdict(cleanliness(image)))
            found["vae"].append(asdict(cleanliness(trip)))
    for kind, rows in found.items():
        for key in rows[0]:
            v = np.array([r[key] for r in rows])
            print(
                f"{kind:6s} {key:13s} median {np.median(v):6.2f} "
                f"p95 {np.percentile(v, 95):6.2f} max {v.max():6.2f}"
            )


def outputs(folders: list[str]) -> None:
    """One line per benchmark row: method, setting, edit, success, clean and the measures."""
    for out in folders:
        with open(f"{out}/results.csv", newline="") as f:
            for r in csv.DictReader(f):
                image = Image.open(f"{out}/{r['image']}").convert("RGB").resize((64, 64))
                c = cleanliness(image)
                if c is None:
                    continue
                measures = " ".join(f"{k}={v:.1f}" for k, v in asdict(c).items())
                verdict = "clean" if c.clean else "not-clean"
                print(r["method"], r["sweep"], r["edit_id"], r["success"], verdict, measures)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:] == ["vae"]:
        references()
    else:
        outputs(sys.argv[1:])

"""CLIP score: the cosine similarity of a CLIP model's image and text features.

Used by best-of-N's ranking (``ranking.py``) and by the benchmark's CLIP column. The model is any
``CLIPModel`` folder or hub id; the embedded model ships one (``tiny-shapes/clip``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from PIL import Image


def clip_features(out: Any) -> torch.Tensor:
    """The tensor from CLIP's ``get_text_features`` / ``get_image_features``: transformers 5
    returns a model output (projected features in ``pooler_output``), 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipScorer:
    """CLIP score (cosine similarity of image and text features) with a CLIP model folder."""

    def __init__(self, path: str):
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        from .progress import quiet_loading

        with quiet_loading():
            self.model = CLIPModel.from_pretrained(path).eval()
            self.tokenizer = CLIPTokenizer.from_pretrained(path)
            self.processor = CLIPImageProcessor.from_pretrained(path)

    def __call__(self, image: Image.Image, text: str) -> float:
        return self.scores([image], text)[0]

    def scores(self, images: list[Image.Image], text: str) -> list[float]:
        """The CLIP score of each image against one text (the text is encoded once)."""
        with torch.no_grad():
            ids = self.tokenizer(
                [text], padding="max_length", truncation=True, return_tensors="pt"
            ).input_ids
            pix = self.processor(images=images, return_tensors="pt").pixel_values
            t = torch.nn.functional.normalize(
                clip_features(self.model.get_text_features(input_ids=ids)), dim=-1
            )
            i = torch.nn.functional.normalize(
                clip_features(self.model.get_image_features(pixel_values=pix)), dim=-1
            )
        return (i @ t[0]).tolist()


@lru_cache(maxsize=2)
def load_clip(path: str) -> ClipScorer:
    """A CLIP scorer for ``path`` (folder or hub id), loaded once per process."""
    return ClipScorer(path)

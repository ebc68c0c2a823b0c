"""The shapes world: renderer, captions and oracle (docs/design.md, "The shapes world")."""

from .oracle import Cleanliness, Reading, cleanliness, dilate, read
from .world import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    SIZE,
    VOCABULARY,
    Scene,
    all_captions,
    caption,
    parse_caption,
    random_scene,
    random_scenes,
    render,
    render_batch,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "SHAPES",
    "SIZE",
    "VOCABULARY",
    "Reading",
    "Scene",
    "all_captions",
    "caption",
    "Cleanliness",
    "cleanliness",
    "dilate",
    "parse_caption",
    "random_scene",
    "random_scenes",
    "read",
    "render",
    "render_batch",
]

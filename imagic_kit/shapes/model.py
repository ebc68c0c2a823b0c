"""What the embedded model knows, told to its backbone when it loads: the shapes world only.

:func:`describe` fills the backbone's typed fields, so that the front ends warn about inputs
outside the world, offer its examples and say what the model knows, without naming the world.
"""

from __future__ import annotations

from typing import Any

#: Examples from the shapes world: (scene, prompt), each an edit the model does in seconds.
EXAMPLES = (
    ({"shape": "circle", "colour": "red", "background": "gray", "x0": 18, "y0": 20, "side": 26,
      "texture_seed": 7}, "a blue circle on a gray background"),
    ({"shape": "square", "colour": "yellow", "background": "white", "x0": 16, "y0": 18,
      "side": 28, "texture_seed": 3}, "a yellow triangle on a white background"),
    ({"shape": "triangle", "colour": "green", "background": "black", "x0": 20, "y0": 16,
      "side": 26, "texture_seed": 11}, "a green triangle on a gray background"),
)  # fmt: skip

NOTE = (
    "the embedded model knows only the shapes world: coloured circles, squares and triangles on "
    "white, gray or black"
)


def check_input(images: list[Any], model_id: str = "tiny-shapes") -> str | None:
    """A warning when an input is not a shapes-world scene (a photo gives 64-pixel mush, not an
    error); None when every input is one."""
    from .oracle import looks_like_scene

    if all(looks_like_scene(p) for p in images):
        return None
    return (
        f"the input does not look like the shapes world, the only thing the embedded model "
        f"{model_id!r} knows (one coloured circle, square or triangle on a plain "
        "background): expect a meaningless result; for photos use a real model, e.g. --model sd15 "
        "or sd21 (load_backbone('sd15')), or a diffusers folder"
    )


def describe(backbone: Any) -> Any:
    """Give ``backbone`` the embedded model's input check, examples and note."""
    from .world import Scene, render

    backbone.check_input = lambda images, bb=backbone: check_input(images, bb.model_id)
    backbone.examples = [(render(Scene(**scene))[0], prompt) for scene, prompt in EXAMPLES]
    backbone.note = NOTE
    return backbone

"""The web demo's state and page: widgets from the config fields, the tabs, re-sampling a kept fit,
bounded files, several references (served and in a browser: tests/e2e/test_demo_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from imagic_kit.config import field_infos  # noqa: E402
from imagic_kit.demo.app import (  # noqa: E402
    Demo,
    DemoOptions,
    build,
    infos_in_page_order,
    preset_values,
    sweep_fields,
)
from imagic_kit.errors import ConfigError  # noqa: E402
from imagic_kit.registry import available_methods, get_method, methods_in_order  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "assets" / "example.png"


def test_every_method_gets_a_tab_built_from_its_fields():
    for name in available_methods():
        spec = get_method(name)
        order = [i.name for i in infos_in_page_order(spec)]
        stages = [i.stage for i in infos_in_page_order(spec)]
        assert stages == sorted(stages)  # fit-stage fields first
        assert sorted(order) == sorted(i.name for i in field_infos(spec.config_cls))
        assert sweep_fields(spec)[0] == spec.main_field  # the main weight first
    assert sweep_fields(get_method("imagic"))[0] == "eta"
    fast = dict(zip(order_of("imagic"), preset_values(get_method("imagic"), "fast")))
    assert fast["embedding_steps"] == 40 and fast["candidates"] == 4


def order_of(method):
    return [i.name for i in infos_in_page_order(get_method(method))]


def test_the_page_opens_on_imagic_with_the_command_lines_defaults(tmp_path):
    """The first tab is the toolkit's own method, the baselines last; every tab starts at the
    method's defaults (what `imagic-kit edit` runs), not at a preset."""
    order = methods_in_order()
    assert order[0] == "imagic" and set(order[-2:]) == {"sdedit", "ddim"}
    assert sorted(order) == available_methods()
    blocks = build(Demo(_NoModel(), DemoOptions(work_dir=tmp_path)))
    tabs = [b for b in blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert [t.label for t in tabs] == order
    by_id = {getattr(b, "elem_id", None): b for b in blocks.blocks.values()}
    assert by_id["imagic-preset"].value == "(defaults)"
    spec = get_method("imagic")
    defaults = dict(zip(order_of("imagic"), preset_values(spec, None)))
    assert by_id["imagic-field-embedding_steps"].value == defaults["embedding_steps"]
    assert defaults["embedding_steps"] == spec.config_cls().embedding_steps


class _NoModel:
    model_id, note, examples = "none", "", []


def test_images_over_the_demo_limits_are_refused(shapes, tmp_path):
    demo = Demo(shapes, DemoOptions(work_dir=tmp_path, max_megapixels=0.01))
    big = tmp_path / "big.png"
    Image.new("RGB", (200, 200)).save(big)
    with pytest.raises(ConfigError, match="over the demo's 0.01 MP limit"):
        demo.check_image(str(big))
    with pytest.raises(ConfigError, match="upload an image"):
        demo.check_image(None)


def test_a_slider_never_starts_a_fit_and_files_stay_bounded(shapes, tmp_path):
    """Releasing the main slider re-samples a matching fit and nothing else; the pages share one
    bounded fit cache, and each keeps one folder of downloads, as many folders as the cache's size."""
    demo = Demo(shapes, DemoOptions(work_dir=tmp_path, cache_size=1))
    spec = get_method("sdedit")
    values = preset_values(spec, None)
    args = ("sdedit", "s1", str(EXAMPLE), "a blue circle", None, 0, False)
    assert demo.run(*args, values, only_if_cached=True) is None  # no fit yet: nothing runs
    first = demo.run(*args, values)
    assert first["status"].startswith("Fitted")
    again = demo.run(*args, values, only_if_cached=True)
    assert again["reused"] and again["status"].startswith("Re-sampled")
    other = str(tmp_path / "other.png")
    Image.open(EXAMPLE).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    assert (
        demo.run(
            "sdedit", "s1", other, "a blue circle", None, 0, False, values, only_if_cached=True
        )
        is None
    )  # another image: the slider does not refit
    for _ in range(3):
        demo.run(*args, values)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1
    second = demo.run("sdedit", "s2", str(EXAMPLE), "a blue circle", None, 0, False, values)
    assert second["reused"]  # the same edit from another page: the kept fit serves it
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) == 1 and len(demo.fits) == 1  # s1's folder was dropped


def test_several_references_reach_a_method_that_takes_them(shapes, tmp_path):
    demo = Demo(shapes, DemoOptions(work_dir=tmp_path))
    spec = get_method("decor")
    quick = {"finetune_steps": 2, "num_inference_steps": 3, "candidates": 1, "batch_size": 2}
    values = [quick.get(i.name, v) for i, v in zip(infos_in_page_order(spec),
                                                     preset_values(spec, None))]  # fmt: skip
    other = str(tmp_path / "other.png")
    Image.open(EXAMPLE).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    args = ("decor", "p", str(EXAMPLE), "a blue circle", "a red circle", 0, False, values)
    r = demo.run(*args, more_images=[other])
    assert len(json.loads(r["recipe"])["input_hashes"]) == 2
    with pytest.raises(ConfigError, match="takes 1 input image"):
        demo.run("sdedit", "p", str(EXAMPLE), "a blue circle", None, 0, False,
                 preset_values(get_method("sdedit"), None), more_images=[other])  # fmt: skip

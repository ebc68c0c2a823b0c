"""Benchmark metrics on crafted images, and deterministic suites."""

from __future__ import annotations

import numpy as np

from imagic_kit.bench.metrics import evaluate_edit
from imagic_kit.bench.suites import KINDS, load_suite, make_suite, save_suite, source_image
from imagic_kit.shapes import Scene, cleanliness, dilate, random_scene, render
from imagic_kit.shapes.oracle import (
    MAX_COLOUR_OFFSET,
    MAX_FRINGE,
    MAX_RIM,
    MAX_UNIFORMITY,
    erode,
)

SRC = Scene("circle", "red", "gray", x0=16, y0=18, side=26, texture_seed=11)
TARGET = {"shape": "circle", "colour": "blue", "background": "gray"}


def test_perfect_edit_passes():
    out = render(SRC.with_(colour="blue"))[0]
    m = evaluate_edit(render(SRC)[0], out, TARGET, ["colour"])
    assert (
        m["success"]
        and m["target_ok"]
        and m["position_ok"]
        and m["size_ok"]
        and m["background_kept"]
    )
    assert not m["leakage"] and m["background_psnr"] > 40


def test_moved_object_fails():
    out = render(SRC.with_(colour="blue", x0=SRC.x0 + 8))[0]
    m = evaluate_edit(render(SRC)[0], out, TARGET, ["colour"])
    assert m["target_ok"] and not m["position_ok"] and not m["success"]


def test_resized_object_fails():
    out = render(SRC.with_(colour="blue", side=34))[0]
    m = evaluate_edit(render(SRC)[0], out, TARGET, ["colour"])
    assert not m["size_ok"] and not m["success"]


def test_regenerated_background_fails_when_it_should_be_kept():
    out = render(SRC.with_(colour="blue", texture_seed=999))[0]
    m = evaluate_edit(render(SRC)[0], out, TARGET, ["colour"])
    assert (
        m["target_ok"]
        and m["background_kept"] is False
        and not m["success"]
        and m["background_psnr"] < 25
    )
    # ... but not when the edit changes the background
    bg_target = {"shape": "circle", "colour": "red", "background": "white"}
    out2 = render(SRC.with_(background="white", texture_seed=999))[0]
    m2 = evaluate_edit(render(SRC)[0], out2, bg_target, ["background"])
    assert m2["success"] and m2["background_kept"] is None


def test_leaked_colour_is_counted():
    out = np.asarray(render(SRC)[0])  # nothing changed: the source colour leaks
    m = evaluate_edit(render(SRC)[0], out, TARGET, ["colour"])
    assert m["leakage"] and m["leaked"] == "colour" and not m["success"]


def test_empty_output_fails():
    empty = render(SRC)[0].copy()
    arr = np.asarray(empty).copy()
    arr[:] = (128, 128, 128)
    m = evaluate_edit(render(SRC)[0], arr, TARGET, ["colour"])
    assert not m["success"] and m["read_shape"] is None


def test_suites_are_deterministic_and_cover_kinds(tmp_path):
    a, b = make_suite("quick", seed=3), make_suite("quick", seed=3)
    assert a == b and a != make_suite("quick", seed=4)
    assert len(a["edits"]) == 12 and len(make_suite("full")["edits"]) == 48
    # round-robin over the kinds, so the first N edits (--limit, an interrupted run) cover every kind
    assert [e["kind"] for e in a["edits"]] == [k for _ in range(3) for k in KINDS]
    assert [e["id"] for e in a["edits"][:4]] == [f"{k}-00" for k in KINDS]
    for e in make_suite("full")["edits"]:
        src = Scene(**e["scene"])
        changed = [
            k for k in ("shape", "colour", "background") if getattr(src, k) != e["target"][k]
        ]
        assert changed == sorted(e["changes"]) or sorted(changed) == sorted(e["changes"])
        assert len(changed) == (2 if e["kind"] == "two" else 1)
    path = save_suite(a, tmp_path / "s.json")
    assert load_suite(path) == a
    assert np.array_equal(
        np.asarray(source_image(a["edits"][0])),
        np.asarray(render(Scene(**a["edits"][0]["scene"]))[0]),
    )


def test_output_at_another_resolution_is_compared_at_the_source_size():
    out = render(SRC.with_(colour="blue"))[0].resize((512, 512), resample=0)
    m = evaluate_edit(render(SRC)[0], out, TARGET, ["colour"])
    assert m["success"], m


def test_reconstruct_suite_changes_nothing_and_psnr_measures_the_whole_image():
    quick, recon = make_suite("quick"), load_suite("reconstruct")
    assert recon["name"] == "reconstruct" and len(recon["edits"]) == len(quick["edits"]) == 12
    for q, e in zip(quick["edits"], recon["edits"], strict=True):
        assert e["id"] == q["id"] and e["scene"] == q["scene"] and e["kind"] == "reconstruct"
        assert e["prompt"] == q["source_prompt"] and e["changes"] == []
        assert e["target"] == {a: q["scene"][a] for a in ("shape", "colour", "background")}
    src = source_image(recon["edits"][0])
    same = evaluate_edit(src, src, recon["edits"][0]["target"], [])
    assert same["success"] and same["psnr"] > 100  # identical: the MSE floor of 1e-6
    noisy = np.clip(np.asarray(src, dtype=np.int16) + 8, 0, 255).astype(np.uint8)
    assert 25 < evaluate_edit(src, noisy, recon["edits"][0]["target"], [])["psnr"] < 35


def _blue_on_gray() -> tuple[np.ndarray, np.ndarray]:
    image, mask = render(SRC.with_(colour="blue"))[:2]
    return np.asarray(image, np.float32).copy(), np.asarray(mask) > 0


def _judge(a: np.ndarray) -> dict:
    return evaluate_edit(render(SRC)[0], np.clip(a, 0, 255).astype(np.uint8), TARGET, ["colour"])


def test_rendered_scenes_are_clean():
    rng = np.random.default_rng(0)
    for _ in range(40):
        c = cleanliness(render(random_scene(rng))[0])
        assert c is not None and c.clean
        assert c.uniformity < 1 and c.colour_offset < 1 and c.rim < 1 and c.fringe < MAX_FRINGE


def test_a_mottled_object_is_not_a_success():
    a, mask = _blue_on_gray()
    noise = np.random.default_rng(0).normal(0, 14, a.shape)
    a[mask] += noise[mask]
    m = _judge(a)
    assert m["target_ok"] and m["position_ok"] and m["size_ok"] and m["background_kept"]
    assert m["uniformity"] > MAX_UNIFORMITY and m["clean"] is False and not m["success"]


def test_an_off_colour_object_is_not_a_success():
    a, mask = _blue_on_gray()
    a[mask] = (40, 115, 160)  # teal: still nearest to blue
    m = _judge(a)
    assert m["read_colour"] == "blue" and m["target_ok"]
    assert m["colour_offset"] > MAX_COLOUR_OFFSET and not m["clean"] and not m["success"]


def test_a_bright_rim_is_not_a_success():
    a, mask = _blue_on_gray()
    edge = mask & ~erode(mask, 2)
    a[edge] = (5, 60, 255)  # beyond the object's blue, away from the gray background
    m = _judge(a)
    assert m["target_ok"] and m["uniformity"] <= MAX_UNIFORMITY
    assert m["rim"] > MAX_RIM and not m["clean"] and not m["success"]


def test_a_fringe_of_another_colour_is_not_a_success():
    a, mask = _blue_on_gray()
    ring = dilate(mask, 1) & ~mask
    a[ring] = (220, 90, 40)  # an orange rim: what is left of a red object
    m = _judge(a)
    assert m["target_ok"] and m["rim"] <= MAX_RIM
    assert m["fringe"] > MAX_FRINGE and not m["clean"] and not m["success"]

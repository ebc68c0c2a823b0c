"""The web demo served on a local port: fit once and re-sample through its API, a sweep, many
clients at once, and the whole flow in a real headless browser."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from imagic_kit.demo.app import Demo, DemoOptions, build  # noqa: E402
from imagic_kit.registry import available_methods  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


EXAMPLE = ROOT / "assets" / "example.png"


# a few-step Imagic for the API tests: the flow, not the quality
QUICK_IMAGIC = {
    "embedding_steps": 10,
    "finetune_steps": 10,
    "batch_size": 2,
    "num_inference_steps": 10,
    "candidates": 4,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(shapes, tmp_path_factory):
    """The demo on tiny-shapes, on a free local port, for the module's tests."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    work = tmp_path_factory.mktemp("demo")
    demo = Demo(shapes, DemoOptions(work_dir=work, cache_size=4, queue_size=8))
    blocks = build(demo)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                  show_error=True, max_file_size="2mb", allowed_paths=[str(work)])  # fmt: skip
    try:
        yield demo, f"http://127.0.0.1:{port}/"
    finally:
        blocks.close()


def call(client, method="imagic", **kw):
    from gradio_client import handle_file

    kw.setdefault("image", handle_file(str(EXAMPLE)))
    kw.setdefault("prompt", "a blue circle on a gray background")
    return client.predict(api_name=f"/edit_{method}", **kw)


def test_fit_once_then_resample_through_the_api(served):
    from gradio_client import Client

    demo, url = served
    client = Client(url, verbose=False)
    first = call(client, **QUICK_IMAGIC)
    image, _gallery, recipe, png, fit_zip, status = first
    assert status.startswith("Fitted and sampled"), status
    assert Image.open(image).size == (64, 64)
    assert json.loads(recipe)["method"] == "imagic" and Path(fit_zip).suffix == ".zip"
    again = call(client, eta=0.8, **QUICK_IMAGIC)
    assert again[-1].startswith("Re-sampled from a kept fit, no refit"), again[-1]
    assert json.loads(again[2])["config"]["eta"] == 0.8 and json.loads(again[2])["fit_reused"]
    changed = call(client, **{**QUICK_IMAGIC, "embedding_steps": 11})  # a fit-stage value
    assert changed[-1].startswith("Fitted"), changed[-1]
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="the prompt is empty"):  # the one-line message, no trace
        call(client, prompt="  ", **QUICK_IMAGIC)


def test_a_sweep_draws_a_gallery_from_one_fit(served):
    from gradio_client import Client, handle_file

    _, url = served
    client = Client(url, verbose=False)
    out = client.predict(image=handle_file(str(EXAMPLE)), prompt="a blue circle",
                         sweep_over="eta", sweep_values="0.5,1.0", api_name="/sweep_imagic",
                         **QUICK_IMAGIC)  # fmt: skip
    gallery = out[1]
    assert [g["caption"] for g in gallery] == ["eta=0.5", "eta=1.0"]


def test_concurrent_clients_each_get_their_own_image(served, shapes):
    from gradio_client import Client

    from imagic_kit import edit

    _, url = served
    # Imagic: its LoRA goes onto the one shared UNet, so overlapping edits would spoil each other
    jobs = [(f"a {c} circle on a gray background", seed) for c, seed in
            zip(("red", "green", "yellow", "red"), (0, 1, 2, 3))]  # fmt: skip
    quick = {**QUICK_IMAGIC, "candidates": 1}
    results: dict[int, tuple] = {}

    def worker(k):
        client = Client(url, verbose=False)
        prompt, seed = jobs[k]
        results[k] = call(client, prompt=prompt, seed=seed, **quick)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert sorted(results) == list(range(len(jobs)))
    fit_seeds = {json.loads(results[k][2])["fit_seed"] for k in (0, 3)}
    assert len(fit_seeds) == 1  # one fit served both
    for k, (prompt, seed) in enumerate(jobs):
        image, _, recipe, png, *_ = results[k]
        r = json.loads(recipe)
        assert (r["prompt"], r["seed"]) == (prompt, seed)
        # jobs 0 and 3 differ only in the seed: the later one re-samples the earlier one's fit
        kw = dict(method="imagic", progress=False, **quick)
        r_direct = edit(shapes, str(EXAMPLE), prompt, seed=r["fit_seed"], **kw)
        if r["fit_seed"] != seed:
            r_direct = edit(shapes, str(EXAMPLE), prompt, seed=seed, artifacts=r_direct.fit, **kw)
        want = np.asarray(r_direct.image)
        assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), want)  # the download
        assert np.array_equal(np.asarray(Image.open(image).convert("RGB")), want)  # the page's


@pytest.mark.browser
def test_the_page_in_a_headless_browser(served, tmp_path):
    """Upload an example, type a prompt, run a fast Imagic edit on tiny-shapes, move the eta slider
    and get a new image without a refit; a screenshot of the page is saved."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("IMAGIC_KIT_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("IMAGIC_KIT_REQUIRE_BROWSER"):
            pytest.fail("playwright is not installed (python3 scripts/setup_env.py --dev)")
        pytest.skip("playwright is not installed")
    _, url = served
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--no-first-run"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        tabs = page.get_by_role("tab")
        sync_api.expect(tabs).to_have_count(len(available_methods()))  # all tabs in sight
        sync_api.expect(page.get_by_role("tab", selected=True)).to_have_text("imagic")
        sync_api.expect(page.locator("#imagic-preset input")).to_have_value("(defaults)")
        page.locator("#imagic-image input[type=file]").set_input_files(str(EXAMPLE))
        page.locator("#imagic-image img").first.wait_for(timeout=30_000)
        page.fill("#imagic-prompt textarea", "a blue circle on a gray background")
        if not os.environ.get("IMAGIC_KIT_SCREENSHOT"):  # a short fit, typed in the page
            page.locator("button:visible", has_text="Fit settings").first.click()
            for name, value in (("embedding_steps", 20), ("finetune_steps", 20), ("batch_size", 2)):
                page.fill(f"#imagic-field-{name} input[type=number]", str(value))
            page.locator("button:visible", has_text="Advanced").first.click()
            page.fill("#imagic-field-candidates input[type=number]", "4")
        page.click("#imagic-run")
        status = page.locator("#imagic-status textarea")
        sync_api.expect(status).to_have_value(re.compile("^Fitted and sampled"), timeout=240_000)
        first_src = page.locator("#imagic-out img").get_attribute("src")
        eta = page.locator("#imagic-field-eta input[type=number]")
        eta.fill("0.8")
        eta.blur()
        sync_api.expect(status).to_have_value(
            re.compile("^Re-sampled .* no refit"), timeout=120_000
        )
        second_src = page.locator("#imagic-out img").get_attribute("src")
        first_png = page.request.get(first_src).body()
        second_png = page.request.get(second_src).body()
        a, b = (
            np.asarray(Image.open(io.BytesIO(x)).convert("RGB")) for x in (first_png, second_png)
        )
        assert not np.array_equal(a, b)  # a new image, not the same one served again
        shot = Path(os.environ.get("IMAGIC_KIT_SCREENSHOT") or tmp_path / "demo.png")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        browser.close()

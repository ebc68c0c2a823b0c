"""The Gradio web demo: one tab per registered method, built from the registry and the config fields.

Nothing here knows a method: a tab's widgets come from its config fields (a range gives a slider,
``choices`` a dropdown, the help a tooltip), fit-stage fields first, the method's ``main_field``
beside the prompt and the other sample-stage fields under "Advanced". The tabs start at the
toolkit's own method and the command line's defaults. Every edit goes through the lifecycle every
front end shares (``imagic_kit/lifecycle.py``: check, fit or reuse, draw, select, recipe).

Fit once, slide many: the server keeps the last fits of all pages in one bounded
:class:`~imagic_kit.lifecycle.FitCache`, under the key of what a fit depends on. An edit that
changes only sample-stage values or the seed re-samples from a kept fit without refitting;
otherwise it fits, and the page says which happened and how long it took.

One edit runs at a time on the device (all events share one concurrency slot); the queue is
bounded. Errors are shown in the page as their one-line message.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ..config import field_infos, preset_names
from ..errors import ConfigError, ImagicKitError
from ..fit_cache import FitCache
from ..registry import MethodSpec, get_method, methods_in_order
from .widgets import (
    infos_in_page_order,
    ordered_fields,
    preset_values,
    sweep_default,
    sweep_fields,
    widget_for,
)

#: The inputs of an edit before the config fields (their names in the API).


FRONT = (
    "image",
    "more_images",
    "prompt",
    "source_prompt",
    "seed",
    "random_seed",
    "sweep_over",
    "sweep_values",
)


@dataclass
class DemoOptions:
    """Limits of a running demo."""

    queue_size: int = 16  # edits waiting beyond the one running; more are refused
    cache_size: int = 8  # fits kept for all open pages together (least recently used first)
    #: and the download folders of as many (page, method) pairs
    max_upload_mb: float = 20.0
    max_megapixels: float = 16.0
    work_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="imagic-kit-demo-"))
    )


class Demo:
    """The state behind the page: the backbone, the fit cache, the limits."""

    def __init__(self, backbone, options: DemoOptions | None = None):
        self.backbone = backbone
        self.options = options or DemoOptions()
        self.fits = FitCache(self.options.cache_size)
        #: (page, method) pairs with a download folder, and which fit their zip holds
        self._pages: OrderedDict[tuple, str | None] = OrderedDict()
        self._pages_lock = threading.Lock()
        self.options.work_dir.mkdir(parents=True, exist_ok=True)

    def _folder(self, key: tuple) -> Path:
        """The one folder of a (page, method): its latest PNG and fit zip, replaced each time."""
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        return self.options.work_dir / f"{key[1]}-{digest}"

    def _use_folder(self, key: tuple) -> Path:
        """The folder of ``key``, made; the least recently used pages' folders beyond
        ``cache_size`` are deleted."""
        with self._pages_lock:
            self._pages.setdefault(key, None)
            self._pages.move_to_end(key)
            dropped = []
            while len(self._pages) > self.options.cache_size:
                dropped.append(self._pages.popitem(last=False)[0])
        for old in dropped:
            shutil.rmtree(self._folder(old), ignore_errors=True)
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # --- one edit ---------------------------------------------------------------------------------

    def overrides(self, spec: MethodSpec, values: list[Any]) -> dict[str, Any]:
        """Widget values (in page order) -> config overrides; an emptied number keeps its default."""
        infos = infos_in_page_order(spec)
        if len(values) != len(infos):
            raise ConfigError(f"{spec.name} takes {len(infos)} field values, got {len(values)}")
        return {i.name: v for i, v in zip(infos, values) if v is not None}

    def check_image(self, image: str | None) -> str:
        from ..imaging import load_image

        if not image:
            raise ConfigError("upload an image first (or pick an example)")
        img = load_image(image)
        mp = img.width * img.height / 1e6
        if mp > self.options.max_megapixels:
            raise ConfigError(
                f"the image is {img.width}x{img.height} ({mp:.0f} MP), over the demo's "
                f"{self.options.max_megapixels:g} MP limit; downscale it first"
            )
        return image

    def run(
        self,
        method: str,
        page: str,
        image: str | None,
        prompt: str,
        source_prompt: str | None,
        seed: float | None,
        random_seed: bool,
        values: list[Any],
        progress_cb=None,
        sweep: tuple[str, str] | None = None,
        only_if_cached: bool = False,
        more_images: list[str] | None = None,
    ) -> dict[str, Any] | None:
        """Edit (or sweep) with ``method``, re-sampling from a kept fit when only sample-stage
        values or the seed changed. ``only_if_cached``: None instead of fitting (a slider never
        starts a fit). ``more_images``: further reference images, for methods that take several
        (DECOR). Returns the images, the recipe, the status line and the files to download."""
        from ..config import parse_sweep, parse_value
        from ..lifecycle import cached_fit, run, run_sweep
        from ..request import prepare

        spec = get_method(method)
        key = (page, method)
        if only_if_cached and not image:
            return None  # a slider moved before there is anything to re-sample
        image = self.check_image(image)
        if more_images:
            image = [image, *(self.check_image(p) for p in more_images)]
        overrides = self.overrides(spec, values)
        seed_value = secrets.randbelow(2**31) if random_seed or seed is None else int(seed)
        sweep_values = None
        if sweep is not None:
            name, text = sweep
            infos = {i.name: i for i in field_infos(spec.config_cls)}
            if name not in infos or infos[name].stage != "sample":
                raise ConfigError(f"sweep over {name!r}: pick a sample-stage field of {method}")
            raw = parse_sweep([f"{name}={text}"])[name]
            sweep_values = {name: [parse_value(infos[name], v) for v in raw]}
            overrides.pop(name, None)
        try:
            req = prepare(
                image,
                prompt,
                method=method,
                source_prompt=source_prompt if spec.source_prompt != "unused" else None,
                seed=seed_value,
                **overrides,
            )
        except ImagicKitError:
            if only_if_cached:  # a slider says nothing about a prompt not typed yet
                return None
            raise
        t0 = time.perf_counter()
        opts = dict(fits=self.fits, progress=False, callback=progress_cb)
        if sweep_values is not None:
            if only_if_cached and cached_fit(self.backbone, req, self.fits) is None:
                return None  # a slider never starts a fit
            results = run_sweep(self.backbone, req, sweep_values, **opts)
        else:  # a slider never starts a fit: run() returns None when no kept fit serves it
            one = run(self.backbone, req, only_cached=only_if_cached, **opts)
            if one is None:
                return None
            results = [one]
        took = time.perf_counter() - t0
        first = results[0]
        reused = first.fit_reused
        sample_s = sum(r.timings["sample_s"] for r in results)
        if reused:
            status = (
                f"Re-sampled from a kept fit, no refit: {took:.1f} s "
                f"(sampling {sample_s:.1f} s), seed {first.seed}."
            )
        else:
            status = (
                f"Fitted and sampled: {took:.1f} s (fit {first.timings['fit_s']:.1f} s, "
                f"sampling {sample_s:.1f} s), seed {first.seed}."
            )
        folder = self._use_folder(key)
        for old in folder.glob("*.png"):
            old.unlink()
        png = first.save(folder / f"{method}-{first.seed}.png")[0]
        fit_zip = folder / f"{method}-fit.zip"
        made = hashlib.sha256(json.dumps(first.fit.meta, sort_keys=True, default=str).encode())
        if self._pages.get(key) != made.hexdigest() or not fit_zip.is_file():
            fit_dir = first.fit.save(folder / "fit")  # a re-sample keeps the fit, and its zip
            shutil.make_archive(str(fit_zip.with_suffix("")), "zip", fit_dir)
            shutil.rmtree(fit_dir, ignore_errors=True)
            with self._pages_lock:
                if key in self._pages:
                    self._pages[key] = made.hexdigest()
        gallery = []
        if sweep_values is not None:
            for r in results:
                label = " ".join(f"{k}={v}" for k, v in r.recipe["sweep"].items())
                gallery.append((r.image, label))
        return {
            "image": first.image,
            "gallery": gallery,
            "recipe": json.dumps(first.recipe, indent=2, sort_keys=True, default=str),
            "status": status,
            "png": str(png),
            "fit": str(fit_zip),
            "reused": reused,
        }


def example_images(backbone: Any, folder: Path) -> list[list[Any]]:
    """The model's examples (``Backbone.examples``) written as PNGs: [[path, prompt], ...]."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, prompt) in enumerate(getattr(backbone, "examples", [])):
        path = folder / f"example-{i}.png"
        if not path.exists():
            image.save(path)
        rows.append([str(path), prompt])
    return rows


def build(demo: Demo):
    """The Gradio Blocks of ``demo``: a tab per registered method."""
    examples = example_images(demo.backbone, demo.options.work_dir / "examples")
    # gradio's own copies of uploads and outputs: deleted after an hour
    with gr.Blocks(title="imagic-kit", delete_cache=(3600, 3600)) as blocks:
        note = getattr(demo.backbone, "note", "")
        gr.Markdown(
            f"# imagic-kit\nEdit an image from a text prompt. Model: `{demo.backbone.model_id}`"
            + (f" ({note})" if note else "")
        )
        for method in methods_in_order():  # the toolkit's own method first: the page opens on it
            _method_tab(demo, get_method(method), examples)
    blocks.queue(default_concurrency_limit=1, max_size=demo.options.queue_size)
    return blocks


def _method_tab(demo: Demo, spec: MethodSpec, examples: list[list[Any]]) -> None:
    name = spec.name
    endpoint = name.replace("-", "_")  # an API name is an identifier ("null-text" -> null_text)
    fit_fields, main, rest = ordered_fields(spec)
    presets = ["(defaults)", *preset_names(name)]
    with gr.Tab(name, id=f"tab-{name}"):
        gr.Markdown(f"**{name}**: {spec.description}" + (f" ({spec.paper})" if spec.paper else ""))
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="input image", elem_id=f"{name}-image",
                                 sources=["upload", "clipboard"], height=256,
                                 image_mode=None)  # fmt: skip
                more = gr.File(
                    file_count="multiple",
                    type="filepath",
                    file_types=["image"],
                    label=f"more reference images (up to {spec.max_images} in all)",
                    visible=spec.max_images > 1,
                    elem_id=f"{name}-more",
                )
                prompt = gr.Textbox(label="prompt", elem_id=f"{name}-prompt",
                                    info="what the edited image should show")  # fmt: skip
                source = gr.Textbox(
                    label="source prompt",
                    info="a caption of the input image",
                    visible=spec.source_prompt != "unused",
                    elem_id=f"{name}-source",
                )
                first = presets[0]  # the defaults, as on the command line
                start = dict(zip([i.name for i in infos_in_page_order(spec)],
                                 preset_values(spec, first)))  # fmt: skip
                with gr.Row():
                    preset = gr.Dropdown(presets, value=first, label="preset",
                                         elem_id=f"{name}-preset")  # fmt: skip
                    seed = gr.Number(value=0, precision=0, label="seed", elem_id=f"{name}-seed")
                    random_seed = gr.Checkbox(value=False, label="random seed")
                with gr.Accordion("Fit settings (a change refits)", open=False):
                    fit_widgets = [widget_for(i, start[i.name], f"{name}-") for i in fit_fields]
                main_widget = [widget_for(main, start[main.name], f"{name}-")] if main else []
                with gr.Accordion("Advanced (sampling: no refit)", open=False):
                    rest_widgets = [widget_for(i, start[i.name], f"{name}-") for i in rest]
                widgets = fit_widgets + main_widget + rest_widgets
                with gr.Row():
                    run = gr.Button("Edit", variant="primary", elem_id=f"{name}-run")
                    sweep_field = gr.Dropdown(sweep_fields(spec), value=(sweep_fields(spec) or [None])[0],
                                              label="sweep over", elem_id=f"{name}-sweep-field")  # fmt: skip
                    sweep_values = gr.Textbox(
                        value=sweep_default(main), label="values", elem_id=f"{name}-sweep-values"
                    )
                    sweep = gr.Button("Sweep", elem_id=f"{name}-sweep")
            with gr.Column():
                out = gr.Image(label="edited", elem_id=f"{name}-out", interactive=False,
                               format="png", height=256)  # fmt: skip
                status = gr.Textbox(label="status", elem_id=f"{name}-status", interactive=False)
                gallery = gr.Gallery(label="sweep", elem_id=f"{name}-gallery", columns=4,
                                     format="png")  # fmt: skip
                with gr.Row():
                    png = gr.File(label="PNG with its recipe", elem_id=f"{name}-png")
                    fit_file = gr.File(label="saved fit (zip)", elem_id=f"{name}-fit")
                with gr.Accordion("recipe (stored in the PNG)", open=False):
                    recipe = gr.Code(label="recipe", language="json", elem_id=f"{name}-recipe")
        if examples:
            gr.Examples(examples, inputs=[image, prompt], label="examples")

        if len(presets) > 1:
            preset.change(lambda p: preset_values(spec, p), inputs=preset, outputs=widgets,
                          api_name=False)  # fmt: skip

        def handler(sweeping: bool = False, only_if_cached: bool = False):
            n_front = len(FRONT)

            def fn(request: gr.Request, progress=gr.Progress(), *vals):  # noqa: B008 (gradio's way)
                image_v, more_v, prompt_v, source_v, seed_v, random_v, sweep_f, sweep_v = vals[
                    :n_front
                ]

                def cb(stage, step, total, info):
                    progress((step, total), desc=stage)

                page = getattr(request, "session_hash", None) or "anonymous"  # one open page
                try:
                    r = demo.run(
                        name, page, image_v, prompt_v, source_v, seed_v, random_v,
                        list(vals[n_front:]), progress_cb=cb,
                        sweep=(sweep_f, sweep_v) if sweeping else None,
                        only_if_cached=only_if_cached, more_images=more_v or None,
                    )  # fmt: skip
                except ImagicKitError as e:
                    raise gr.Error(str(e), print_exception=False) from None
                except Exception as e:  # never a stack trace in the page
                    first = str(e).splitlines()[0] if str(e) else type(e).__name__
                    raise gr.Error(f"the edit failed: {first}", print_exception=False) from None
                if r is None:  # a slider moved with no matching fit: it never starts a fit
                    return [gr.update()] * 5 + [
                        "Nothing re-sampled: press Edit (there is no fit yet, or the image, the "
                        "prompt or a fit setting changed)."
                    ]
                return r["image"], r["gallery"], r["recipe"], r["png"], r["fit"], r["status"]

            # named parameters for the API (gradio reads the signature): image, prompt, ..., the
            # config fields by name
            names = [*FRONT, *(i.name for i in infos_in_page_order(spec))]
            P = inspect.Parameter
            fn.__signature__ = inspect.Signature(
                [
                    P("request", P.POSITIONAL_OR_KEYWORD, annotation=gr.Request),
                    P("progress", P.POSITIONAL_OR_KEYWORD, default=gr.Progress()),
                    *(P(n, P.POSITIONAL_OR_KEYWORD, default=None) for n in names),
                ]
            )
            return fn

        inputs = [image, more, prompt, source, seed, random_seed, sweep_field, sweep_values,
                  *widgets]  # fmt: skip
        outputs = [out, gallery, recipe, png, fit_file, status]
        run.click(handler(), inputs=inputs, outputs=outputs, api_name=f"edit_{endpoint}",
                  concurrency_id="device", concurrency_limit=1)  # fmt: skip
        sweep.click(handler(sweeping=True), inputs=inputs, outputs=outputs,
                    api_name=f"sweep_{endpoint}", concurrency_id="device", concurrency_limit=1)  # fmt: skip
        if main_widget and isinstance(main_widget[0], gr.Slider):
            main_widget[0].release(handler(only_if_cached=True), inputs=inputs, outputs=outputs,
                                   api_name=False, concurrency_id="device", concurrency_limit=1)  # fmt: skip

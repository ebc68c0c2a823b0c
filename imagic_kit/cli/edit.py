"""``imagic-kit edit``: edit one photo (or a sweep of settings) through the lifecycle every front
end shares; everything that can be checked is checked before the model loads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import PROG
from .options import add_model_options


def add_edit_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="IN",
        help="input image (repeat for methods taking several)",
    )
    e.add_argument(
        "--prompt", required=True, help="the target text: what the edited image should show"
    )
    e.add_argument("--method", required=True, help="editing method (see `imagic-kit list`)")
    e.add_argument("--source-prompt", help="a caption of the input, for methods that use one")
    e.add_argument(
        "--output",
        "-o",
        help="output PNG (default: <input stem>-<method>.png here); more images get -1, -2 ...",
    )
    e.add_argument(
        "--seed", type=int, help="random seed (default: random, printed and stored in the PNG)"
    )
    e.add_argument("--preset", help="method preset name (configs/methods/<method>/) or a YAML file")
    e.add_argument(
        "--save-artifacts", metavar="DIR", help="save the fit (embeddings, LoRA, run.json) to DIR"
    )
    e.add_argument(
        "--artifacts",
        metavar="DIR",
        help="reuse a saved fit; only sample-stage settings may differ",
    )
    e.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sample several values of a field (e.g. eta=0.5,0.7,0.9); --output becomes a labelled grid",
    )
    e.add_argument(
        "--resize",
        default="crop",
        choices=["crop", "stretch", "pad"],
        help="how a non-square input is made square (default: crop)",
    )
    e.add_argument(
        "--save-candidates",
        action="store_true",
        help="with best-of-N (config candidates > 1): also write <output stem>-candidates.png, "
        "every candidate drawn with its rank and score",
    )
    add_model_options(e)


def cmd_edit(args) -> int:
    import math

    from ..config import field_infos, parse_set_args, parse_sweep, parse_value
    from ..errors import ConfigError
    from ..paths import check_not_inputs, check_writable_file
    from ..registry import get_method
    from ..request import prepare, sweep_requests
    from ..selection import check_rank_clip, images_per_prompt
    from ..threads import configure_threads

    # Everything that can be checked before a model loads, once: the lifecycle's own checks
    # (prepare) plus what only the command line has (outputs, --sweep, the two fit folders).
    spec = get_method(args.method)
    overrides = parse_set_args(args.set)
    if (
        args.artifacts
        and args.save_artifacts
        and Path(args.artifacts).resolve() == Path(args.save_artifacts).resolve()
    ):
        raise ConfigError(
            "--artifacts and --save-artifacts name the same folder; drop --save-artifacts"
        )
    if args.save_candidates and args.sweep:
        raise ConfigError(
            "--save-candidates writes the candidates of one edit, not of a --sweep; drop one of them"
        )
    if args.artifacts and not Path(args.artifacts).is_dir():
        raise ConfigError(
            f"--artifacts '{args.artifacts}' is not a folder; pass a folder written by --save-artifacts"
        )
    if args.seed is not None:
        from ..config import check_seed

        check_seed(args.seed, "--seed")
    out = Path(args.output) if args.output else Path(f"{Path(args.image[0]).stem}-{spec.name}.png")
    if out.suffix.lower() != ".png":
        raise ConfigError(
            f"--output '{out}' must end in .png (the recipe is stored in PNG metadata)"
        )
    req = prepare(
        args.image if len(args.image) > 1 else args.image[0],
        args.prompt,
        method=args.method,
        source_prompt=args.source_prompt,
        seed=args.seed,
        preset=args.preset,
        artifacts=args.artifacts,
        save_artifacts=args.save_artifacts,
        resize=args.resize,
        label="--image",
        **overrides,
    )
    cfg = req.config
    check_rank_clip(cfg)  # a rank_clip that cannot be a CLIP model, found before the model loads

    sweep = {}
    if args.sweep:
        infos = {i.name: i for i in field_infos(spec.config_cls)}
        for key, values in parse_sweep(args.sweep).items():
            if key not in infos:
                raise ConfigError(
                    f"--sweep {key}: not a field of {spec.name!r}; valid keys: {', '.join(infos)}"
                )
            sweep[key] = [parse_value(infos[key], v, where=" (in --sweep)") for v in values]
            if infos[key].stage == "fit" and args.save_artifacts:
                raise ConfigError(
                    f"--sweep {key} is a fit-stage field: each value makes its own fit, and "
                    "--save-artifacts keeps one; drop --save-artifacts or sweep a sample-stage field"
                )
        sweep_requests(req, sweep)  # every combination's values checked against the ranges
    extra = max(math.prod(len(v) for v in sweep.values()) if sweep else 0, images_per_prompt(cfg))
    outputs = [out, *(out.with_name(f"{out.stem}-{i}.png") for i in range(extra))]
    if args.save_candidates:
        outputs.append(out.with_name(f"{out.stem}-candidates.png"))
    for path in outputs:
        check_writable_file(path, "--output")
    check_not_inputs(outputs, args.image, "--output")
    n = configure_threads(args.threads, "--threads")
    threads = f"{n} thread{'s' if n > 1 else ''}"
    if args.quiet:
        from ..progress import silence_library_bars

        silence_library_bars()

    from ..lifecycle import run, run_sweep
    from ..models import load_backbone

    backbone = load_backbone(args.model, device=args.device, dtype=args.dtype)
    if not args.quiet and backbone.device.type == "cpu":
        print(
            f"{PROG}: running on the CPU with {threads} (change with "
            "--threads N or IMAGIC_KIT_NUM_THREADS=N; on a busy machine fewer threads are faster)",
            file=sys.stderr,
        )
    if sweep:
        from ..imaging import make_grid, save_png

        results = run_sweep(backbone, req, sweep, progress=not args.quiet)
        labels = [" ".join(f"{k}={v}" for k, v in r.recipe["sweep"].items()) for r in results]
        grid = make_grid([r.image for r in results], labels=labels)
        recipe = {**results[0].recipe, "sweep": sweep, "grid": labels}
        save_png(grid, out, recipe)
        for i, r in enumerate(results):
            r.save(out.with_name(f"{out.stem}-{i}.png"))
        fit_s = results[0].timings["fit_s"]
        sample_s = sum(r.timings["sample_s"] for r in results)
        print(
            f"wrote {out} (grid of {len(results)}: {', '.join(labels)}) and {out.stem}-0..{len(results) - 1}.png "
            f"(method {spec.name}, seed {results[0].seed}, fit {fit_s:.1f}s, sample {sample_s:.1f}s, {threads})"
        )
    else:
        result = run(backbone, req, progress=not args.quiet)
        paths = result.save(out)
        if args.save_candidates and result.candidates:
            from ..imaging import make_grid, save_png

            rk = result.recipe["ranking"]
            place = {i: r for r, i in enumerate(rk["order"])}
            n_cand = len(result.candidates)
            labels = [f"#{place[i] + 1} {rk['score'][i]:+.2f}" for i in range(n_cand)]
            grid = out.with_name(f"{out.stem}-candidates.png")
            save_png(
                make_grid(result.candidates, cols=min(8, n_cand), labels=labels),
                grid,
                result.recipe,
            )
            paths.append(grid)
        elif args.save_candidates:
            print(
                "imagic-kit: warning: --save-candidates wrote nothing: this edit drew no candidates "
                "to rank (the method has no `candidates` field, or it is 1)",
                file=sys.stderr,
            )
        best = (
            f", best of {len(result.candidates)} ({result.timings['rank_s']:.1f}s ranking)"
            if result.candidates
            else ""
        )
        fit = "reused" if result.recipe["fit_reused"] else f"{result.timings['fit_s']:.1f}s"
        print(
            f"wrote {', '.join(map(str, paths))} (method {spec.name}, seed {result.seed}, fit {fit}, "
            f"sample {result.timings['sample_s']:.1f}s{best}, {backbone.device}, {threads})"
        )
    if args.save_artifacts:
        print(f"saved the fit to {args.save_artifacts}")
    return 0

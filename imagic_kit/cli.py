"""The ``imagic-kit`` command line: edit | list | show-config | recipe, plus the commands that
packages register (``bench``: ``imagic_kit.bench.command``).

User mistakes print one line on stderr (``imagic-kit: error: ...``) and exit with status 2;
no traceback. Set ``IMAGIC_KIT_DEBUG=1`` to see tracebacks.

Commands beyond the editing core plug in through the entry-point group ``imagic_kit.commands``
(pyproject.toml): each entry names a :class:`Command`. The core never imports them, so the layers
point one way (the benchmark builds on the library, never the reverse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROG = "imagic-kit"
#: The entry-point group that adds subcommands to ``imagic-kit``.
COMMANDS_GROUP = "imagic_kit.commands"
CORE_COMMANDS = ("edit", "list", "show-config", "recipe")


@dataclass(frozen=True)
class Command:
    """A subcommand of ``imagic-kit`` registered by a package (entry-point group
    :data:`COMMANDS_GROUP`). ``add_arguments`` fills its parser; ``run(args)`` returns the exit
    status and raises :class:`~imagic_kit.errors.ImagicKitError` for user mistakes. Keep the module
    light to import: load heavy libraries inside ``run``."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@lru_cache(maxsize=1)
def plugin_commands() -> tuple[Command, ...]:
    """The registered commands, by name. One that cannot be loaded (an optional dependency
    missing) is left out with a warning instead of breaking the others."""
    from importlib.metadata import entry_points

    found = []
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        why = None
        try:
            command = ep.load()
        except Exception as e:  # a broken plugin must not take the editing commands down
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
        else:
            if not isinstance(command, Command) or command.name != ep.name:
                why = f"{ep.value} is not an imagic_kit.cli.Command named {ep.name!r}"
            elif ep.name in CORE_COMMANDS:
                why = "the name of a core command"
        if why:
            print(f"{PROG}: warning: command {ep.name!r} left out ({why})", file=sys.stderr)
        else:
            found.append(command)
    return tuple(found)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        raise SystemExit(_fail(f"{message} (see `{self.prog} --help`)"))


def _fail(msg: str, code: int = 2) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return code


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

    def fmt(message, category, filename, lineno, line=None):
        return f"{PROG}: warning: {message}\n"

    warnings.formatwarning = fmt
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG, description="Edit a real photo from a text prompt with a diffusion model."
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    e = sub.add_parser(
        "edit",
        help="edit one photo",
        description="Edit one photo (or a few references) from a prompt.",
    )
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
        "--model",
        default="tiny-shapes",
        help="backbone preset, local diffusers folder or hub id (default: tiny-shapes, the embedded model)",
    )
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
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable)",
    )
    e.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda if available)")
    e.add_argument(
        "--dtype", help="float32, float16 or bfloat16 (default: float16 on CUDA, else float32)"
    )
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
        "--threads",
        type=int,
        help="CPU threads for torch (default: the cores shared among the local processes; IMAGIC_KIT_NUM_THREADS)",
    )
    e.add_argument(
        "--save-candidates",
        action="store_true",
        help="with best-of-N (config candidates > 1): also write <output stem>-candidates.png, "
        "every candidate drawn with its rank and score",
    )
    e.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    sub.add_parser("list", help="list the editing methods")

    s = sub.add_parser("show-config", help="show a method's config fields, defaults and ranges")
    s.add_argument("method")
    s.add_argument("--preset", help="show the values of this preset")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument(
        "--yaml", action="store_true", help="print only key: value lines (a preset file)"
    )

    r = sub.add_parser("recipe", help="print the recipe stored in an output PNG")
    r.add_argument("png")

    for command in plugin_commands():
        c = sub.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(c)
    return p


def cmd_list(args) -> int:
    from .config import preset_names
    from .registry import available_methods, get_method

    for name in available_methods():
        spec = get_method(name)
        presets = preset_names(name)
        extra = f" [presets: {', '.join(presets)}]" if presets else ""
        print(f"{name:10s} {spec.description}{extra}")
    return 0


def cmd_show_config(args) -> int:
    from .config import field_infos, parse_set_args
    from .registry import get_method, make_config

    spec = get_method(args.method)
    cfg = make_config(args.method, None, args.preset, **parse_set_args(args.set))
    if args.yaml:
        for info in field_infos(spec.config_cls):
            print(f"{info.name}: {json.dumps(getattr(cfg, info.name))}")
        return 0
    print(f"{spec.name}: {spec.description}")
    if spec.paper:
        print(f"paper: {spec.paper}")
    print(
        f"source prompt: {spec.source_prompt}; input images: {spec.min_images}-{spec.max_images}; needs: {', '.join(spec.requires)}"
    )
    for info in field_infos(spec.config_cls):
        rng = ""
        if info.choices:
            rng = f" one of {list(info.choices)}"
        elif info.min is not None or info.max is not None:
            rng = f" in [{info.min}, {info.max}]"
        value = getattr(cfg, info.name)
        mark = "" if value == info.default else f" (default {info.default!r})"
        print(f"  {info.name} = {value!r}{mark}  [{info.stage}]{rng}\n      {info.help}")
    return 0


def cmd_recipe(args) -> int:
    from .errors import InputImageError
    from .imaging import read_recipe

    if Path(args.png).is_dir():
        raise InputImageError(f"'{args.png}' is a folder; pass a PNG written by imagic-kit")
    if not Path(args.png).is_file():
        raise InputImageError(f"'{args.png}' does not exist")
    try:
        recipe = read_recipe(args.png)
    except Exception:
        raise InputImageError(f"'{args.png}' is not a readable PNG") from None
    if recipe is None:
        raise InputImageError(f"'{args.png}' carries no imagic-kit recipe")
    print(json.dumps(recipe, indent=2, sort_keys=True))
    return 0


def cmd_edit(args) -> int:
    import math

    from .config import field_infos, parse_set_args, parse_sweep, parse_value
    from .errors import ConfigError
    from .lifecycle import prepare, sweep_requests
    from .paths import check_not_inputs, check_writable_file
    from .registry import get_method
    from .selection import check_rank_clip, images_per_prompt
    from .threads import configure_threads

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
        from .config import check_seed

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
        from .progress import silence_library_bars

        silence_library_bars()

    from .lifecycle import run, run_sweep
    from .models import load_backbone

    backbone = load_backbone(args.model, device=args.device, dtype=args.dtype)
    if not args.quiet and backbone.device.type == "cpu":
        print(
            f"{PROG}: running on the CPU with {threads} (change with "
            "--threads N or IMAGIC_KIT_NUM_THREADS=N; on a busy machine fewer threads are faster)",
            file=sys.stderr,
        )
    if sweep:
        from .imaging import make_grid, save_png

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
            from .imaging import make_grid, save_png

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


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.version:
        from . import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from .errors import ImagicKitError

    handlers = {
        "edit": cmd_edit,
        "list": cmd_list,
        "show-config": cmd_show_config,
        "recipe": cmd_recipe,
        **{c.name: c.run for c in plugin_commands()},
    }
    try:
        return handlers[args.command](args)
    except ImagicKitError as e:
        if os.environ.get("IMAGIC_KIT_DEBUG"):
            raise
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":  # python -m imagic_kit.cli: the package's module, so that its Command
    from imagic_kit.cli import main as package_main  # class is the one the plugins build

    sys.exit(package_main())

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

    from .edit import add_edit_arguments  # light: the edit's work imports inside cmd_edit

    add_edit_arguments(
        sub.add_parser(
            "edit",
            help="edit one photo",
            description="Edit one photo (or a few references) from a prompt.",
        )
    )

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
    from ..config import preset_names
    from ..registry import available_methods, get_method

    for name in available_methods():
        spec = get_method(name)
        presets = preset_names(name)
        extra = f" [presets: {', '.join(presets)}]" if presets else ""
        print(f"{name:10s} {spec.description}{extra}")
    return 0


def cmd_show_config(args) -> int:
    from ..config import field_infos, parse_set_args
    from ..registry import get_method, make_config

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
    from ..errors import InputImageError
    from ..imaging import read_recipe

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


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.version:
        from .. import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from ..errors import ImagicKitError
    from .edit import cmd_edit

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

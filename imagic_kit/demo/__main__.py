"""``python -m imagic_kit.demo [--model ...]``: the same as ``imagic-kit demo``."""

import sys

from imagic_kit.cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
